"""``relax``: one entry point for every relaxation of the project, batched FIRE for JAX potentials and ASE's FIRE
for other oracles (see :mod:`mtpjax.relax`)."""
from __future__ import annotations

import numpy as np

from ..errors import MtpjaxError
from ..potential import Potential
from .result import CELL_MODES, RelaxResult, per_structure


def relax(potential, structures, *, cell: str = "fixed", cell_mask=None, positions: bool = True, fix=None,
          fmax: float = 1e-3, smax: float = 1e-3, max_steps: int = 3000, skin: float = 0.6, maxstep: float = 0.2,
          steps_per_round: int = 100, min_distance: float = 1.0, max_volume_factor: float = 4.0, species=None,
          max_batch_atoms: int = 2048, min_batch_atoms: int = 128, names=None, progress=None, active_set=None,
          gamma_select: float | None = None, gamma_break: float | None = None, extrapolative=None) -> list[RelaxResult]:
    """Relax ``structures`` (ase.Atoms, periodic in all directions) with ``potential``; one :class:`RelaxResult`
    per structure, in input order. A structure that fails never stops the others (``RelaxResult.reason``).

    ``potential``: a JAX potential (:class:`mtpjax.potential.Potential`: MTPs, the JAX oracles; batched FIRE on
    jax-md), or an :class:`mtpjax.oracles.ASEOracle` or ASE calculator (ASE's FIRE and ``FrechetCellFilter``, one
    structure at a time).

    ``cell``: fixed | full | volume (hydrostatic) | shape (constant volume) | normal (ε_zz only), or ``cell_mask``
    (3x3 bool of free strain components; with ``cell='shape'`` also volume-preserving); either may be a list with
    one entry per structure. ``positions=False`` holds all fractional coordinates (pure cell relaxation); ``fix``:
    None, or per structure None or an (N, 3) bool array of frozen position components. Convergence: max |f_i| ≤
    ``fmax`` (eV/Å, free components) and max |σ_ij| of the stress projected on the free cell components ≤ ``smax``
    (GPa). ``max_steps``: FIRE steps at most (one for all or a list; 0: only evaluate, never a failure).
    ``maxstep`` (Å): largest move of an atom per step. Failures: ``min_distance`` (Å): closer atoms count as
    collapsed; ``max_volume_factor``: V/V_start must stay within [1/f, f]. ``names``: per structure (default
    ``info['name']`` or the formula). ``progress(n)`` is called as structures finish.

    JAX potentials only: ``skin`` (Å) of the neighbour lists, ``steps_per_round`` jitted steps between host checks,
    ``species`` (element of each type; default the potential's), batches of ``max_batch_atoms`` padded atoms at most
    and ``min_batch_atoms`` at least (structures are padded to powers of two, batches to buckets of structures, so few
    shapes compile).

    MTPs only: with ``active_set`` (an :class:`mtpjax.active.ActiveSet`, or the path of the potential it is stored
    with) the structures as given and as relaxed are graded (MLIP's extrapolation grade, :func:`mtpjax.active.grade`:
    ``RelaxResult.grade`` and ``info['initial_grade']``); relaxed structures graded above ``gamma_select`` (default
    2.1) are appended to ``extrapolative`` (a list, or an .extxyz/.xyz path) with their grade in ``info['grade']``,
    and above ``gamma_break`` (default 10) the result fails with reason ``extrapolation``.
    """
    structures = list(structures)
    if not structures:
        return []
    n = len(structures)
    cells = per_structure(cell, n, "cell mode")
    masks = per_structure(cell_mask, n, "cell_mask", kinds=(list, tuple)) if not isinstance(cell_mask, np.ndarray) \
        else [cell_mask] * n
    fixes = [fix] * n if fix is None or isinstance(fix, np.ndarray) else per_structure(fix, n, "fix mask")
    steps = per_structure(list(max_steps) if isinstance(max_steps, np.ndarray) else max_steps, n, "max_steps")
    for c, m in zip(cells, masks):
        if m is None and c not in CELL_MODES:
            raise MtpjaxError(f"unknown cell mode {c!r}; known: {list(CELL_MODES)}")
    if names is None:
        names = [a.info.get("name") or a.get_chemical_formula() or f"structure {k}" for k, a in enumerate(structures)]
    names = [str(x) for x in per_structure(names, n, "name")]
    common = dict(positions=bool(positions), fmax=float(fmax), smax=float(smax), maxstep=float(maxstep),
                  min_distance=float(min_distance), max_volume_factor=float(max_volume_factor), progress=progress)
    if active_set is not None:
        return _graded(potential, structures, active_set, gamma_select, gamma_break, extrapolative, species, dict(
            cell=cell, cell_mask=cell_mask, positions=positions, fix=fix, fmax=fmax, smax=smax, max_steps=max_steps,
            skin=skin, maxstep=maxstep, steps_per_round=steps_per_round, min_distance=min_distance,
            max_volume_factor=max_volume_factor, max_batch_atoms=max_batch_atoms, min_batch_atoms=min_batch_atoms,
            names=names, progress=progress))
    if isinstance(potential, Potential):
        from .batched import relax_batched

        if species is None and getattr(potential, "species", None):
            species = potential.species
        return relax_batched(potential, structures, names, cells, masks, fixes, steps, skin=float(skin),
                             steps_per_round=int(steps_per_round), species=None if species is None else list(species),
                             max_batch_atoms=int(max_batch_atoms), min_batch_atoms=int(min_batch_atoms), **common)
    calc, species = _ase_calculator(potential, species)
    from .ase_fire import relax_ase

    return relax_ase(calc, structures, names, cells, masks, fixes, steps, species=species, **common)


