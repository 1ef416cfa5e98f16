"""The Jacobian of the weighted training residuals with respect to all MTP coefficients, and its normal equations.

The residuals of one packed batch are those of MLIP's objective (``mtpjax.fit.loss``):
r_E = sqrt(c_E) (E - E*) per structure, r_F = sqrt(c_F) (F - F*) per atom and component, r_V = sqrt(c_V) (V - V*)
per structure and virial component (eV, eV/Å, eV), zero where a label is missing, so that the batch's loss terms
are sum r^2. Parameters are flattened as theta = [radial (S, S, K, R_b), species (S,), moment (n_B,)].

How the Jacobian is computed, without differentiating the forces a second time through every pair for every
parameter:

- Per pair (i, j), the features p_b(R_ij) = f_mu(b)(r_ij) u_ij^m(b) of each basic moment b (M_b(i) = sum_j p_b) and
  their derivatives D_b = dp_b/dR_ij (n_basic x 3) come from one forward-mode pass (3 tangents).
- Per atom, the contraction gives the basis B(M), its Jacobian G = dB/dM (n_B x n_basic) and the Hessian
  K = d^2 V/dM^2 of the site energy (n_basic x n_basic), propagated through their static sparsity
  (:func:`mtpjax.contraction.basis_derivatives`; each moment depends on a few basic moments).
- The site energy's derivative along a pair is dV_i/dR_ij = g(i) . D(ij) with g = xi G. Its derivatives are
  G(i) D(ij) for the moment coefficients xi and A(i)^T D(ij) + d/dR [sum_b g_b [mu_b = mu][t_j = s] Q_beta u^m_b]
  for the radial coefficients c[t_i, s, mu, beta], with A = K dM/dc (per atom).
- Forces are -dE/dx: F_k = sum_j dV_k/dR_kj - sum_{i: j = k} dV_i/dR_ik; virials -sum R_b dV/dR_a.

Everything that depends on the coefficients is per atom, except one small matrix product per pair.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..contraction import basis_derivatives, monomials
from ..model import MTP, pair_geometry, radial_basis_values, radial_values
from ..potential import pair_vectors
from .gradient import pair_basis
from .params import with_trainable


def n_parameters(mtp: MTP) -> tuple[int, int, int]:
    """(radial, species, moment) parameter counts."""
    return int(np.prod(mtp.radial_coeffs.shape)), int(mtp.species_coeffs.shape[0]), int(mtp.moment_coeffs.shape[0])


def flatten(mtp: MTP):
    """theta = [radial, species, moment] as one vector."""
    return jnp.concatenate([mtp.radial_coeffs.reshape(-1), mtp.species_coeffs, mtp.moment_coeffs])


def unflatten(mtp: MTP, theta) -> MTP:
    """``mtp`` with the coefficients of the flat vector ``theta`` (the inverse of :func:`flatten`)."""
    n_r, n_s, _ = n_parameters(mtp)
    rc = theta[:n_r].reshape(mtp.radial_coeffs.shape)
    return with_trainable(mtp, (rc, theta[n_r : n_r + n_s], theta[n_r + n_s :]))


def _pair_features(mtp: MTP, R, tj, mask, ti):
    """p (n_basic, c, n_nb): f_mu(b)(r) u^m(b) per pair; the radial functions of the central atom's type."""
    plan = mtp.plan
    r, u, inside = pair_geometry(mtp, R, mask)
    f = radial_values(mtp, r, inside, ti, tj)  # (K, c, n_nb)
    mono = monomials(plan, u)
    rows = jnp.concatenate([f[k][None] * mono[:n] for k, n in enumerate(plan.radial_prefix) if n])
    return rows[plan.basic_row]


