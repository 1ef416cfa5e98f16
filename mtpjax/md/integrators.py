"""The integrators, behind one interface: jax-md's NVE, Nosé–Hoover NVT and Langevin NVT, and the full-cell MTK NPT
of :mod:`mtpjax.md.npt`.

Units (ASE's, stated once here): lengths Å, energies eV, masses amu, temperatures K (kT = ``ase.units.kB`` T in eV),
pressures GPa at the interface (``ase.units.GPa`` converts to eV/Å³ inside). Time: the settings are in fs, and the
integrators run in ASE's time unit, Å·sqrt(amu/eV) ≈ 10.18 fs: ``dt = timestep_fs * ase.units.fs``. Momenta are then
amu·Å per ASE time unit and the kinetic energy sum p²/2m comes out in eV, with no other conversion anywhere.

- ``nve``: velocity Verlet (``jax_md.simulate.nve``); conserved quantity E_pot + K.
- ``nvt_nose_hoover``: a Nosé–Hoover chain of 5 links, time scale ``thermostat_time``
  (``jax_md.simulate.nvt_nose_hoover``); conserved quantity ``jax_md.simulate.nvt_nose_hoover_invariant``.
- ``nvt_langevin``: BAOAB Langevin (``jax_md.simulate.nvt_langevin``), friction 1/``thermostat_time``; no conserved
  quantity (NaN in the logs).
- ``npt_mtk``: the MTK barostat on the full cell with Nosé–Hoover chains (:func:`mtpjax.md.npt.npt_mtk`),
  ``thermostat_time`` and ``barostat_time``; conserved quantity: its extended energy.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import ase.units
import jax.numpy as jnp
import numpy as np
from jax_md import simulate

from ..errors import MtpjaxError
from .energy import efs_fn as make_efs_fn
from .energy import energy_fn as make_energy_fn
from .energy import shift_fn
from .npt import npt_mtk

#: The ensembles, by name.
ENSEMBLES = ("nve", "nvt_nose_hoover", "nvt_langevin", "npt_mtk")


def fs_to_ase(t_fs):
    """A time in fs in ASE's time unit (Å·sqrt(amu/eV))."""
    return t_fs * ase.units.fs


def kT_of(temperature_K: float) -> float:
    """kT in eV."""
    return ase.units.kB * float(temperature_K)


class Integrator(NamedTuple):
    """One ensemble's functions (all jit-able but ``init``'s momentum draw is too):

    - ``init(key, R, cell, mass, neighbor, momenta=None)`` -> state (momenta drawn at ``init_kT`` when not given);
    - ``step(state, neighbor)`` -> state after one time step;
    - ``conserved(state, neighbor)`` -> the ensemble's conserved energy (eV), NaN when it has none;
    - ``cell(state, neighbor)`` -> the state's cell (the list's for fixed-cell ensembles);
    - ``energy_fn`` / ``efs_fn``: the potential's functions (:mod:`mtpjax.md.energy`).
    """

    ensemble: str
    init: Callable
    step: Callable
    conserved: Callable
    cell: Callable
    energy_fn: Callable
    efs_fn: Callable
    variable_cell: bool


