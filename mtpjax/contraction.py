"""Evaluation of MLIP's moment contraction list ``alpha_index_times`` in dependency layers.

The list ``M_o += m * M_p * M_q`` is topologically ordered. We renumber the moments so that the basic
moments come first and each dependency layer's outputs form one contiguous block; a layer is then one
gather–multiply–sorted-segment-sum over rows of a (moments, atoms) array, with atoms on the fast axis.

The reverse pass is hand-written (``jax.custom_vjp``): the cotangent of block l is
``sum_t m_t * G[o_t] * M[other_t]`` over the terms t of later layers that read block l, i.e. the same
gather–multiply–segment-sum kernel with transposed index tables. It is itself made of differentiable jax
ops, so higher-order reverse derivatives (forces in a training loss) still work. ``use_custom_vjp=False``
gives plain autodiff, the reference the tests compare against.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class _Table:
    """One gather–multiply–segment-sum: out[seg[t]] += mult[t] * A[a[t]] * B[b[t]], seg sorted."""

    a: np.ndarray
    b: np.ndarray
    mult: np.ndarray
    seg: np.ndarray
    n_out: int


def _table(a, b, mult, seg, n_out) -> _Table:
    order = np.lexsort((b, a, seg))
    return _Table(
        a=np.asarray(a)[order].astype(np.int32),
        b=np.asarray(b)[order].astype(np.int32),
        mult=np.asarray(mult, dtype=np.float64)[order],
        seg=np.asarray(seg)[order].astype(np.int32),
        n_out=int(n_out),
    )


@dataclass(frozen=True, eq=False)
class ContractionPlan:
    """Static, hashable description of an MTP basis, ready for evaluation.

    Attributes (after renumbering, basic moments first):
    - ``basic_mu``, ``basic_abc``: radial index and monomial exponents of each basic moment;
    - ``bounds``: start of each block (block 0 = basic moments), ``bounds[-1]`` = number of moments;
    - ``forward``: one table per layer 1..L (inputs: all moments so far; outputs: that layer's block);
    - ``backward``: one table per block 0..L-1 (a: cotangent rows of later blocks, b: moment rows);
    - ``mapping``: renumbered moment index of each scalar basis function;
    - ``monomials`` (n_mono, 3): exponents (a, b, c) of the angular monomials, closed downwards (every
      monomial with one exponent lowered by one is present) and ordered by degree;
    - ``monomial_up`` (3, n_mono): index of the monomial with one exponent raised by one (itself where absent),
      ``monomial_up_exp`` (3, n_mono): that raised exponent (0 where absent);
    - ``radial_prefix``: for each radial function mu, how many monomials (a prefix of the degree-ordered table)
      its basic moments need;
    - ``basic_row``: row of each basic moment in the table of (mu, monomial) pairs, mu-blocks of
      ``radial_prefix[mu]`` rows one after the other;
    - ``source``: MLIP's original arrays (alpha_index_basic, alpha_index_times, alpha_moment_mapping,
      alpha_moments_count), for writing the potential back.
    """

    basic_mu: np.ndarray
    basic_abc: np.ndarray
    bounds: tuple
    forward: tuple
    backward: tuple
    mapping: np.ndarray
    n_radial: int
    monomials: np.ndarray
    monomial_up: np.ndarray
    monomial_up_exp: np.ndarray
    basic_row: np.ndarray
    radial_prefix: tuple
    source: tuple
    digest: str = field(default="")

    def __hash__(self):
        return hash(self.digest)

    def __eq__(self, other):
        return isinstance(other, ContractionPlan) and other.digest == self.digest

    @property
    def n_basic(self) -> int:
        return int(self.bounds[1])

    @property
    def n_moments(self) -> int:
        return int(self.bounds[-1])

    @property
    def n_scalars(self) -> int:
        return len(self.mapping)

    @property
    def n_products(self) -> int:
        return int(sum(len(t.a) for t in self.forward))

    @classmethod
    def from_arrays(cls, alpha_index_basic, alpha_index_times, alpha_moment_mapping, alpha_moments_count, radial_funcs_count):
        basic = np.asarray(alpha_index_basic, dtype=np.int64).reshape(-1, 4)
        times = np.asarray(alpha_index_times, dtype=np.int64).reshape(-1, 4)
        mapping = np.asarray(alpha_moment_mapping, dtype=np.int64).reshape(-1)
        nm, nb = int(alpha_moments_count), len(basic)
        digest = hashlib.sha1(
            b"|".join(np.ascontiguousarray(x).tobytes() for x in (basic, times, mapping))
            + f"|{nm}|{radial_funcs_count}".encode()
        ).hexdigest()
        layer = np.zeros(nm, dtype=np.int64)
        for p, q, _, o in times:
            if o < nb:
                raise ValueError(f"alpha_index_times writes into basic moment {o}")
            layer[o] = max(layer[o], layer[p] + 1, layer[q] + 1)
        written = np.zeros(nm, dtype=bool)
        written[times[:, 3]] = True
        if not written[nb:].all():
            raise ValueError(f"moment {nb + int(np.argmin(written[nb:]))} is neither basic nor produced by alpha_index_times")
        # check topological order: no moment is read before all its contributions are written
        last_write = np.full(nm, -1)
        last_write[times[:, 3]] = np.arange(len(times))
        first_read = np.full(nm, len(times) + 1)
        for k in range(len(times) - 1, -1, -1):
            first_read[times[k, 0]] = k
            first_read[times[k, 1]] = k
        if np.any(first_read < last_write):
            raise ValueError("alpha_index_times is not topologically ordered")
        n_layers = int(layer.max()) if nm else 0
        order = np.argsort(layer, kind="stable")
        new = np.empty(nm, dtype=np.int64)
        new[order] = np.arange(nm)
        bounds = tuple(int(np.searchsorted(layer[order], ell)) for ell in range(n_layers + 1)) + (nm,)
        p, q, m, o = new[times[:, 0]], new[times[:, 1]], times[:, 2], new[times[:, 3]]
        t_layer = layer[times[:, 3]]
        forward = tuple(
            _table(p[t_layer == ell], q[t_layer == ell], m[t_layer == ell], o[t_layer == ell] - bounds[ell], bounds[ell + 1] - bounds[ell])
            for ell in range(1, n_layers + 1)
        )
        backward = []
        for ell in range(n_layers):
            lo, hi = bounds[ell], bounds[ell + 1]
            rows = []
            for x, other in ((p, q), (q, p)):
                sel = (x >= lo) & (x < hi)
                # cotangent rows are indexed relative to bounds[ell + 1] (only later blocks are read)
                rows.append((o[sel] - hi, other[sel], m[sel], x[sel] - lo))
            a, b, mm, seg = (np.concatenate(z) for z in zip(*rows))
            backward.append(_table(a, b, mm, seg, hi - lo))
        perm_basic = order[:nb]
        basic_mu, basic_abc = basic[perm_basic, 0].copy(), basic[perm_basic, 1:].copy()
        monos, basic_row, prefix = _monomial_tables(basic_mu, basic_abc, int(radial_funcs_count))
        up, up_exp = _raise_tables(monos)
        return cls(
            basic_mu=basic_mu,
            basic_abc=basic_abc,
            monomials=monos,
            monomial_up=up,
            monomial_up_exp=up_exp,
            basic_row=basic_row,
            radial_prefix=prefix,
            source=(basic, times, mapping, nm),
            bounds=bounds,
            forward=forward,
            backward=tuple(backward),
            mapping=new[mapping],
            n_radial=int(radial_funcs_count),
            digest=digest,
        )


def _monomial_tables(basic_mu, basic_abc, n_radial):
    """Downward-closed monomial table, each basic moment's row, and the monomial prefix each radial
    function needs."""
    present = {tuple(int(x) for x in abc) for abc in basic_abc}
    stack = list(present)
    while stack:
        a = stack.pop()
        for k in range(3):
            if a[k] > 0:
                b = list(a)
                b[k] -= 1
                b = tuple(b)
                if b not in present:
                    present.add(b)
                    stack.append(b)
    monos = sorted(present, key=lambda a: (sum(a), tuple(-x for x in a)))
    index = {m: i for i, m in enumerate(monos)}
    degree = np.array([sum(m) for m in monos])
    prefix = []
    for mu in range(n_radial):
        abc = basic_abc[basic_mu == mu]
        prefix.append(int(np.searchsorted(degree, abc.sum(axis=1).max(), side="right")) if len(abc) else 0)
    offsets = np.concatenate([[0], np.cumsum(prefix)])
    monos = np.array(monos, dtype=np.int32).reshape(-1, 3)
    rows = np.array([offsets[mu] + index[tuple(int(x) for x in abc)] for mu, abc in zip(basic_mu, basic_abc)], dtype=np.int32)
    return monos, rows, tuple(prefix)


def _raise_tables(monos):
    index = {tuple(m): i for i, m in enumerate(monos.tolist())}
    up = np.tile(np.arange(len(monos), dtype=np.int32), (3, 1))
    up_exp = np.zeros((3, len(monos)))
    for i, m in enumerate(monos.tolist()):
        for k in range(3):
            b = list(m)
            b[k] += 1
            j = index.get(tuple(b))
            if j is not None:
                up[k, i], up_exp[k, i] = j, b[k]
    return up, up_exp


def _gather_mul_segsum(tab: _Table, A, B):
    """out[seg] += mult * A[a] * B[b]; A, B are (rows, atoms)."""
    v = A[tab.a] * B[tab.b] * jnp.asarray(tab.mult, A.dtype)[:, None]
    return jax.ops.segment_sum(v, tab.seg, num_segments=tab.n_out, indices_are_sorted=True)


def all_moments(plan: ContractionPlan, basic):
    """All moments (n_moments, atoms) from the basic moments (n_basic, atoms)."""
    M = basic
    for tab in plan.forward:
        M = jnp.concatenate([M, _gather_mul_segsum(tab, M, M)], axis=0)
    return M


def _scalars_plain(plan, basic):
    return all_moments(plan, basic)[plan.mapping]


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scalars_custom(plan, basic):
    return _scalars_plain(plan, basic)


def _scalars_fwd(plan, basic):
    M = all_moments(plan, basic)
    return M[plan.mapping], M


def moment_adjoints(plan: ContractionPlan, M, g):
    """The cotangents (n_moments, atoms) of all moments ``M`` (n_moments, atoms, from :func:`all_moments`) for the
    cotangent ``g`` (n_scalars, atoms) of the scalar basis functions: for g = xi, dV/dM_m of the site energy
    V = sum_alpha xi_alpha B_alpha through every product that reads M_m (the basic moments' rows are dV/dbasic)."""
    n_atoms = M.shape[1]
    # cotangents of all moments: start from those of the scalar basis functions
    inv = np.full(plan.n_moments, plan.n_scalars)
    inv[plan.mapping] = np.arange(plan.n_scalars)
    G = jnp.concatenate([g, jnp.zeros((1, n_atoms), g.dtype)], axis=0)[inv]
    for ell in range(len(plan.backward) - 1, -1, -1):
        lo, hi = plan.bounds[ell], plan.bounds[ell + 1]
        contrib = _gather_mul_segsum(plan.backward[ell], G[hi:], M)
        G = G.at[lo:hi].add(contrib)
    return G


def _scalars_bwd(plan, M, g):
    return (moment_adjoints(plan, M, g)[: plan.n_basic],)


_scalars_custom.defvjp(_scalars_fwd, _scalars_bwd)


def scalar_basis_vjp(plan: ContractionPlan, basic, g):
    """(B, dB/dbasic^T g): the scalar basis functions (n_scalars, atoms) and the cotangent (n_basic, atoms) of the
    basic moments for cotangent ``g`` (n_scalars, atoms) of B, both from plain jax ops (so forward-mode derivatives
    of the cotangent work, which a custom_vjp does not allow)."""
    M = all_moments(plan, basic)
    return M[plan.mapping], _scalars_bwd(plan, M, g)[0]


@dataclass(frozen=True, eq=False)
class _DerivativeTables:
    """Static tables of the sparse derivatives of the moments with respect to the basic moments.

    Moment m depends on the basic moments ``deps[m]`` only (a handful of the n_basic); its gradient is stored as
    ``len(deps[m])`` rows of a flat (n_nz, atoms) array, moment after moment (``offsets``), so each layer's rows
    form one block. ``layers[l]``: the product rule of forward layer l as a gather-multiply-segment-sum (a: row of
    an input's gradient, b: the other input (a moment), seg: output row within the layer's block); ``scalar_rows``
    (n_basic, n_scalars): row of dB_alpha/dbasic_k in [nonzeros; 0] (n_nz where it is zero); ``hessian``: entries
    (a, b: gradient rows of the two inputs of a product, seg: k n_basic + k' of the Hessian, with ``adjoint``: the
    product's output moment, and ``mult``)."""

    n_nz: int
    layers: tuple
    scalar_rows: np.ndarray
    hessian: _Table
    adjoint: np.ndarray


_DERIVATIVE_TABLES: dict = {}


def _derivative_tables(plan: ContractionPlan) -> _DerivativeTables:
    if plan.digest in _DERIVATIVE_TABLES:
        return _DERIVATIVE_TABLES[plan.digest]
    nb = plan.n_basic
    deps = [[k] for k in range(nb)]
    pos = [{k: k} for k in range(nb)]  # moment -> {basic k: row}
    n_nz = nb
    layers, h_a, h_b, h_o, h_m, h_seg = [], [], [], [], [], []
    for ell, tab in enumerate(plan.forward, start=1):
        base = plan.bounds[ell]
        out_deps = [set() for _ in range(tab.n_out)]
        for a, b, o in zip(tab.a, tab.b, tab.seg):
            out_deps[o].update(deps[a], deps[b])
        start = n_nz
        for o in range(tab.n_out):
            ds = sorted(out_deps[o])
            deps.append(ds)
            pos.append({k: n_nz + i for i, k in enumerate(ds)})
            n_nz += len(ds)
        src, other, mult, seg = [], [], [], []
        for a, b, m, o in zip(tab.a, tab.b, tab.mult, tab.seg):
            out = base + o
            for x, y in ((a, b), (b, a)):  # d(m M_a M_b) = m M_b dM_a + m M_a dM_b
                for k in deps[x]:
                    src.append(pos[x][k]); other.append(y); mult.append(m); seg.append(pos[out][k] - start)
            for ka in deps[a]:  # the product's Hessian: m (dM_a dM_b^T + dM_b dM_a^T)
                for kb in deps[b]:
                    for k1, k2 in ((ka, kb), (kb, ka)):
                        h_a.append(pos[a][ka]); h_b.append(pos[b][kb]); h_o.append(out); h_m.append(m); h_seg.append(k1 * nb + k2)
        layers.append(_table(src, other, mult, seg, n_nz - start))
    rows = np.full((nb, plan.n_scalars), n_nz, np.int32)
    for alpha, m in enumerate(plan.mapping):
        for k in deps[m]:
            rows[k, alpha] = pos[m][k]
    order = np.lexsort((h_b, h_a, h_seg))
    hess = _Table(a=np.asarray(h_a, np.int32)[order], b=np.asarray(h_b, np.int32)[order], mult=np.asarray(h_m, np.float64)[order],
                  seg=np.asarray(h_seg, np.int32)[order], n_out=nb * nb)
    out = _DerivativeTables(n_nz=n_nz, layers=tuple(layers), scalar_rows=rows, hessian=hess,
                            adjoint=np.asarray(h_o, np.int32)[order])
    _DERIVATIVE_TABLES[plan.digest] = out
    return out


def basis_derivatives(plan: ContractionPlan, basic, xi):
    """The scalar basis and its first and second derivatives with respect to the basic moments, propagated through
    their static sparsity (each moment depends on a few basic moments; dense forward mode would carry all n_basic
    directions through every product):

    returns B (n_scalars, atoms); Gt (n_basic, n_scalars, atoms), Gt[k, alpha] = dB_alpha/dbasic_k; g (n_basic,
    atoms) = dV/dbasic and K (n_basic, n_basic, atoms) = d^2 V/dbasic^2 of V = sum_alpha xi_alpha B_alpha per atom
    (``xi`` (n_scalars, atoms))."""
    tabs = _derivative_tables(plan)
    n_b, n_atoms = basic.shape
    M = all_moments(plan, basic)
    J = jnp.ones((n_b, n_atoms), basic.dtype)
    for tab in tabs.layers:
        J = jnp.concatenate([J, _gather_mul_segsum(tab, J, M)], axis=0)
    Jz = jnp.concatenate([J, jnp.zeros((1, n_atoms), J.dtype)], axis=0)
    Gt = Jz[tabs.scalar_rows]
    adj = moment_adjoints(plan, M, xi)
    h = tabs.hessian
    v = J[h.a] * J[h.b] * adj[tabs.adjoint] * jnp.asarray(h.mult, J.dtype)[:, None]
    K = jax.ops.segment_sum(v, h.seg, num_segments=h.n_out, indices_are_sorted=True).reshape(n_b, n_b, n_atoms)
    return M[plan.mapping], Gt, adj[:n_b], K


def scalar_basis(plan: ContractionPlan, basic, use_custom_vjp: bool = True):
    """Scalar basis functions B_1..B_n (n_scalars, atoms) from basic moments (n_basic, atoms)."""
    if use_custom_vjp:
        return _scalars_custom(plan, basic)
    return _scalars_plain(plan, basic)


# ----------------------------------------------------------------------------------------------------
# angular monomials u_x^a u_y^b u_z^c


def _powers(x, n):
    """[1, x, ..., x^n] stacked on a new leading axis."""
    out = [jnp.ones_like(x)]
    for _ in range(n):
        out.append(out[-1] * x)
    return jnp.stack(out)


def _monomials_plain(plan: ContractionPlan, u):
    nu = int(plan.monomials.max()) if plan.monomials.size else 0
    px, py, pz = (_powers(u[k], nu) for k in range(3))
    e = plan.monomials
    return px[e[:, 0]] * py[e[:, 1]] * pz[e[:, 2]]


def monomials(plan: ContractionPlan, u):
    """Angular monomials (n_mono, ...) of unit vectors u (3, ...), in the order of ``plan.monomials``."""
    return _monomials_plain(plan, u)


# ----------------------------------------------------------------------------------------------------
# basic moments M_b = sum_j f_mu(b)(r_ij) * monomial_b(u_ij)


def _basic_plain(plan: ContractionPlan, f, u, mono=None):
    mono = _monomials_plain(plan, u) if mono is None else mono
    # radial function mu meets only the first radial_prefix[mu] monomials
    full = jnp.concatenate([jnp.einsum("in,min->mi", f[k], mono[:n]) for k, n in enumerate(plan.radial_prefix) if n])
    return full[plan.basic_row]


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _basic_custom(plan, f, u):
    return _basic_plain(plan, f, u)


def _basic_fwd(plan, f, u):
    # keep u (3 numbers per pair), not the monomials (n_mono per pair): the backward recomputes them
    return _basic_plain(plan, f, u), (f, u)


def _basic_bwd(plan, res, g):
    # With G[k, m] the cotangent of the (radial k, monomial m) moment, d/du_a of sum_km G f_k m(u) is
    # sum_k f_k sum_m' H_a[k, m'] m'(u), H_a[k, m'] = e_a(up_a m') G[k, up_a m']: per radial function, one
    # batched matmul gives its radial cotangent and its share of all three angular cotangents.
    f, u = res
    mono = _monomials_plain(plan, u)
    c = g.shape[-1]
    n_rows = int(sum(plan.radial_prefix))
    inv = np.full(n_rows, len(plan.basic_row))
    inv[plan.basic_row] = np.arange(len(plan.basic_row))
    G_all = jnp.concatenate([g, jnp.zeros((1, c), g.dtype)])[inv]
    g_f, g_u, start = [], 0.0, 0
    for k, n in enumerate(plan.radial_prefix):
        if n == 0:
            g_f.append(jnp.zeros_like(f[k]))
            continue
        G = G_all[start : start + n]
        start += n
        up = plan.monomial_up[:, :n]
        inside = up < n
        H = [G[np.where(inside[a], up[a], 0)] * jnp.asarray(np.where(inside[a], plan.monomial_up_exp[a, :n], 0.0), g.dtype)[:, None] for a in range(3)]
        T = jnp.einsum("jmi,min->jin", jnp.stack([G] + H), mono[:n])  # (4, c, n_nb)
        g_f.append(T[0])
        g_u = g_u + f[k] * T[1:]
    return jnp.stack(g_f), g_u


_basic_custom.defvjp(_basic_fwd, _basic_bwd)


def basic_moments(plan: ContractionPlan, f, u, use_custom_vjp: bool = True):
    """Basic moments (n_basic, c) from radial values f (K, c, n_nb) and unit vectors u (3, c, n_nb)."""
    if use_custom_vjp:
        return _basic_custom(plan, f, u)
    return _basic_plain(plan, f, u)
