"""The settings of an MD run, as frozen dataclasses read by :mod:`mtpjax.config` (``mtpjax md CONFIG``'s TOML file and
command-line options).

- :class:`MDSettings`: how to integrate (ensemble, time step, temperature, pressure, thermostat and barostat time
  scales, logging, the neighbour list's skin and capacity, the stability limits);
- :class:`MDCommand`: what to run (the potential, the structure) and where the output goes, with MDSettings'
  keys flattened into the same table.

Units: fs (times), K, GPa, Å.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..active.simulation import GAMMA_BREAK, GAMMA_SELECT
from ..errors import ConfigError
from ..fit.validate import at_least_one, non_negative_float, non_negative_int, positive_float, positive_int
from .energy import DEFAULT_CAPACITY_MULTIPLIER, DEFAULT_SKIN
from .integrators import ENSEMBLES


@dataclass(frozen=True)
class MDSettings:
    """How an MD run integrates (keyword arguments of :func:`mtpjax.md.run_md`)."""

    ensemble: Literal[ENSEMBLES] = field(default="nvt_langevin", metadata={"help": (
        "nve (velocity Verlet), nvt_nose_hoover (a Nosé-Hoover chain), nvt_langevin (BAOAB), npt_mtk (MTK barostat on "
        "the full cell, anisotropic and triclinic, with Nosé-Hoover chains)")})
    steps: int = field(default=1000, metadata={"check": non_negative_int, "help": "number of time steps"})
    timestep: float = field(default=1.0, metadata={"check": positive_float, "help": "time step in fs"})
    temperature: float = field(default=300.0, metadata={"check": non_negative_float, "help": (
        "target temperature in K (thermostats, and the initial Maxwell-Boltzmann velocities)")})
    initial_temperature: float | None = field(default=None, metadata={"check": non_negative_float, "help": (
        "temperature in K of the initial Maxwell-Boltzmann velocities (default: temperature; 0: at rest)")})
    pressure: float = field(default=0.0, metadata={"help": "target pressure in GPa (npt_mtk)"})
    thermostat_time: float = field(default=100.0, metadata={"check": positive_float, "help": (
        "thermostat time scale in fs: the Nosé-Hoover chains' period; the Langevin friction is 1/thermostat_time")})
    barostat_time: float = field(default=1000.0, metadata={"check": positive_float, "help": "barostat time scale in fs (npt_mtk)"})
    npt_couple: Literal["full", "aniso"] = field(default="full", metadata={"help": (
        "npt_mtk's cell: full (the whole cell, shear included) or aniso (only the x, y, z lengths: an orthogonal cell "
        "stays orthogonal, as LAMMPS's fix npt aniso)")})
    seed: int = field(default=0, metadata={"check": non_negative_int, "help": "random seed (velocities, Langevin noise)"})
    log_every: int = field(default=10, metadata={"check": positive_int, "help": (
        "steps between rows of the thermodynamic log (and between stability checks)")})
    trajectory_every: int = field(default=100, metadata={"check": positive_int, "help": (
        "steps between trajectory frames (a multiple of log_every)")})
    skin: float = field(default=DEFAULT_SKIN, metadata={"check": positive_float, "help": (
        "neighbour-list skin in Å (larger: fewer rebuilds, more pairs per force call; docs/benchmarks/md.md)")})
    capacity_multiplier: float = field(default=DEFAULT_CAPACITY_MULTIPLIER, metadata={"check": at_least_one, "help": (
        "neighbour slots per atom: the most neighbours of any atom times this (re-allocated when exceeded)")})
    max_temperature: float | None = field(default=None, metadata={"check": positive_float, "help": (
        "stop when the temperature exceeds this, in K (default 10 x max(temperature, 300 K))")})
    min_distance: float = field(default=0.5, metadata={"check": non_negative_float, "help": (
        "stop when two atoms come closer than this, in Å")})
    grade_every: int = field(default=10, metadata={"check": positive_int, "help": (
        "with an active set (MTP potentials: active_set): steps between extrapolation grades (a divisor of log_every)")})
    gamma_select: float = field(default=GAMMA_SELECT, metadata={"check": positive_float, "help": (
        "with an active set: frames graded above this are written to extrapolative.extxyz (MLIP's select:threshold)")})
    gamma_break: float = field(default=GAMMA_BREAK, metadata={"check": positive_float, "help": (
        "with an active set: stop the run at a grade above this (MLIP's select:threshold-break)")})

    def check_config(self):
        if self.trajectory_every % self.log_every:
            raise ConfigError("trajectory_every", f"{self.trajectory_every} is not a multiple of log_every ({self.log_every})")
        if self.ensemble != "nve" and not self.temperature > 0:
            raise ConfigError("temperature", f"{self.ensemble} needs a temperature > 0 K")

    def run_kwargs(self) -> dict:
        """Keyword arguments of :func:`mtpjax.md.run_md`."""
        return {"ensemble": self.ensemble, "steps": self.steps, "timestep": self.timestep, "temperature": self.temperature,
                "initial_temperature": self.initial_temperature, "pressure": self.pressure,
                "thermostat_time": self.thermostat_time, "barostat_time": self.barostat_time,
                "npt_couple": self.npt_couple, "seed": self.seed,
                "log_every": self.log_every, "trajectory_every": self.trajectory_every, "skin": self.skin,
                "capacity_multiplier": self.capacity_multiplier, "max_temperature": self.max_temperature,
                "min_distance_floor": self.min_distance, "grade_every": self.grade_every,
                "gamma_select": self.gamma_select, "gamma_break": self.gamma_break}


@dataclass(frozen=True)
class MDCommand:
    """``mtpjax md CONFIG``: a TOML file's ``[md]`` table (or its top level) and the command line's options."""

    potential: str | None = field(default=None, metadata={"help": (
        "the potential: a trained MTP (.almtp/.mtp/.mtpjax), an EAM file (.eam.fs, .eam.alloy, .eam), or an oracle spec "
        "(zhou:Mg, lj, a JSON spec); a file is found relative to the config file")})
    species: tuple[str, ...] | None = field(default=None, metadata={"help": (
        "element of each potential type, in type order (MLIP files name none)")})
    structure: str | None = field(default=None, metadata={"path": True, "help": (
        "starting structure (extended XYZ, .cfg, any ASE-readable file; its last frame), instead of element/crystal")})
    element: str | None = field(default=None, metadata={"help": "build the structure with ase.build.bulk: the element"})
    crystal: str | None = field(default=None, metadata={"help": "ase.build.bulk's crystal structure (hcp, fcc, bcc, ...)"})
    a: float | None = field(default=None, metadata={"check": positive_float, "help": "lattice constant a in Å (ase.build.bulk)"})
    c: float | None = field(default=None, metadata={"check": positive_float, "help": "lattice constant c in Å (hcp)"})
    cubic: bool = field(default=False, metadata={"help": "ase.build.bulk's cubic cell"})
    repeat: tuple[int, int, int] = field(default=(1, 1, 1), metadata={"check": positive_int, "help": "supercell repeats"})
    rattle: float = field(default=0.0, metadata={"check": non_negative_float, "help": (
        "random displacements (standard deviation, Å) added to the start")})
    output: str = field(default="md", metadata={"path": True, "help": (
        "output folder: thermo.csv, trajectory, final.extxyz (the final, or last good, frame), summary.json")})
    active_set: str | None = field(default=None, metadata={"path": True, "help": (
        "grade the run (MaxVol, MLIP's extrapolation grade): the potential file the active set is stored with (its "
        ".mtpjax, POT.active.json, or an .almtp's own), usually the potential itself; see mtpjax grade")})
    trajectory_format: Literal["extxyz", "traj"] = field(default="extxyz", metadata={"help": (
        "trajectory file: extended XYZ (trajectory.extxyz) or ASE's binary trajectory (trajectory.traj)")})
    settings: MDSettings = field(default_factory=MDSettings, metadata={"flatten": True})

    #: keys without which the command cannot run
    REQUIRED = ("potential",)

    def check_config(self):
        if (self.structure is None) == (self.element is None):
            raise ConfigError("structure", "give either a structure file or an element (with crystal, a, c) to build one")
