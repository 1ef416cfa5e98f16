"""Many structures packed into one padded disjoint union (the model's batched input).

Atoms of all structures are concatenated; each atom knows its structure (``structure``), whose cell
is ``cells[structure]``; neighbour indices point into the concatenated atoms. Atom, structure and
neighbour counts are padded up to buckets (:func:`mtpjax.neighbors.bucket_size`), so a data set
compiles to a few shapes. Padding atoms carry species -1; padding structures have no atoms.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .neighbors import Neighbours, bucket_size, dense_neighbours


class Batch(NamedTuple):
    """A packed batch (numpy or jax arrays): positions (N, 3) Å, cells (B, 3, 3) Å, species (N,) (-1 = padding),
    structure (N,) index of each atom's structure, nbrs (:class:`Neighbours`)."""

    positions: np.ndarray
    cells: np.ndarray
    species: np.ndarray
    structure: np.ndarray
    nbrs: Neighbours


def pack(structures, n_atoms_pad: int | None = None, n_structures_pad: int | None = None, n_nb: int | None = None) -> Batch:
    """Pack structures given as (positions (n, 3), cell (3, 3) zeroed along non-periodic axes, types (n,),
    pairs (i, j, shift)) into one :class:`Batch`. Sizes default to buckets of the actual counts."""
    sizes = np.array([len(s[0]) for s in structures], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n_tot = int(offsets[-1])
    n_pad = bucket_size(n_tot, minimum=8) if n_atoms_pad is None else n_atoms_pad
    b_pad = bucket_size(len(structures)) if n_structures_pad is None else n_structures_pad
    i = np.concatenate([s[3][0] + o for s, o in zip(structures, offsets)]) if structures else np.zeros(0, np.int64)
    j = np.concatenate([s[3][1] + o for s, o in zip(structures, offsets)]) if structures else np.zeros(0, np.int64)
    shift = np.concatenate([s[3][2] for s in structures]) if structures else np.zeros((0, 3), np.int64)
    if n_nb is None:
        n_nb = bucket_size(max_neighbours(i, n_tot), minimum=4)
    nbrs = dense_neighbours(i, j, shift, n_tot, n_atoms_pad=n_pad, n_nb=n_nb)
    pos = np.zeros((n_pad, 3))
    species = np.full(n_pad, -1, dtype=np.int64)
    structure = np.zeros(n_pad, dtype=np.int64)
    cells = np.tile(np.eye(3), (b_pad, 1, 1))
    for k, (s, o) in enumerate(zip(structures, offsets)):
        sl = slice(o, o + len(s[0]))
        pos[sl], species[sl], structure[sl], cells[k] = s[0], s[2], k, s[1]
    return Batch(positions=pos, cells=cells, species=species, structure=structure, nbrs=nbrs)


def max_neighbours(pairs_i, n_atoms: int) -> int:
    """Largest number of neighbours of any atom."""
    return int(np.bincount(pairs_i, minlength=n_atoms).max()) if len(pairs_i) else 0


def pair_distances(batch: Batch) -> np.ndarray:
    """|r_ij| (N, n_nb) in Å of a packed batch, on the host (padding slots hold meaningless values: use
    ``batch.nbrs.mask``)."""
    b = Batch(*(np.asarray(x) for x in batch[:4]), nbrs=type(batch.nbrs)(*(np.asarray(x) for x in batch.nbrs)))
    lattice = np.einsum("inc,icd->ind", b.nbrs.shift, b.cells[b.structure])
    return np.linalg.norm(b.positions[b.nbrs.index] - b.positions[:, None, :] + lattice, axis=-1)
