"""HESSIAN (off unless ``subsets`` names it): bulk cells of the oracle's own ground state, rattled, labelled with their
force constants (Ortner & Wang 2022: fitting force constants beside energies and forces).

For every supercell size n in ``hessian.sizes`` (n x n x n primitive cells of ``hessian.lattice``: hcp with the
oracle's relaxed a and c/a; fcc or bcc at the reference volume per atom Ω0 (the oracle's ground state's)) and every copy c < ``hessian.copies``,
each atom is displaced by a Gaussian of σ = ``hessian.rattle`` Å per component, drawn from
``SeedSequence([seed, 7, n, c])`` (stream 7 = :data:`HESSIAN_STREAM`). Each cell gets its force constants (3N x 3N,
eV/Å²; :func:`mtpjax.oracles.hessian.force_constants`: exact autodiff for a JAX oracle, central differences of the
forces with step ``hessian.delta`` Å for an ASE oracle) as ``atoms.arrays["hessian"]``, then energy, forces and stress
like every subset, and is written as ``OUT/HESSIAN.extxyz`` (and in EVERYTHING). Ids: ``HESSIAN/<lattice>-n<n>-c<c>``.
Cells are checkpointed in chunks like every stage (resumable).
"""
from __future__ import annotations

import numpy as np

from ..oracles.hessian import acoustic_sum_violation, attach_force_constants, force_constants, read_force_constants
from . import oracle as _oracle
from .structures import Failure, min_distance, tag

#: Stream number of HESSIAN's random draws (after mtpjax.generate.structures.STREAMS 1-5 and ENTROPY's 6).
HESSIAN_STREAM = 7


def bulk_cells(element: str, ref: dict, cfg, seed: int, symprec: float = 1e-3) -> list:
    """The HESSIAN cells (ase.Atoms, tagged, unlabelled) of the [hessian] table ``cfg`` around the oracle's reference
    ``ref`` (a, c_over_a, omega0 of :func:`mtpjax.generate.reference.hcp_reference`)."""
    from ase.build import bulk

    out = []
    for n in cfg.sizes:
        if cfg.lattice == "hcp":
            prim = bulk(element, "hcp", a=ref["a"], c=ref["a"] * ref["c_over_a"])
        elif cfg.lattice == "fcc":
            prim = bulk(element, "fcc", a=(4.0 * ref["omega0"]) ** (1.0 / 3.0))
        else:
            prim = bulk(element, "bcc", a=(2.0 * ref["omega0"]) ** (1.0 / 3.0))
        for c in range(cfg.copies):
            a = prim.repeat((n, n, n))
            r = np.random.default_rng(np.random.SeedSequence([int(seed), HESSIAN_STREAM, int(n), int(c)]))
            a.positions = a.positions + r.normal(0.0, cfg.rattle, a.positions.shape)
            out.append(tag(a, "HESSIAN", f"{cfg.lattice}-n{n}-c{c}", "", symprec))
    return out


def hessian_task(p, progress=None):
    """Force constants of the structures of one chunk: copies carrying ``arrays["hessian"]``, or :class:`Failure`."""
    oracle = _oracle.single_process(_oracle.resolve(p["oracle"]))
    pot = oracle if _oracle.is_jax(oracle) else _oracle.calculator(oracle)
    out = []
    for k, a in enumerate(p["structures"]):
        name = str(a.info.get("id", k))
        try:
            if min_distance(a, p["dmin"]) < p["dmin"]:
                out.append(Failure(k, name, "invalid_structure", f"atoms closer than {p['dmin']:.3f} Å after the rattle"))
            else:
                H = force_constants(pot, a, delta=p["delta"])
                if not np.all(np.isfinite(H)):
                    out.append(Failure(k, name, "non_finite", "non-finite force constants"))
                else:
                    out.append(attach_force_constants(a.copy(), H))
        except Exception as e:  # noqa: BLE001 - the oracle failed on this cell only
            out.append(Failure(k, name, "oracle_error", f"{type(e).__name__}: {e}"))
        if progress:
            progress(1)
    return out


def stage_summary(structures, oracle) -> dict:
    """The manifest's extra fields of HESSIAN: how the force constants were made and their largest acoustic-sum-rule
    violation (eV/Å²)."""
    asr = [acoustic_sum_violation(read_force_constants(a)) for a in structures]
    return {"force_constants": "jax autodiff (exact)" if _oracle.is_jax(oracle) else "central differences of forces",
            "max_acoustic_sum_violation": max(asr) if asr else None}