def _radial_features(mtp: MTP, R, tj, mask, h):
    """w[s, mu, beta] (S, K, R_b, c, n_nb) = [t_j = s] Q_beta(r) sum_b h_b [mu_b = mu] u^m(b) for per-atom weights
    h (n_basic, c): the pair's share of sum_b h_b dM_b/dc[t_i, s, mu, beta]."""
    plan = mtp.plan
    r, u, inside = pair_geometry(mtp, R, mask)
    Q = radial_basis_values(mtp, r, inside)  # (R_b, c, n_nb)
    mono = monomials(plan, u)  # (n_mono, c, n_nb)
    mono_b = mono[_basic_monomial(plan)]  # (n_basic, c, n_nb)
    K = mtp.radial_coeffs.shape[2]
    mu_onehot = jnp.asarray(np.eye(K)[plan.basic_mu])  # (n_basic, K)
    hu = jnp.einsum("bk,bi,bin->kin", mu_onehot, h, mono_b)  # (K, c, n_nb)
    oh_j = jax.nn.one_hot(tj, mtp.n_species, dtype=Q.dtype)  # (c, n_nb, S)
    return jnp.einsum("ins,kin,βin->skβin", oh_j, hu, Q)


def _basic_monomial(plan) -> np.ndarray:
    """Index into ``plan.monomials`` of each basic moment's monomial."""
    offsets = np.concatenate([[0], np.cumsum(plan.radial_prefix)])
    return (np.asarray(plan.basic_row) - offsets[np.asarray(plan.basic_mu)]).astype(np.int32)


def _pair_basis(mtp: MTP, R, tj, mask):
    """P[s, beta, b] (S, R_b, n_basic, c): sum_j [t_j = s] Q_beta(r_ij) u^m(b)(ij): dM_b/dc[t_i, s, mu_b, beta]
    (the fast gradient's coefficient-free pair basis, on each basic moment's monomial)."""
    return pair_basis(mtp, R, tj, mask)[:, :, _basic_monomial(mtp.plan)]


def _tangents(R):
    """The three unit directions e_a applied to every pair at once: (3, c, n_nb, 3)."""
    return jnp.broadcast_to(jnp.eye(3, dtype=R.dtype)[:, None, None, :], (3,) + R.shape)


