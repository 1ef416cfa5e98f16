"""The same relaxations with ASE's FIRE, one structure at a time, for oracles that are not JAX potentials (any ASE
calculator: an :class:`mtpjax.oracles.ASEOracle`, DFT, EMT, ...).

Cell modes map onto ASE's ``FrechetCellFilter`` (the same log-strain cell coordinate as the batched FIRE):
``full``, ``volume`` (``hydrostatic_strain``), ``shape`` (``constant_volume``), ``normal`` and ``cell_mask``
(``mask``); ``fixed`` relaxes the atoms alone. ``positions=False`` holds every atom with ``FixAtoms`` (the filter
then keeps fractional coordinates), ``fix`` becomes ``FixCartesian`` constraints. ASE's FIRE runs with
``maxstep``; the convergence criteria, the failure reasons and the result record are those of the batched path
(:func:`mtpjax.relax.relax`), and any error of the calculator is that structure's ``oracle_error``.
"""
from __future__ import annotations

import functools

import numpy as np

from ..neighbors import pairs
from ..units import EV_PER_A3_TO_GPA
from .result import RelaxResult, cell_dofs, free_components, project


@functools.lru_cache(maxsize=None)
def _blas_controller():
    """threadpoolctl's controller of the BLAS libraries loaded by then (numpy's and scipy's), built once."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def single_threaded_blas():
    """A context in which numpy's and scipy's BLAS/LAPACK run on one thread (threadpoolctl). ASE's
    ``FrechetCellFilter`` takes 3x3 matrix logarithms and exponentials (scipy) at every step, and OpenBLAS's threads
    make those tiny calls far slower, worst on a busy machine (8 cell relaxations of 2-atom Mg cells with the Zhou
    calculator, 2 cores, load 2.5: 39-125 s with the default threads, 5.8 s with one)."""
    return _blas_controller().limit(limits=1, user_api="blas")


def _cell_filter(atoms, **kw):
    """ASE's ``FrechetCellFilter`` whose own matrix functions run under :func:`single_threaded_blas`; the
    calculator (which may use threaded BLAS itself, e.g. DFT) runs outside that limit."""
    return _filter_class()(atoms, **kw)


@functools.lru_cache(maxsize=None)
def _filter_class():
    """The filter class of :func:`_cell_filter`, defined once (ASE imported on first use)."""
    from ase.filters import FrechetCellFilter

    class Filter(FrechetCellFilter):
        def get_positions(self):
            with single_threaded_blas():
                return super().get_positions()

        def set_positions(self, new, **kwargs):
            with single_threaded_blas():
                return super().set_positions(new, **kwargs)

        def get_forces(self, **kwargs):
            self.atoms.get_forces()  # the calculator's results, cached for the filter's own calls
            self.atoms.get_stress()
            with single_threaded_blas():
                return super().get_forces(**kwargs)

    return Filter


def relax_ase(calc, structures, names, cells, masks, fixes, max_steps, *, positions: bool, fmax: float, smax: float,
              maxstep: float, min_distance: float, max_volume_factor: float, species=None, progress=None) -> list:
    """:class:`RelaxResult` per structure, in input order, relaxed with ASE's FIRE and the calculator ``calc``."""
    out = []
    for k, atoms in enumerate(structures):
        missing = sorted(set(atoms.get_chemical_symbols()) - set(species)) if species is not None else []
        if missing:
            out.append(RelaxResult(name=names[k], atoms=None, reason="unknown_element", message=f"{names[k]}: "
                                   f"element(s) {missing} are not among the oracle's species {list(species)}"))
        else:
            out.append(_relax_one(calc, atoms, names[k], cells[k], masks[k], fixes[k], int(max_steps[k]), positions,
                                  fmax, smax, maxstep, min_distance, max_volume_factor))
        if progress:
            progress(1)
    return out


