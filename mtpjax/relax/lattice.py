"""Crystal lattices of one element and their equilibrium: the one starting-volume guess (:func:`guess_volume`),
the prototypes hcp, fcc, dhcp and bcc (:func:`prototype`), and the one lattice-equilibrium routine
(:func:`equilibrium`), a full (or fixed-volume) relaxation with the batched FIRE of :mod:`mtpjax.relax` for any
potential or oracle, and the check that a relaxed cell kept its prototype's space group (:func:`space_group`,
:data:`SPACE_GROUPS`).

Lengths in Å, volumes in Å³/atom. Hexagonal cells follow ASE: a1 = (a, 0, 0), a2 = (-a/2, a√3/2, 0),
a3 = (0, 0, c). ``c_over_a`` is that of the hcp stacking unit (two layers) for both hcp and dhcp (the dhcp cell is
twice as tall); the default is the ideal √(8/3).
"""
from __future__ import annotations

import math

import numpy as np
from ase import Atoms

from ..errors import MtpjaxError
from ..potential import Potential

#: Ideal c/a of close-packed hexagonal stacking, √(8/3).
IDEAL_C_OVER_A = math.sqrt(8.0 / 3.0)

#: Phases the lattice routines know.
PHASES = ("hcp", "fcc", "dhcp", "bcc")

#: Space groups of the prototypes (a relaxed cell that lost its group has turned into another phase).
SPACE_GROUPS = {"hcp": 194, "fcc": 225, "dhcp": 194, "bcc": 229}


def space_group(atoms, symprec: float = 1e-3) -> int | None:
    """The space-group number of ``atoms`` (spglib, ``symprec`` Å), None when spglib finds none."""
    import spglib

    data = spglib.get_symmetry_dataset((atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers),
                                       symprec=symprec)
    return None if data is None else int(data.number)


#: Volume factors of the coarse scan before a relaxation (``equilibrium(scan=True)``): 0.5 to 2.2 × the guess.
SCAN = tuple(np.geomspace(0.5, 2.2, 14))


def guess_volume(element: str, default: float = 20.0) -> float:
    """A starting volume per atom (Å³) of ``element``: its reference crystal in ASE's data (hcp, fcc, bcc, diamond,
    simple cubic), else close-packed spheres of its covalent radius (d = 2 r_cov, V = d³/√2); ``default`` for a
    symbol that is not an element."""
    from ase.data import atomic_numbers, covalent_radii, reference_states

    z = atomic_numbers.get(element)
    if z is None:
        return float(default)
    ref = reference_states[z] or {}
    a, sym = ref.get("a"), ref.get("symmetry")
    if a is not None:
        if sym == "hcp":
            return float(math.sqrt(3.0) / 4.0 * a**3 * ref.get("c/a", IDEAL_C_OVER_A))
        v = {"fcc": a**3 / 4.0, "bcc": a**3 / 2.0, "diamond": a**3 / 8.0, "sc": a**3}.get(sym)
        if v is not None:
            return float(v)
    return float((2.0 * covalent_radii[z]) ** 3 / math.sqrt(2.0))


def lattice_parameters(kind: str, volume: float, c_over_a: float | None = None) -> tuple[float, float | None]:
    """(a, c) in Å of ``kind`` with ``volume`` Å³/atom; c is None for cubic phases, the full cell height for dhcp
    (4 layers). fcc/bcc: the conventional cubic a."""
    q = IDEAL_C_OVER_A if c_over_a is None else float(c_over_a)
    if kind in ("hcp", "dhcp"):
        a = (4.0 * volume / (math.sqrt(3.0) * q)) ** (1.0 / 3.0)
        return a, q * a * (2.0 if kind == "dhcp" else 1.0)
    if kind == "fcc":
        return (4.0 * volume) ** (1.0 / 3.0), None
    if kind == "bcc":
        return (2.0 * volume) ** (1.0 / 3.0), None
    raise MtpjaxError(f"unknown prototype {kind!r}; known: {list(PHASES)}")


def _hex_cell(a: float, c: float) -> np.ndarray:
    return np.array([[a, 0.0, 0.0], [-0.5 * a, 0.5 * math.sqrt(3.0) * a, 0.0], [0.0, 0.0, c]])


