"""Host-side neighbour lists, padded to a few fixed shapes.

A structure's neighbours are found on the host with vesin (any triclinic cell, any cutoff, cells far
smaller than the cutoff, per-axis periodicity) and stored per atom in a dense, padded layout:

- ``index[i, n]``: the n-th neighbour j of atom i;
- ``shift[i, n]``: its lattice image (integers, as float), so r_ij = x[j] - x[i] + shift @ cell;
- ``mask[i, n]``: whether the slot holds a real pair.

Atoms and neighbour slots are padded up to *buckets* (a short geometric ladder of sizes), so a whole
data set compiles to a handful of shapes. Padded atoms carry species -1.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import vesin

from .errors import StructureError

#: Minimum allowed interatomic distance (Å); closer pairs are treated as overlapping atoms.
OVERLAP_DISTANCE = 1e-3
#: Largest accepted |coordinate| (Å): at 1e9 Å, float64 still resolves distances to ~1e-7 Å.
MAX_COORDINATE = 1e9


def bucket_size(n: int, minimum: int = 1) -> int:
    """The smallest bucket >= n from the ladder 1, 2, 4, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, ...
    (quarter steps of each power of two: at most 25 % padding)."""
    n = max(int(n), minimum, 1)
    if n <= 8:
        return 1 << (n - 1).bit_length()
    p = 1 << (n.bit_length() - 1)  # power of two <= n
    step = max(p // 4, 1)
    return -(-n // step) * step


def power_of_two(n: int, minimum: int = 1) -> int:
    """The smallest power of two >= max(n, minimum): the coarse padding rule, for arrays whose padded size must not
    depend on what else is in a batch (labels bit-identical whatever the chunk) or that change size often (relaxation
    batches, so that few shapes compile). :func:`bucket_size` is the fine rule (at most 25 % padding)."""
    return 1 << (max(int(n), int(minimum), 1) - 1).bit_length()


class Neighbours(NamedTuple):
    """Padded per-atom neighbour data (a pytree of numpy or jax arrays).

    index (n_atoms_pad, n_nb) int32; shift (n_atoms_pad, n_nb, 3) integer lattice image as float64, so that
    r_ij = x[index] - x[i] + shift @ cell; mask (n_atoms_pad, n_nb) bool, True for real pairs.
    """

    index: np.ndarray
    shift: np.ndarray
    mask: np.ndarray


def check_structure(positions, cell, pbc, name: str = "structure") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and normalise a structure: finite positions, a non-singular cell where periodic.

    Returns (positions (N,3) float64, cell (3,3) float64, pbc (3,) bool). A missing cell of a non-periodic
    structure becomes zeros. Raises StructureError naming ``name``.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise StructureError(f"{name}: positions must have shape (N, 3), got {positions.shape}")
    bad = ~np.isfinite(positions).all(axis=1)
    if bad.any():
        raise StructureError(f"{name}: non-finite (NaN or inf) position of atom(s) {np.nonzero(bad)[0][:10].tolist()}")
    far = np.abs(positions).max(axis=1) > MAX_COORDINATE if len(positions) else bad
    if far.any():
        k = int(np.argmax(far))
        raise StructureError(f"{name}: atom {k} is at {positions[k].tolist()} Å; coordinates beyond {MAX_COORDINATE:.0e} Å "
                             f"are not supported (float64 would lose the interatomic distances)")
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    if cell.shape != (3, 3):
        raise StructureError(f"{name}: cell must be 3x3, got {cell.shape}")
    if not np.isfinite(cell).all():
        raise StructureError(f"{name}: the cell has non-finite entries")
    if pbc.any():
        # only the periodic directions need to be independent vectors
        vecs = cell[pbc]
        sv = np.linalg.svd(vecs, compute_uv=False)
        if sv.min() < 1e-8 * max(sv.max(), 1.0):
            raise StructureError(f"{name}: the cell is singular (periodic lattice vectors are linearly dependent): {cell.tolist()}")
        if pbc.all() and abs(np.linalg.det(cell)) < 1e-6:
            raise StructureError(f"{name}: the cell volume is {np.linalg.det(cell):.3g} Å³ (singular cell)")
    return positions, cell, pbc


def _open_directions(cell, pbc) -> np.ndarray:
    """Unit vectors (one per non-periodic axis k, in row k of a (3, 3) array; other rows zero), orthogonal to the
    periodic lattice vectors and to each other."""
    dirs = np.zeros((3, 3))
    for k in np.nonzero(~pbc)[0]:
        others = [cell[a] for a in range(3) if pbc[a]] + [dirs[a] for a in range(k) if not pbc[a]]
        v = np.random.default_rng(k).normal(size=3)  # a generic vector, made orthogonal to the others
        for o in others:
            if np.linalg.norm(o) > 0:
                o = o / np.linalg.norm(o)
                v -= v.dot(o) * o
        dirs[k] = v / np.linalg.norm(v)
    return dirs


def _close_gaps(positions, directions, cutoff: float) -> np.ndarray:
    """Positions with every empty gap wider than ``cutoff`` + 1 Å along each open (non-periodic) direction narrowed to
    ``cutoff`` + 1 Å, by moving whole groups of atoms along that direction.

    Atoms on either side of such a gap cannot be neighbours (their separation along a direction orthogonal to the
    periodic lattice vectors exceeds the cutoff, for every periodic image), and atoms on the same side keep their
    relative positions, so the pairs within ``cutoff`` are unchanged. This keeps the box handed to vesin small:
    an isolated atom 1e6 Å away would otherwise ask for ~1e17 cells (a floating-point exception inside vesin).
    """
    pos = positions
    for n in directions:
        if not n.any() or len(pos) < 2:
            continue
        s = pos @ n
        order = np.argsort(s, kind="stable")
        excess = np.maximum(np.diff(s[order]) - (cutoff + 1.0), 0.0)
        if not excess.any():
            continue
        move = np.empty(len(pos))
        move[order] = np.concatenate([[0.0], np.cumsum(excess)])
        pos = pos - move[:, None] * n
    return pos


def _box_for_vesin(positions, cell, pbc, directions=None):
    """vesin needs a full, non-singular box even along non-periodic axes: complete it with orthogonal vectors."""
    if pbc.all():
        return cell
    if directions is None:
        directions = _open_directions(cell, pbc)
    box = cell.copy()
    for k in np.nonzero(~pbc)[0]:  # each open side: 10 Å + twice the extent of the atoms along it
        span = np.ptp(positions @ directions[k]) if len(positions) else 0.0
        box[k] = (10.0 + 2.0 * span) * directions[k]
    if abs(np.linalg.det(box)) < 1e-8:
        box = np.eye(3) * (10.0 + 2.0 * (np.ptp(positions, axis=0).max() if len(positions) else 0.0))
        box[pbc] = cell[pbc]
    return box


def pairs(positions, cell, pbc, cutoff: float, name: str = "structure"):
    """All ordered pairs (i, j, image shift) with |r_ij| < cutoff, periodic images included.

    Returns i, j (int64) and shift (P, 3) int64 such that r_ij = x[j] - x[i] + shift @ cell.
    Raises StructureError for overlapping atoms (distance < OVERLAP_DISTANCE Å).
    """
    positions, cell, pbc = check_structure(positions, cell, pbc, name)
    n = len(positions)
    if n == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e, np.zeros((0, 3), dtype=np.int64)
    directions = None
    if not pbc.all():
        directions = _open_directions(cell, pbc)
        positions = _close_gaps(positions, directions, float(cutoff))
    box = _box_for_vesin(positions, cell, pbc, directions)
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=True, sorted=True)
    i, j, shift, d = nl.compute(points=positions, box=box, periodic=pbc.tolist(), quantities="ijSd")
    keep = d < cutoff  # MLIP's strict inequality
    if not keep.all():  # (rare: a pair at exactly the cutoff) masking copies all four arrays
        i, j, shift, d = i[keep], j[keep], shift[keep], d[keep]
    close = d < OVERLAP_DISTANCE
    if close.any():
        k = np.nonzero(close)[0][0]
        raise StructureError(
            f"{name}: atoms {int(i[k])} and {int(j[k])} overlap (distance {d[k]:.2e} Å; shift {shift[k].tolist()})"
        )
    return _as_int64(i), _as_int64(j), shift.astype(np.int64)


def _as_int64(a):
    """vesin's uint64 indices as int64 without a copy (they are far below 2**63)."""
    return a.view(np.int64) if a.dtype == np.uint64 else a.astype(np.int64, copy=False)