def _graded(potential, structures, active_set, gamma_select, gamma_break, extrapolative, species, kw):
    """:func:`relax` with the extrapolation grade of each structure before and after (see its docstring)."""
    from ..active import ActiveSet, grade, load_active_set
    from ..active.simulation import GAMMA_BREAK, GAMMA_SELECT
    from ..md.energy import potential_types

    gamma_select = GAMMA_SELECT if gamma_select is None else float(gamma_select)
    gamma_break = GAMMA_BREAK if gamma_break is None else float(gamma_break)
    if not 0 < gamma_select <= gamma_break:
        raise MtpjaxError(f"need 0 < gamma_select <= gamma_break, got {gamma_select} and {gamma_break}")
    if not isinstance(active_set, ActiveSet):
        path, active_set = active_set, load_active_set(active_set, potential)
        if active_set is None:
            raise MtpjaxError(f"{path}: no active set is stored with this potential")

    def tuples(atoms_list, names):
        return [(a.positions, a.cell.array, a.pbc, potential_types(potential, a, species), name)
                for a, name in zip(atoms_list, names)]

    results = relax(potential, structures, species=species, **kw)
    names = [r.name for r in results]
    before = grade(potential, active_set, tuples(structures, names)).grades
    done = [k for k, r in enumerate(results) if r.atoms is not None]
    after = grade(potential, active_set, tuples([results[k].atoms for k in done], [names[k] for k in done])).grades
    out = [] if extrapolative is None or isinstance(extrapolative, list) else None
    for k, r in enumerate(results):
        r.info["initial_grade"] = float(before[k])
    for k, g in zip(done, after):
        r = results[k]
        r.grade = float(g)
        if g > gamma_select:
            a = r.atoms.copy()
            a.info.update(grade=float(g), name=r.name)
            (extrapolative if isinstance(extrapolative, list) else out).append(a)
        if g > gamma_break and r.reason in (None, "not_converged"):  # the graver reason
            r.reason, r.message = "extrapolation", (f"{r.name}: the relaxed structure's extrapolation grade {g:.4g} "
                                                    f"exceeds gamma_break = {gamma_break:g}" + (f"; {r.message}" if r.message else ""))
    if out and extrapolative is not None:
        from ..io import write_structures

        write_structures(out, extrapolative, format="extxyz")
    return results


def _ase_calculator(potential, species):
    """(ASE calculator, species or None) of an ASEOracle or an ASE calculator; MtpjaxError for anything else."""
    from ase.calculators.calculator import BaseCalculator

    from ..oracles import ASEOracle

    if isinstance(potential, ASEOracle):
        return potential.make_calculator(), species if species is not None else potential.species
    if isinstance(potential, BaseCalculator):
        return potential, species
    raise MtpjaxError(f"relax: {type(potential).__name__} is neither a JAX potential (mtpjax.potential.Potential) nor "
                      "an ASE calculator or mtpjax.oracles.ASEOracle")