def _chunk(mtp: MTP, R, tj, mask, ti, slots=None):
    """One chunk of c atoms. Returns per atom: site energy V (c,), dV/dtheta_local (c, n_loc), the pair forces
    dV_i/dR_ij (c, n_nb, 3), the theta-derivatives of the forces on the neighbours (c, n_g, 3, n_loc) and of the
    virial (c, 3, 3, n_loc), with local parameters [radial of the central type (S, K, R_b), moment (n_B)].

    ``slots`` None: one group per pair (n_g = n_nb). Else a (c, n_nb, n_g) 0/1 array that assigns each pair to its
    neighbour atom (its index within the structure): the images of one atom are summed before the one product per
    pair that remains (basic moments x local parameters x 3), which in a small periodic cell (a few atoms, dozens of
    neighbours) does that product once per atom instead of once per image."""
    plan = mtp.plan
    S, _, K, Rb = mtp.radial_coeffs.shape
    p_fn = lambda x: _pair_features(mtp, x, tj, mask, ti)  # noqa: E731
    p, D = jax.vmap(lambda t: jax.jvp(p_fn, (R,), (t,)), out_axes=(None, 0))(_tangents(R))  # (nb, c, n), (3, nb, c, n)
    M = jnp.sum(p, axis=-1)  # (n_basic, c)
    n_b, c = M.shape
    xi = jnp.broadcast_to(mtp.moment_coeffs[:, None], (mtp.moment_coeffs.shape[0], c))
    # B; G^T (n_basic, n_B, c) = dB/dM; g = dV/dM (n_basic, c); Kh = d^2 V/dM^2 (n_basic, n_basic, c), all sparse
    B, Gt, g, Kh = basis_derivatives(plan, M, xi)
    # dM/dc[t_i, s, mu, beta] = [mu_b = mu] P[s, beta, b]; A = (d^2 V/dM^2) dM/dc along those directions
    P = _pair_basis(mtp, R, tj, mask)  # (S, R_b, n_basic, c)
    mu_onehot = jnp.asarray(np.eye(K)[plan.basic_mu])  # (n_basic, K)
    dMdc = jnp.einsum("bk,sβbi->skβbi", mu_onehot, P).reshape(S * K * Rb, n_b, c)
    A = jnp.einsum("bdi,ldi->bli", Kh, dMdc)  # (n_basic, S K R_b, c)
    dV_dc = jnp.einsum("bi,lbi->il", g, dMdc)
    V = jnp.sum(xi * B, axis=0) + jax.nn.one_hot(ti, S, dtype=B.dtype) @ mtp.species_coeffs
    dV_local = jnp.concatenate([dV_dc, B.T], axis=1)  # (c, n_loc)
    # pair terms: d(dV_i/dR_ij)/dtheta = W^T D(ij) + E2(ij)
    dVdR = jnp.einsum("bi,abin->ina", g, D)  # (c, n_nb, 3)
    W = jnp.concatenate([A, Gt], axis=1)  # (n_basic, n_loc, c): [K dM/dc | G^T]
    w_fn = lambda x: _radial_features(mtp, x, tj, mask, g)  # noqa: E731
    _, E2 = jax.vmap(lambda t: jax.jvp(w_fn, (R,), (t,)), out_axes=(None, 0))(_tangents(R))  # (3, S, K, R_b, c, n)
    E2 = jnp.moveaxis(E2.reshape(3, S * K * Rb, *E2.shape[-2:]), (0, 1), (2, 3))  # (c, n_nb, 3, S K R_b)
    n_rl = S * K * Rb
    # virial: -sum_j R_ij,d d(dV_i/dR_ij,a)/dtheta
    RD = jnp.einsum("abin,ind->adbi", D, R)
    J_vir = -jnp.einsum("bli,adbi->iadl", W, RD).at[..., :n_rl].add(jnp.einsum("ind,inal->iadl", R, E2))
    if slots is None:
        J_group = jnp.einsum("bli,abin->inal", W, D).at[..., :n_rl].add(E2)  # (c, n_nb, 3, n_loc)
    else:
        Dg = jnp.einsum("abin,ing->abig", D, slots)
        J_group = jnp.einsum("bli,abig->igal", W, Dg).at[..., :n_rl].add(jnp.einsum("inal,ing->igal", E2, slots))
    return V, dV_local, dVdR, J_group, J_vir


def _expand(mtp: MTP, x_local, ti):
    """Local parameters [radial of the central type (S K R_b), moment (n_B)] -> global theta (radial (S S K R_b),
    species (S), moment), for the leading atom axis of x_local (c, ..., n_loc)."""
    S, _, K, Rb = mtp.radial_coeffs.shape
    n_rl = S * K * Rb
    oh = jax.nn.one_hot(ti, S, dtype=x_local.dtype)  # (c, S)
    oh = oh.reshape((oh.shape[0],) + (1,) * (x_local.ndim - 2) + (S, 1))
    rad = (oh * x_local[..., None, :n_rl]).reshape(x_local.shape[:-1] + (S * n_rl,))
    spec = jnp.zeros(x_local.shape[:-1] + (S,), x_local.dtype)
    return jnp.concatenate([rad, spec, x_local[..., n_rl:]], axis=-1)


