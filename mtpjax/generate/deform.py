"""TRIAX, SHEAR and RATTLE: ``copies`` deformed copies of every INTMIN structure.

A deformation F = I + ε acts on rows: cell → cell·F, positions → positions·F (fractional coordinates fixed).

- TRIAX: ε = diag(e), each e_i uniform in ±``triax``;
- SHEAR: ε symmetric, off-diagonal entries uniform in ±``shear``, diagonal zero;
- RATTLE: ε symmetric, all six entries uniform in ±``rattle_strain``; after the strain every atom is displaced
  by an isotropic Gaussian vector with σ = ``rattle_mean`` / sqrt(8/π) per component, so the mean
  displacement norm is ``rattle_mean`` Å (a Maxwell distribution of norms).

Copy k of a parent with key (sg, n, copy) draws from ``SeedSequence([seed, stream, sg, n, copy, k])``. ε is
stored as ``info['strain']`` (9 numbers, row-major); RATTLE's displacements are positions − parent·F.
Rejections: ``volume_collapse`` (det F below ``min_volume_ratio``), ``min_distance`` (atoms closer than the
RANDSPG filter, Å).
"""
from __future__ import annotations

import numpy as np

from .config import DeformConfig
from .structures import Failure, key_of, min_distance, rng, strip_labels, tag

DEFORMATIONS = ("TRIAX", "SHEAR", "RATTLE")


def strain(subset: str, r: np.random.Generator, cfg: DeformConfig) -> np.ndarray:
    """The strain ε (3x3) of one copy."""
    if subset == "TRIAX":
        return np.diag(r.uniform(-cfg.triax, cfg.triax, 3))
    if subset == "SHEAR":
        xy, xz, yz = r.uniform(-cfg.shear, cfg.shear, 3)
        return np.array([[0, xy, xz], [xy, 0, yz], [xz, yz, 0]])
    if subset == "RATTLE":
        xx, yy, zz, yz, xz, xy = r.uniform(-cfg.rattle_strain, cfg.rattle_strain, 6)
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    raise ValueError(f"unknown deformation {subset!r}")


def deform(parent, subset: str, cfg: DeformConfig, seed: int, dmin: float, symprec: float, index0: int = 0) -> list:
    """``cfg.copies`` deformed copies of ``parent`` (tagged ase.Atoms) or :class:`Failure` items."""
    out = []
    ident = parent.info["id"].split("/", 1)[1]
    for k in range(cfg.copies):
        name = f"{subset}/{ident}-k{k}"
        r = rng(seed, subset, *key_of(parent)[:3], k)
        eps = strain(subset, r, cfg)
        F = np.eye(3) + eps
        a = strip_labels(parent)
        a.set_cell(a.cell.array @ F, scale_atoms=False)
        a.positions = parent.positions @ F
        if subset == "RATTLE":
            a.positions += r.normal(0.0, cfg.rattle_mean / np.sqrt(8 / np.pi), (len(a), 3))
        det = np.linalg.det(F)
        if det < cfg.min_volume_ratio:
            out.append(Failure(index0 + k, name, "volume_collapse", f"V/V_parent = {det:.3g} < {cfg.min_volume_ratio}"))
            continue
        d = min_distance(a, dmin)
        if d < dmin:
            out.append(Failure(index0 + k, name, "min_distance", f"atoms {d:.3f} Å apart (< {dmin:.3f} Å)"))
            continue
        a.info.update(key=np.array([*key_of(parent)[:3], k]), strain=eps.ravel())
        out.append(tag(a, subset, f"{ident}-k{k}", parent.info["id"], symprec))
    return out