def make_integrator(potential, structure, ensemble: str, *, timestep: float, temperature: float, pressure: float = 0.0,
                    thermostat_time: float = 100.0, barostat_time: float = 1000.0, init_temperature: float | None = None,
                    species=None, skin: float | None = None, capacity_multiplier: float | None = None,
                    npt_cell_dof: int = 6, npt_couple: str = "full", **kw):
    """``(Integrator, neighbor_fn)`` for ``ensemble`` (:data:`ENSEMBLES`); ``timestep``, ``thermostat_time``,
    ``barostat_time`` in fs, ``temperature`` and ``init_temperature`` (initial Maxwell–Boltzmann draw, default
    ``temperature``) in K, ``pressure`` in GPa. ``structure``, ``species``, ``skin``, ``capacity_multiplier`` and
    ``kw`` go to :func:`mtpjax.md.energy.energy_fn`. ``npt_couple``: npt_mtk's cell coupling, ``"full"`` or ``"aniso"`` (the
    three lengths only, :func:`mtpjax.md.npt.npt_mtk`)."""
    if ensemble not in ENSEMBLES:
        raise MtpjaxError(f"unknown ensemble {ensemble!r}; choose one of {', '.join(ENSEMBLES)}")
    if not timestep > 0:
        raise MtpjaxError(f"the time step must be > 0 fs, got {timestep}")
    if temperature < 0 or (ensemble != "nve" and not temperature > 0):
        raise MtpjaxError(f"{ensemble} needs a temperature > 0 K, got {temperature}")
    extra = {k: v for k, v in (("skin", skin), ("capacity_multiplier", capacity_multiplier)) if v is not None}
    # NVE/NVT need only forces: the EAM oracles take them from a full-list custom VJP (mtpjax.oracles.eam)
    energy, neighbor_fn = make_energy_fn(potential, structure, species=species, full_list_forces=ensemble != "npt_mtk",
                                         **extra, **kw)
    efs = make_efs_fn(potential, structure, species=species, **kw)
    dt = fs_to_ase(timestep)
    kT = kT_of(temperature)
    kT0 = kT_of(temperature if init_temperature is None else init_temperature)
    tau = fs_to_ase(thermostat_time)

    def fixed_cell(state, neighbor):
        return neighbor.cell

    if ensemble == "npt_mtk":
        init_fn, step_fn, conserved_fn = npt_mtk(lambda R, nb, cell: efs(R, nb, cell), dt, kT, pressure * ase.units.GPa, tau,
                                                 fs_to_ase(barostat_time), cell_dof=npt_cell_dof,
                                                 couple=npt_couple)

        def init(key, R, cell, mass, neighbor, momenta=None):
            p = _draw(key, R, mass, kT0) if momenta is None else momenta
            return init_fn(key, R, cell, mass, neighbor, momenta=p)

        return Integrator(ensemble, init, step_fn, lambda s, nb: conserved_fn(s), lambda s, nb: s.cell, energy, efs, True), \
            neighbor_fn

    if ensemble == "nve":
        init_fn, apply_fn = simulate.nve(energy, shift_fn, dt)

        def conserved(state, neighbor):
            return energy(state.position, neighbor) + simulate.kinetic_energy(state)
    elif ensemble == "nvt_nose_hoover":
        init_fn, apply_fn = simulate.nvt_nose_hoover(energy, shift_fn, dt, kT, tau=tau)

        def conserved(state, neighbor):
            return simulate.nvt_nose_hoover_invariant(energy, state, kT, neighbor=neighbor)
    else:
        init_fn, apply_fn = simulate.nvt_langevin(energy, shift_fn, dt, kT, gamma=1.0 / tau)

        def conserved(state, neighbor):
            return jnp.asarray(jnp.nan, state.position.dtype)

    def init(key, R, cell, mass, neighbor, momenta=None):
        R = jnp.asarray(R)
        p = _draw(key, R, mass, kT0) if momenta is None else jnp.asarray(momenta, R.dtype)
        mass = jnp.asarray(mass, R.dtype)
        if ensemble == "nve":
            return init_fn(key, R, kT0, mass=mass, momenta=p, neighbor=neighbor)
        return init_fn(key, R, mass=mass, momenta=p, neighbor=neighbor)

    def step(state, neighbor):
        return apply_fn(state, neighbor=neighbor)

    return Integrator(ensemble, init, step, conserved, fixed_cell, energy, efs, False), neighbor_fn


def _draw(key, R, mass, kT):
    """Maxwell–Boltzmann momenta (N, 3) at kT (eV) with zero total momentum (amu·Å/ASE time)."""
    import jax

    R = jnp.asarray(R)
    m = jnp.reshape(jnp.asarray(mass, R.dtype), (-1, 1))
    p = jnp.sqrt(m * kT) * jax.random.normal(key, R.shape, R.dtype)
    if R.shape[0] > 1:
        p = p - jnp.mean(p, axis=0, keepdims=True)
    return p


def temperature_of(momentum, mass) -> jnp.ndarray:
    """Instantaneous temperature (K) of momenta (N, 3) and masses (N,) or (N, 1) amu: 2K / (3N kB), as the
    thermostats count degrees of freedom (jax-md's ``count_dof``, ASE's ``get_temperature``)."""
    m = jnp.reshape(mass, (-1, 1))
    return jnp.sum(momentum**2 / m) / (momentum.size * ase.units.kB)


def masses_of(atoms) -> np.ndarray:
    """ASE's masses (amu) of an ``ase.Atoms``."""
    return np.asarray(atoms.get_masses(), dtype=np.float64)