def prototype(kind: str, element: str, volume: float, c_over_a: float | None = None, cubic: bool = False) -> Atoms:
    """The ``kind`` crystal (hcp, fcc, dhcp, bcc) of ``element`` at ``volume`` Å³/atom, periodic.

    hcp: 2 atoms (ABAB); dhcp: 4 atoms (ABAC); fcc/bcc: the primitive 1-atom cell, or with ``cubic`` the
    conventional cube (4 / 2 atoms). ``c_over_a``: of the two-layer hcp unit (default ideal).
    """
    a, c = lattice_parameters(kind, volume, c_over_a)
    if kind == "hcp":
        cell = _hex_cell(a, c)
        frac = [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]
    elif kind == "dhcp":
        cell = _hex_cell(a, c)
        frac = [[0.0, 0.0, 0.0], [1 / 3, 2 / 3, 0.25], [0.0, 0.0, 0.5], [2 / 3, 1 / 3, 0.75]]
    elif kind == "fcc":
        if cubic:
            cell = np.eye(3) * a
            frac = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
        else:
            cell = 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
            frac = [[0, 0, 0]]
    else:  # bcc
        if cubic:
            cell = np.eye(3) * a
            frac = [[0, 0, 0], [0.5, 0.5, 0.5]]
        else:
            cell = 0.5 * a * np.array([[-1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])
            frac = [[0, 0, 0]]
    atoms = Atoms([element] * len(frac), scaled_positions=frac, cell=cell, pbc=True)
    atoms.info["name"] = kind
    return atoms


def hex_parameters(atoms: Atoms) -> dict:
    """a (Å), c/a of the two-layer unit (c_cell/2a for the 4-atom dhcp cell) and volume per atom (Å³) of an hcp or
    dhcp cell."""
    cellpar = atoms.cell.cellpar()
    a = 0.5 * (cellpar[0] + cellpar[1])
    layers = 4 if len(atoms) == 4 else 2
    return {"a": float(a), "c_over_a": float(cellpar[2] / a * 2 / layers),
            "volume": float(atoms.get_volume() / len(atoms))}


def equilibrium(potential, kinds, element: str, volume: float | None = None, c_over_a: float | None = None, *,
                cell: str = "full", scan: bool = False, fmax: float = 1e-5, smax: float = 1e-5, **kw) -> dict:
    """Relaxed primitive cells of ``kinds`` (hcp, fcc, dhcp, bcc) of ``element``: {kind: RelaxResult}.

    Each starts at ``volume`` Å³/atom (default :func:`guess_volume`) with ideal or given c/a and is relaxed with
    :func:`mtpjax.relax.relax` (cell and positions): ``cell='full'`` to zero stress (the equilibrium lattice),
    ``cell='shape'`` at that fixed volume (c/a only, for hcp and dhcp). ``scan``: start instead from the lowest
    energy of a coarse isotropic scan (single points at :data:`SCAN` × the volume; for an oracle whose lattice may be
    far from ASE's reference data). Tolerances default to 1e-5 eV/Å and 1e-5 GPa, since lattice parameters and
    elastic constants build on these cells; ``kw`` goes to :func:`mtpjax.relax.relax`.

    A JAX potential always relaxes all four phases together (at no extra cost), so that every caller shares one
    compiled shape; another oracle (ASE, e.g. DFT) relaxes only ``kinds``.
    """
    from .api import relax

    kinds = list(kinds)
    unknown = [k for k in kinds if k not in PHASES]
    if unknown:
        raise MtpjaxError(f"unknown prototype(s) {unknown}; known: {list(PHASES)}")
    todo = list(PHASES) if isinstance(potential, Potential) else list(dict.fromkeys(kinds))
    v0 = guess_volume(element) if volume is None else float(volume)
    start = {k: v0 for k in todo}
    if scan:
        trial = [(k, f) for k in todo for f in SCAN]
        single = {k: v for k, v in kw.items() if k not in ("max_steps", "names")}  # single points
        res = relax(potential, [prototype(k, element, v0 * f, c_over_a) for k, f in trial], max_steps=0,
                    names=[f"{k} scan V={v0 * f:.3f}" for k, f in trial], **single)
        for k in todo:
            e = [(r.energy_per_atom, v0 * f) for (kk, f), r in zip(trial, res) if kk == k and r.atoms is not None]
            e = [x for x in e if np.isfinite(x[0])]
            if e:
                start[k] = min(e)[1]
    structures = [prototype(k, element, start[k], c_over_a) for k in todo]
    res = dict(zip(todo, relax(potential, structures, cell=cell, fmax=fmax, smax=smax, names=todo, **kw)))
    return {k: res[k] for k in kinds}


__all__ = ["IDEAL_C_OVER_A", "PHASES", "SPACE_GROUPS", "equilibrium", "guess_volume", "hex_parameters",
           "lattice_parameters", "prototype", "space_group"]
