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
          max_batch_atoms: int = 2048, min_batch_atoms: int = 128, names=None, progress=None) -> list[RelaxResult]:
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