def _closest(atoms, cutoff: float) -> float:
    """The shortest interatomic distance (Å) below ``cutoff``, periodic images included (inf when none)."""
    i, j, s = pairs(atoms.positions, atoms.cell.array, atoms.pbc, cutoff, "structure")
    if not len(i):
        return np.inf
    return float(np.linalg.norm(atoms.positions[j] - atoms.positions[i] + s @ atoms.cell.array, axis=1).min())


def _relax_one(calc, atoms, name, mode, cell_mask, fix, max_steps, positions, fmax, smax, maxstep, min_distance, vfac):
    from ase.constraints import FixAtoms, FixCartesian
    from ase.optimize import FIRE

    n = len(atoms)
    free = free_components(n, positions, fix)
    smask, hydro, constvol = cell_dofs(mode, cell_mask)
    a = atoms.copy()
    a.calc = calc
    if not positions:
        a.set_constraint(FixAtoms(indices=list(range(n))))
    elif fix is not None:
        rows = {}
        for i, row in enumerate(~free.astype(bool)):
            if row.any():
                rows.setdefault(tuple(bool(x) for x in row), []).append(i)
        a.set_constraint([FixCartesian(idx, mask=m) for m, idx in rows.items()])
    C0, x0, V0 = a.cell.array.copy(), a.positions.copy(), abs(a.get_volume())
    target = (_cell_filter(a, mask=smask.astype(bool), hydrostatic_strain=bool(hydro), constant_volume=bool(constvol))
              if smask.any() else a)
    opt = FIRE(target, logfile=None, maxstep=maxstep)
    res = RelaxResult(name=name, atoms=None)
    converged = False
    try:
        for _ in opt.irun(fmax=0.0, steps=max_steps):
            e, f = a.get_potential_energy(), a.get_forces(apply_constraint=False)
            s = a.get_stress(voigt=False)
            if np.isnan(res.initial_energy):
                res.initial_energy = float(e)
            if not (np.isfinite(e) and np.isfinite(f).all() and np.isfinite(s).all()):
                return _failed(res, "non_finite", f"{name}: non-finite energy, forces or stress after {opt.nsteps} steps", opt)
            if min_distance > 0 and _closest(a, min_distance) < min_distance:
                return _failed(res, "collapsed", f"{name}: atoms closer than {min_distance:.3g} Å after {opt.nsteps} steps",
                               opt)
            ratio = abs(a.get_volume()) / V0
            if not 1.0 / vfac < ratio < vfac:
                return _failed(res, "volume", f"{name}: V/V_start = {ratio:.3g} after {opt.nsteps} steps", opt)
            V = abs(a.get_volume())
            ff = f * free
            res.fmax = float(np.sqrt((ff**2).sum(1).max())) if n else 0.0
            res.smax = float(np.abs(project(-V * s, smask, hydro, constvol)).max() / V * EV_PER_A3_TO_GPA)
            res.energy, res.forces, res.stress = float(e), np.array(f), a.get_stress(voigt=True).copy()
            if res.fmax <= fmax and res.smax <= smax:
                converged = True
                break
    except Exception as err:  # noqa: BLE001 (any error of the oracle discards this structure only)
        return _failed(res, "oracle_error", f"{type(err).__name__}: {err}", opt)
    a.set_constraint()
    res.steps = int(opt.nsteps)
    res.converged = converged
    out = atoms.copy()
    out.calc = None
    out.set_cell(a.cell.array, scale_atoms=False)
    out.positions = a.positions
    res.atoms = out
    F = np.linalg.solve(C0, a.cell.array)  # C = C0 F
    disp = a.positions - x0 @ F
    res.max_displacement = float(np.sqrt((disp**2).sum(1).max())) if n else 0.0
    if not converged and max_steps > 0:
        res.reason = "not_converged"
        res.message = f"{name}: fmax {res.fmax:.3g} eV/Å, smax {res.smax:.3g} GPa after {res.steps} steps"
    return res


def _failed(res: RelaxResult, reason: str, message: str, opt) -> RelaxResult:
    res.reason, res.message, res.steps = reason, message, int(opt.nsteps)
    return res