def dense_neighbours(i, j, shift, n_atoms: int, n_atoms_pad: int | None = None, n_nb: int | None = None,
                     shift_dtype=np.float64) -> Neighbours:
    """Pack pair lists into the padded per-atom layout. Sizes default to buckets of the actual counts; the shifts
    are stored as ``shift_dtype`` (the MD lists keep them as int8)."""
    counts = np.bincount(i, minlength=n_atoms) if len(i) else np.zeros(n_atoms, dtype=np.int64)
    max_nb = int(counts.max()) if n_atoms else 0
    n_nb = bucket_size(max_nb, minimum=4) if n_nb is None else n_nb
    n_atoms_pad = bucket_size(n_atoms) if n_atoms_pad is None else n_atoms_pad
    if max_nb > n_nb or n_atoms > n_atoms_pad:
        raise ValueError(f"padding too small: need {n_atoms} atoms x {max_nb} neighbours, got {n_atoms_pad} x {n_nb}")
    if len(i) > 1 and np.any(np.diff(i) < 0):  # group by central atom (vesin's sorted lists already are)
        order = np.argsort(i, kind="stable")
        i, j, shift = i[order], j[order], shift[order]
    starts = np.concatenate([[0], np.cumsum(counts)])
    slot = np.arange(len(i)) - starts[i]
    index = np.zeros((n_atoms_pad, n_nb), dtype=np.int32)
    shifts = np.zeros((n_atoms_pad, n_nb, 3), dtype=shift_dtype)
    mask = np.zeros((n_atoms_pad, n_nb), dtype=bool)
    index[i, slot] = j
    shifts[i, slot] = shift
    mask[i, slot] = True
    return Neighbours(index=index, shift=shifts, mask=mask)


def neighbour_list(positions, cell, pbc, cutoff: float, n_atoms_pad=None, n_nb=None, name="structure") -> Neighbours:
    """Pairs within ``cutoff`` (Å) in the padded layout; see :func:`pairs` and :func:`dense_neighbours`."""
    i, j, shift = pairs(positions, cell, pbc, cutoff, name)
    return dense_neighbours(i, j, shift, len(np.asarray(positions)), n_atoms_pad, n_nb)
