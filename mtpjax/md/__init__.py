"""Molecular dynamics on jax-md for any JAX potential (an MTP, the EAM oracles, Lennard-Jones): see ``docs/md.md``.

- :func:`energy_fn`: jax-md's ``(energy_fn, neighbor_fn)`` pair, with a multi-image Verlet list (triclinic cells,
  cells narrower than twice the cutoff, cell changes never leave it silently stale, overflow flagged);
  :func:`efs_fn`: energy, forces and virial by autodiff; :func:`stress`, :func:`pressure`;
- :func:`make_integrator`: NVE, Nosé–Hoover and Langevin NVT (jax-md's), and NPT with the full-cell MTK barostat
  (:mod:`mtpjax.md.npt`);
- :func:`run_md`: the driver (chunks under jit, overflow re-allocation, CSV log, trajectory, instability stops);
- :mod:`mtpjax.md.vdos`: the phonon DOS at finite temperature (velocity autocorrelation) against the 0 K one;
- ``mtpjax md CONFIG``: :mod:`mtpjax.md.cli`, settings in :mod:`mtpjax.md.config`.

Units: Å, eV, amu, K, GPa at the interface, fs for times (ASE's time unit inside: ``ase.units.fs``).
"""
from .energy import (
    NeighbourFns,
    NeighbourList,
    efs_fn,
    energy_fn,
    min_distance,
    potential_types,
    pressure,
    shift_fn,
    stress,
)
from .integrators import ENSEMBLES, Integrator, make_integrator, temperature_of
from .npt import MTKState, npt_mtk
from .run import LOG_COLUMNS, MDExtrapolation, MDInstability, MDResult, run_md, write_log
from .vdos import finite_temperature_dos, vacf

__all__ = ["finite_temperature_dos", "vacf", "ENSEMBLES", "LOG_COLUMNS", "MDExtrapolation", "MDInstability", "MDResult", "MTKState", "Integrator", "NeighbourFns", "NeighbourList",
           "efs_fn", "energy_fn", "make_integrator", "min_distance", "npt_mtk", "potential_types", "pressure", "run_md",
           "shift_fn", "stress", "temperature_of", "write_log"]