def chunk_size(mtp: MTP, n_atoms: int, n_nb: int, group: int | None = None) -> int:
    """Atoms per chunk: all on accelerators; on CPU a working set of ~4 MiB (multiples of 4)."""
    if jax.default_backend() != "cpu":
        return max(n_atoms, 1)
    n_loc = int(np.prod(mtp.radial_coeffs.shape[1:])) + mtp.moment_coeffs.shape[0]
    n_b = mtp.plan.n_basic
    if group is None:
        per_atom = 8 * max(n_nb, 1) * (3 * n_loc + 8 * n_b)
    else:
        per_atom = 8 * (max(n_nb, 1) * (8 * n_b + 3 * n_loc // 4 + group) + group * 3 * n_loc + 2 * n_b * n_loc)
    c = int(np.clip((1 << (22 if group is None else 23)) // per_atom, 4, 64)) // 4 * 4
    return min(c, -(-max(n_atoms, 1) // 4) * 4)


def max_structure_atoms(lb) -> int:
    """The most atoms of one structure in a packed batch (host side)."""
    b = lb.batch
    st = np.asarray(b.structure)[np.asarray(b.species) >= 0]
    return int(np.bincount(st).max()) if st.size else 1


def image_group(lb) -> int | None:
    """The ``group`` of :func:`predictions_and_jacobian` for a packed batch: the most atoms of one structure when that
    is at most half the neighbour slots per atom (small periodic cells, where one atom appears as many images), else
    None (host side; None for a batch stacked along a device axis)."""
    if lb.weight.ndim != 1:
        return None
    g = max_structure_atoms(lb)
    return g if 2 * g <= lb.batch.nbrs.index.shape[1] else None


def predictions_and_jacobian(mtp: MTP, lb, group: int | None = None):
    """Energies (B,), forces (N, 3), virials (B, 3, 3) of a packed batch and their Jacobians with respect to theta:
    (B, n), (N, 3, n), (B, 3, 3, n).

    ``group`` (static): None, or at least the most atoms of one structure (:func:`max_structure_atoms`): then the
    periodic images of each neighbour atom are summed before the per-pair product of the force Jacobian (the same
    numbers, far less work when the cells are small). Worth it when it is well below the neighbours per atom."""
    b = lb.batch
    R = pair_vectors(b.positions, b.cells, b.nbrs, b.structure)
    species = b.species
    tj = species[b.nbrs.index]
    mask = b.nbrs.mask & (species >= 0)[:, None]
    N, n_nb = R.shape[0], R.shape[1]
    B_ = b.cells.shape[0]
    n_r, n_s, n_m = n_parameters(mtp)
    n = n_r + n_s + n_m
    c = chunk_size(mtp, N, n_nb, group)
    pad = -N % c
    # each neighbour's index within its structure
    start = jax.ops.segment_min(jnp.arange(N), b.structure, num_segments=B_)
    local = b.nbrs.index - start[b.structure[b.nbrs.index]]
    args = (R, tj, mask, species, b.structure, b.nbrs.index, local)
    if pad:
        args = tuple(jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), constant_values=fill)
                     for x, fill in zip(args, (0.0, 0, False, -1, 0, 0, 0)))
    n_chunks = (N + pad) // c
    chunks = tuple(x.reshape((n_chunks, c) + x.shape[1:]) for x in args)
    dt = R.dtype

    def body(carry, a):
        F, JF, Vir, JV = carry
        Rc, tjc, mc, tic, sc, jc, lc = a
        if group is None:
            slots, targets = None, jc
        else:
            slots = jax.nn.one_hot(lc, group, dtype=dt) * mc[..., None]  # (c, n_nb, group)
            targets = jnp.minimum(start[sc][:, None] + jnp.arange(group), N + pad - 1)  # empty slots add zeros
        V, dV_loc, dVdR, Jg_loc, Jv_loc = _chunk(mtp, Rc, tjc, mc, tic, slots)
        real = (tic >= 0)
        Jg = _expand(mtp, Jg_loc, tic) * real[:, None, None, None]  # (c, n_g, 3, n)
        dVdR = dVdR * real[:, None, None]
        dV = _expand(mtp, dV_loc, tic)
        dV = dV.at[:, n_r : n_r + n_s].set(jax.nn.one_hot(tic, n_s, dtype=dt)) * real[:, None]
        # forces: +sum_j on the central atom, - on each neighbour
        own_F = jnp.sum(dVdR, axis=1)
        own_J = jnp.sum(Jg, axis=1)
        F = F.at[jc.reshape(-1)].add(-dVdR.reshape(-1, 3))
        JF = JF.at[targets.reshape(-1)].add(-Jg.reshape(-1, 3, n))
        # virial: -sum R_b dV/dR_a
        vir = -jnp.einsum("inb,ina->iab", Rc, dVdR)
        jvir = _expand(mtp, Jv_loc, tic) * real[:, None, None, None]
        Vir = Vir.at[sc].add(vir)
        JV = JV.at[sc].add(jvir)
        return (F, JF, Vir, JV), (V * real, dV, own_F, own_J)

    init = (jnp.zeros((N + pad, 3), dt), jnp.zeros((N + pad, 3, n), dt), jnp.zeros((B_, 3, 3), dt), jnp.zeros((B_, 3, 3, n), dt))
    (F, JF, Vir, JV), (V, dV, own_F, own_J) = jax.lax.scan(body, init, chunks)
    F = (F + own_F.reshape(-1, 3))[:N]
    JF = (JF + own_J.reshape(-1, 3, n))[:N]
    V, dV = V.reshape(-1)[:N], dV.reshape(-1, n)[:N]
    st = b.structure
    E = jax.ops.segment_sum(V, st, num_segments=B_)
    JE = jax.ops.segment_sum(dV, st, num_segments=B_)
    return E, F, Vir, JE, JF, JV


# --------------------------------------------------------------------------------------------------
# weighted residuals and their normal equations


def weighted_jacobian(mtp: MTP, lb, cfg, group: int | None = None):
    """The weighted residuals r (n_res,) of one packed batch and their Jacobian J (n_res, n_theta): rows of the
    energies (B), forces (3 N) and virials (9 B), each scaled by the square root of its loss weight and zero where
    the label is missing, so that sum r^2 is the batch's loss terms (:func:`mtpjax.fit.residuals.batch_loss_terms`)."""
    from .residuals import loss_weights

    E, F, V, JE, JF, JV = predictions_and_jacobian(mtp, lb, group)
    ce, cf, cv = (jnp.sqrt(w) for w in loss_weights(lb, cfg))
    r = jnp.concatenate([ce * (E - lb.energy), (cf[:, None] * (F - lb.forces)).reshape(-1),
                         (cv[:, None, None] * (V - lb.virial)).reshape(-1)])
    n = JE.shape[-1]
    Jm = jnp.concatenate([ce[:, None] * JE, (cf[:, None, None] * JF).reshape(-1, n), (cv[:, None, None, None] * JV).reshape(-1, n)])
    return r, Jm


def normal_equations(mtp: MTP, lb, cfg, group: int | None = None):
    """(J^T J (n, n), J^T r (n,), r^T r) of one packed batch (see :func:`weighted_jacobian`; ``group`` as in
    :func:`predictions_and_jacobian`); a batch stacked along a leading (device) axis is summed over it."""
    if lb.weight.ndim == 2:
        return jax.tree.map(lambda x: jnp.sum(x, axis=0), jax.vmap(lambda b: normal_equations(mtp, b, cfg, group))(lb))
    r, Jm = weighted_jacobian(mtp, lb, cfg, group)
    return Jm.T @ Jm, Jm.T @ r, r @ r


def penalty_residuals(mtp: MTP):
    """The radial orthonormality penalty as residuals: [|c_mu|^2 - 1 (K), c_mu . c_nu (mu < nu)], so that
    :func:`mtpjax.fit.loss.radial_penalty` is their sum of squares."""
    K = mtp.radial_coeffs.shape[2]
    C = jnp.moveaxis(mtp.radial_coeffs, 2, 0).reshape(K, -1)
    G = C @ C.T
    iu = np.triu_indices(K, 1)
    return jnp.concatenate([jnp.diag(G) - 1.0, G[iu]])
