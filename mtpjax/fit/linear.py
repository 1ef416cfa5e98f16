"""The exact linear least squares for the species and moment coefficients, Gram-Schmidt of the radial coefficient
vectors, and the deterministic starting model."""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..batch import pair_distances
from ..data import LabelledBatch
from ..model import MTP, mtp_from_arrays
from .loss import flat_batches
from .residuals import LossConfig, efs


def design_columns(mtp: MTP, lb: LabelledBatch, chunk: int = 8):
    """Energies (n_B, B), forces (n_B, N, 3) and virials (n_B, B, 3, 3) of each scalar basis function alone."""
    n_b = mtp.moment_coeffs.shape[0]
    base = eqx.tree_at(lambda m: m.species_coeffs, mtp, jnp.zeros_like(mtp.species_coeffs))

    def column(xi):
        e, f, v, _ = efs(eqx.tree_at(lambda m: m.moment_coeffs, base, xi), lb)
        return e, f, v

    return jax.lax.map(column, jnp.eye(n_b, dtype=mtp.moment_coeffs.dtype), batch_size=chunk)


_design_columns_jit = jax.jit(design_columns, static_argnames="chunk")


def linear_solve(mtp: MTP, batches, cfg: LossConfig, n_structures: int, return_diagonal: bool = False):
    """The species and moment coefficients that minimise the loss exactly at fixed radial coefficients
    (weighted normal equations, ridge 1e-10·max(1, A_ll) as MLIP). With ``return_diagonal``, also the diagonal
    of the normal matrix / n_structures (the loss's curvature along each linear coefficient)."""
    batches = flat_batches(batches)
    S, n_b = mtp.species_coeffs.shape[0], mtp.moment_coeffs.shape[0]
    n_lin = S + n_b
    AtA = np.zeros((n_lin, n_lin))
    Aty = np.zeros(n_lin)
    for lb in batches:
        E, F, V = (np.asarray(x) for x in _design_columns_jit(mtp, jax.tree.map(jnp.asarray, lb)))
        lb = jax.tree.map(np.asarray, lb)  # the normal equations are accumulated on the host
        n = np.maximum(lb.n_atoms, 1.0)
        sp = lb.batch.species
        counts = np.stack([np.bincount(lb.batch.structure[sp == s], minlength=len(n)) for s in range(S)], axis=1)
        # energies: species counts | basis sums
        we = lb.weight * cfg.energy_weight / n**cfg.energy_power * lb.energy_mask
        A_e = np.concatenate([counts, E.T], axis=1)
        AtA += A_e.T @ (A_e * we[:, None])
        Aty += A_e.T @ (we * lb.energy)
        # forces: species columns are zero
        fm = lb.forces_mask & (sp >= 0)
        wf = (lb.weight * cfg.force_weight / n**cfg.force_power)[lb.batch.structure][fm]
        A_f = np.moveaxis(F[:, fm], 0, -1).reshape(-1, n_b)  # (3 n_f, n_B)
        wf3 = np.repeat(wf, 3)
        AtA[S:, S:] += A_f.T @ (A_f * wf3[:, None])
        Aty[S:] += A_f.T @ (wf3 * lb.forces[fm].reshape(-1))
        # virials
        ws = lb.weight * cfg.stress_weight / n * lb.virial_mask
        A_s = np.moveaxis(V, 0, -1).reshape(-1, n_b)  # (9 B, n_B)
        ws9 = np.repeat(ws, 9)
        AtA[S:, S:] += A_s.T @ (A_s * ws9[:, None])
        Aty[S:] += A_s.T @ (ws9 * lb.virial.reshape(-1))
    d = np.diag(AtA).copy()
    AtA[np.diag_indices(n_lin)] += 1e-10 * np.maximum(1.0, d)
    theta = np.linalg.solve(AtA, Aty)
    dt = mtp.moment_coeffs.dtype
    solved = eqx.tree_at(lambda m: (m.species_coeffs, m.moment_coeffs), mtp, (jnp.asarray(theta[:S], dt), jnp.asarray(theta[S:], dt)))
    return (solved, d / n_structures) if return_diagonal else solved


def orthonormalize_radial(mtp: MTP) -> MTP:
    """Gram-Schmidt of the radial coefficient vectors c_mu (flattened over species pairs and Chebyshev index), in
    the order mu = 0, 1, ... (as MLIP's LinOptimize does before its solve). It changes the model."""
    rc = np.asarray(mtp.radial_coeffs)
    K = rc.shape[2]
    C = np.moveaxis(rc, 2, 0).reshape(K, -1)
    q, r = np.linalg.qr(C.T)
    q = q * np.sign(np.where(np.diag(r) == 0, 1.0, np.diag(r)))
    new = np.moveaxis(q.T.reshape((K,) + rc.shape[:2] + rc.shape[3:]), 0, 2)
    return eqx.tree_at(lambda m: m.radial_coeffs, mtp, jnp.asarray(new, mtp.radial_coeffs.dtype))


def initial_mtp(basis, n_species: int, min_dist: float, max_dist: float, batches, seed: int = 0, radial_basis_size: int = 8,
                species=None, init: str = "mlip") -> MTP:
    """A deterministic starting MTP; species and moment coefficients zero, ``scaling`` chosen so that the mean
    neighbour sum of scaling * (R_cut - r)^2 is 1.

    Radial coefficients: ``init="mlip"`` (default) starts radial function mu as the Chebyshev polynomial T_mu for
    every species pair, as MLIP-3 does, plus seeded noise of 1e-3; ``init="random"`` draws orthonormal random
    vectors from the seed. Both are normalised (the orthonormality penalty starts near zero).
    """
    rng = np.random.default_rng(seed)
    K, R = int(basis.radial_funcs_count), radial_basis_size
    if init == "mlip":
        C = np.zeros((K, n_species, n_species, R))
        for k in range(min(K, R)):
            C[k, :, :, k] = 1.0
        C += 1e-3 * rng.normal(size=C.shape)
        C /= np.linalg.norm(C.reshape(K, -1), axis=1)[:, None, None, None]
    elif init == "random":
        q, _ = np.linalg.qr(rng.normal(size=(K, n_species * n_species * R)).T)
        C = q.T[:K].reshape(K, n_species, n_species, R)
    else:
        raise ValueError(f"unknown radial initialisation {init!r} (mlip or random)")
    sums, count = 0.0, 0
    for lb in batches:
        r = pair_distances(lb.batch)
        ok = np.asarray(lb.batch.nbrs.mask) & (r < max_dist)
        sums += float(np.sum(np.where(ok, (max_dist - r) ** 2, 0.0)))
        count += int((np.asarray(lb.batch.species) >= 0).sum())
    scaling = count / sums if sums > 0 else 1.0
    return mtp_from_arrays(
        radial_coeffs=np.moveaxis(C, 0, 2),
        species_coeffs=np.zeros(n_species),
        moment_coeffs=np.zeros(len(basis.alpha_moment_mapping)),
        scaling=scaling,
        min_dist=min_dist,
        max_dist=max_dist,
        alpha_index_basic=basis.alpha_index_basic,
        alpha_index_times=basis.alpha_index_times,
        alpha_moment_mapping=basis.alpha_moment_mapping,
        alpha_moments_count=basis.alpha_moments_count,
        species=species,
    )
