"""The MTP basis, built from its definition; reproduces MLIP's templates 02..28 exactly.

Moment tensors ``M_{mu,nu} = sum_j f_mu(r_ij) u_ij^{(x)nu}`` (level ``2 + 4 mu + nu``) are stored as their
independent monomial components ``{mu, a, b, c}`` (``a+b+c = nu``). A scalar basis function is a full
contraction of a product of moment tensors. It is a multigraph without self-loops: one node ``(mu, nu)`` per
factor, with degree ``nu``; an edge is one contracted index pair. The level of the function is the sum of its
nodes' levels.

The rule that MLIP's templates follow, found by decoding them and checked to reproduce all twelve (06..28)
array for array:

1. Functions: every multigraph with at most **4 nodes** and level ``<= L``, up to isomorphism; for
   ``L >= 26`` each node also has ``nu <= 10`` and ``mu <= 5``. Basic moments are the nodes that occur;
   ``radial_funcs_count`` is ``max(mu) + 1``.
2. Evaluation tree: a subgraph is split in two by the split with the fewest edges between the halves. A split
   is valid only if one half is a scalar or an edge joins the halves, so no outer product of two non-scalars
   is formed. On ties, peeling off a single node beats a 2+2 split, and among peels the lowest enumeration key
   (item 4) wins. The parts are split the same way. Every subtree is one stored tensor, and equal subgraphs
   are shared.
3. A stored tensor's free indices form one symmetric block per node, and the blocks are ordered by node
   label, with the peeled node first on ties. Its components are the block-wise sorted index tuples in
   lexicographic order. For a product of two equal basic tensors the two blocks are interchangeable and only
   one component of each swapped pair is stored; later contractions that treat both blocks alike keep this
   symmetry. The ``times`` entries of a component ``M_o`` sum over the contracted indices. The pairs are
   keyed ``(min, max)``, with repeated pairs merged into a multiplicity and the entries sorted.
4. Order: tensors sort by (tree depth, node count, sorted mu's, enumeration key). The key of a subgraph
   is the minimum over all ways of writing it as ``node v`` joined to the rest, with ``mu_v`` no larger
   than any other ``mu``, of ``(label_v, edges from v to the rest's nodes in the rest's key order, key of
   the rest)``. ``alpha_moment_mapping`` lists the scalars by (node count, sorted mu's, key).

A contraction has an even ``sum(nu)``, so every level is even and an odd level gives the basis of the level
below. From level 16 on, a few functions are linear combinations of others, by identities of 3D tensors such
as Cayley-Hamilton (``tr A^4`` from lower traces). The rank is 1 short of the count at level 16 and 148
short at level 28. MLIP keeps these functions, and so does this module.

``evaluate_basis_numpy`` is a plain numpy reference evaluator. It computes one environment, or a batch of
them, from the literal definition.
"""
from __future__ import annotations

import itertools
import operator
import re
from dataclasses import dataclass
from functools import lru_cache
from math import factorial
from pathlib import Path

import numpy as np

from .errors import FormatError

MIN_LEVEL, MAX_LEVEL = 2, 28
_CAP_LEVEL, _CAP_NU, _CAP_MU = 26, 10, 5  # MLIP's extra caps for levels >= 26
_MAX_NODES = 4

__all__ = ["MTPBasis", "generate_basis", "basis_graphs", "basis_from_arrays", "evaluate_basis_numpy",
           "moment_levels", "node_level", "MIN_LEVEL", "MAX_LEVEL"]


# --------------------------------------------------------------------------------------------------------
# the result


@dataclass(frozen=True, eq=False)
class MTPBasis:
    """An MTP basis in MLIP's index-array form (arrays are read-only int64).

    ``alpha_index_basic`` (nb, 4) ``{mu, a, b, c}``; ``alpha_index_times`` (nt, 4) ``{p, q, m, o}`` meaning
    ``M_o += m * M_p * M_q`` in order; ``alpha_moment_mapping`` (ns,) moment index of each scalar basis
    function; ``level`` is the generating level (for a basis read from arrays: its highest scalar level).
    """

    level: int
    radial_funcs_count: int
    alpha_moments_count: int
    alpha_index_basic: np.ndarray
    alpha_index_times: np.ndarray
    alpha_moment_mapping: np.ndarray

    def __post_init__(self):
        for name, shape in (("alpha_index_basic", (-1, 4)), ("alpha_index_times", (-1, 4)),
                            ("alpha_moment_mapping", (-1,))):
            a = np.array(getattr(self, name), dtype=np.int64).reshape(shape)
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        for name in ("level", "radial_funcs_count", "alpha_moments_count"):
            object.__setattr__(self, name, int(getattr(self, name)))

    @property
    def alpha_index_basic_count(self) -> int:
        return len(self.alpha_index_basic)

    @property
    def alpha_index_times_count(self) -> int:
        return len(self.alpha_index_times)

    @property
    def alpha_scalar_moments(self) -> int:
        return len(self.alpha_moment_mapping)

    def __repr__(self) -> str:
        return (f"MTPBasis(level={self.level}, scalars={self.alpha_scalar_moments}, "
                f"basic={self.alpha_index_basic_count}, times={self.alpha_index_times_count}, "
                f"moments={self.alpha_moments_count}, radial_funcs={self.radial_funcs_count})")


def generate_basis(level: int) -> MTPBasis:
    """MTP basis of ``level`` (2..28), equal to MLIP's template arrays for the template levels."""
    if isinstance(level, bool):
        raise ValueError(f"MTP level must be an integer in {MIN_LEVEL}..{MAX_LEVEL}, got {level!r}")
    try:
        lv = operator.index(level)
    except TypeError:
        raise ValueError(f"MTP level must be an integer in {MIN_LEVEL}..{MAX_LEVEL}, got {level!r}") from None
    if not MIN_LEVEL <= lv <= MAX_LEVEL:
        raise ValueError(f"MTP level must be in {MIN_LEVEL}..{MAX_LEVEL} (MLIP's range), got {lv}")
    return _generate(lv)


# --------------------------------------------------------------------------------------------------------
# graphs (scalar contractions) and their canonical form

_PAIRS = {n: tuple(itertools.combinations(range(n), 2)) for n in range(1, _MAX_NODES + 1)}


def node_level(mu: int, nu: int) -> int:
    """Level of the moment tensor M_{mu,nu}."""
    return 2 + 4 * mu + nu


def _labels(level: int):
    caps = level >= _CAP_LEVEL
    return [(mu, nu) for mu in range(level) for nu in range(level)
            if node_level(mu, nu) <= level and not (caps and (nu > _CAP_NU or mu > _CAP_MU))]


def _canon(labs, E):
    """Canonical form of a labelled multigraph. labs: node labels; E: {(i, j): mult} with i < j.

    Returns ``((labels sorted, edge tuple over _PAIRS), perm)`` with ``perm[new] = old``; the edge tuple is
    the smallest over relabellings that keep the labels sorted.
    """
    n = len(labs)
    order = sorted(range(n), key=labs.__getitem__)
    clabs = tuple(labs[i] for i in order)
    groups, i = [], 0
    while i < n:
        j = i
        while j < n and clabs[j] == clabs[i]:
            j += 1
        groups.append(order[i:j])
        i = j
    best = bperm = None
    for combo in itertools.product(*(itertools.permutations(g) for g in groups)):
        perm = [x for g in combo for x in g]
        t = tuple(E.get((perm[a], perm[b]) if perm[a] < perm[b] else (perm[b], perm[a]), 0) for a, b in _PAIRS[n])
        if best is None or t < best:
            best, bperm = t, tuple(perm)
    return (clabs, best), bperm


def _edges(ckey):
    labs, et = ckey
    return {p: v for p, v in zip(_PAIRS[len(labs)], et) if v}


def _sub(labs, E, S):
    """Canonical key of the subgraph induced on the node tuple S, and perm (canonical position -> node of S)."""
    idx = {s: i for i, s in enumerate(S)}
    El = {}
    for (a, b), v in E.items():
        if a in idx and b in idx:
            i, j = idx[a], idx[b]
            El[(i, j) if i < j else (j, i)] = v
    ckey, perm = _canon(tuple(labs[s] for s in S), El)
    return ckey, tuple(S[p] for p in perm)


def _scalar_graphs(level: int):
    """All scalar contraction graphs (canonical keys) of level <= ``level`` with at most 4 nodes."""
    labs = _labels(level)
    out, seen = [], set()

    def add(combo, E):
        key = _canon(combo, E)[0]
        if key not in seen:
            seen.add(key)
            out.append(key)

    levs = [node_level(*x) for x in labs]
    sufmin = [min(levs[i:]) for i in range(len(levs))]

    def combos(n, start, budget):
        """Non-decreasing label tuples of length n, from index start, with total level <= budget."""
        if n == 0:
            yield ()
            return
        for i in range(start, len(labs)):
            if levs[i] + (n - 1) * sufmin[i] <= budget:
                for rest in combos(n - 1, i, budget - levs[i]):
                    yield (labs[i],) + rest

    for n in range(1, _MAX_NODES + 1):
        for combo in combos(n, 0, level):
            if sum(x[1] for x in combo) % 2:
                continue
            d = [x[1] for x in combo]
            if n == 1:
                if d[0] == 0:
                    add(combo, {})
            elif n == 2:
                if d[0] == d[1]:
                    add(combo, {(0, 1): d[0]} if d[0] else {})
            elif n == 3:  # edge multiplicities are determined by the degrees
                e01, e02, e12 = (d[0] + d[1] - d[2]) // 2, (d[0] + d[2] - d[1]) // 2, (d[1] + d[2] - d[0]) // 2
                if min(e01, e02, e12) >= 0:
                    add(combo, {k: v for k, v in (((0, 1), e01), ((0, 2), e02), ((1, 2), e12)) if v})
            else:
                for e01 in range(min(d[0], d[1]) + 1):
                    for e02 in range(min(d[0] - e01, d[2]) + 1):
                        e03 = d[0] - e01 - e02
                        if e03 > d[3]:
                            continue
                        for e12 in range(min(d[1] - e01, d[2] - e02) + 1):
                            e13, e23 = d[1] - e01 - e12, d[2] - e02 - e12
                            if e13 < 0 or e23 < 0 or e03 + e13 + e23 != d[3]:
                                continue
                            E = {k: v for k, v in (((0, 1), e01), ((0, 2), e02), ((0, 3), e03), ((1, 2), e12),
                                                   ((1, 3), e13), ((2, 3), e23)) if v}
                            add(combo, E)
    return out


# --------------------------------------------------------------------------------------------------------
# enumeration keys (MLIP's order) and the evaluation tree


def _reps(labs, E, idx):
    """All (key, node order) for writing the subgraph on ``idx`` as node v joined to the rest, mu_v minimal."""
    if len(idx) == 1:
        return [((labs[idx[0]],), idx)]
    out = []
    for v in idx:
        rest = tuple(i for i in idx if i != v)
        if any(labs[j][0] < labs[v][0] for j in rest):
            continue
        for sk, so in _reps(labs, E, rest):
            c = tuple(E.get((v, j) if v < j else (j, v), 0) for j in so)
            out.append(((labs[v], c, sk), (v,) + so))
    return out


@lru_cache(maxsize=None)
def _order_key(ckey):
    """(node count, sorted mu's, enumeration key): MLIP's order of tensors within a depth, and of scalars."""
    labs = ckey[0]
    n = len(labs)
    key = min(k for k, _ in _reps(labs, _edges(ckey), tuple(range(n))))
    return (n, tuple(sorted(l[0] for l in labs)), key)


def _peel_key(labs, E, v, S):
    """Enumeration key of the subgraph S written as node v (any mu) joined to the rest (tie-break of peels)."""
    rest = tuple(i for i in S if i != v)
    best = None
    for sk, so in _reps(labs, E, rest):
        k = (labs[v], tuple(E.get((v, j) if v < j else (j, v), 0) for j in so), sk)
        if best is None or k < best:
            best = k
    return best


def _split(labs, E, S):
    """The evaluation split of the subgraph S (>= 2 nodes): (P nodes, Q nodes), P the peeled node if any."""
    def rank(A):
        return sum(labs[a][1] for a in A) - 2 * sum(v for (a, b), v in E.items() if a in A and b in A)

    first, rest = S[0], S[1:]
    best = None
    for r in range(len(rest)):
        for comb in itertools.combinations(rest, r):
            A = (first,) + comb
            B = tuple(x for x in S if x not in A)
            cut = sum(v for (a, b), v in E.items() if (a in A) != (b in A) and a in S and b in S)
            if cut == 0 and rank(A) > 0 and rank(B) > 0:
                continue  # would be an outer product of two non-scalars
            if len(A) == 1 or len(B) == 1:
                if len(A) == 1 and len(B) == 1:
                    v = min(A[0], B[0], key=labs.__getitem__)
                else:
                    v = A[0] if len(A) == 1 else B[0]
                key = (cut, 0, _peel_key(labs, E, v, S))
                P, Q = (v,), tuple(x for x in S if x != v)
            else:
                ka, kb = _order_key(_sub(labs, E, A)[0]), _order_key(_sub(labs, E, B)[0])
                key = (cut, 1, tuple(sorted((ka, kb))))
                P, Q = (A, B) if ka <= kb else (B, A)
            if best is None or key < best[0]:
                best = (key, P, Q)
    return best[1], best[2]


# --------------------------------------------------------------------------------------------------------
# stored tensors


def _monos(s):
    """Count vectors (n_x, n_y, n_z) of the degree-s monomials, in MLIP's order (xx.., xx..y, xx..z, ...)."""
    return [(a, b, s - a - b) for a in range(s, -1, -1) for b in range(s - a, -1, -1)]


_MULTINOM = {}


def _multinom(t):
    w = _MULTINOM.get(t)
    if w is None:
        w = _MULTINOM[t] = factorial(sum(t)) // (factorial(t[0]) * factorial(t[1]) * factorial(t[2]))
    return w


class _Tensor:
    """A stored tensor: one subgraph with free legs (canonical node numbering), its tree and components.

    ``blocks``: [(node, free size)] in index order; ``swap``: pair of interchangeable block nodes or None;
    ``comps``: per-block count vectors of each component; ``cidx``: any admissible key -> component number.
    For a non-basic tensor, ``first``/``second`` are the two child tensors in global moment order and
    ``ent`` (n_entries, 4) holds local (first comp, second comp, multiplicity, output comp).
    """

    __slots__ = ("ckey", "n", "blocks", "swap", "depth", "comps", "cidx", "first", "second", "ent", "gkey")


def _make_components(T, labs):
    sizes = [s for _, s in T.blocks]
    pos = None
    if T.swap is not None:
        where = {nd: i for i, (nd, _) in enumerate(T.blocks)}
        pos = (where[T.swap[0]], where[T.swap[1]])
    comps, cidx = [], {}
    for combo in itertools.product(*(_monos(s) for s in sizes)):
        if pos is not None:
            i, j = pos
            # keep the lexicographically smaller sorted-index tuple first, i.e. the larger count vector
            if (-combo[i][0], -combo[i][1]) > (-combo[j][0], -combo[j][1]):
                continue
            sw = list(combo)
            sw[i], sw[j] = sw[j], sw[i]
            cidx[tuple(sw)] = len(comps)
        cidx[combo] = len(comps)
        comps.append(combo)
    T.comps, T.cidx = comps, cidx


@lru_cache(maxsize=None)
def _tensor(ckey) -> _Tensor:
    labs = ckey[0]
    n = len(labs)
    E = _edges(ckey)
    T = _Tensor()
    T.ckey, T.n, T.swap = ckey, n, None
    if n == 1:
        T.blocks = [(0, labs[0][1])] if labs[0][1] else []
        T.depth, T.first, T.second, T.ent = 0, None, None, None
        T.gkey = (0, labs[0])
        _make_components(T, labs)
        return T

    Pn, Qn = _split(labs, E, tuple(range(n)))
    pkey, pperm = _sub(labs, E, Pn)
    qkey, qperm = _sub(labs, E, Qn)
    P, Q = _tensor(pkey), _tensor(qkey)
    pb = [(pperm[a], s) for a, s in P.blocks]
    qb = [(qperm[b], s) for b, s in Q.blocks]
    contr = [((a, b), E[(a, b) if a < b else (b, a)]) for a, _ in pb for b, _ in qb
             if E.get((a, b) if a < b else (b, a), 0)]
    used = {}
    for (a, b), m in contr:
        used[a] = used.get(a, 0) + m
        used[b] = used.get(b, 0) + m
    free = [(x, s - used.get(x, 0)) for x, s in pb + qb if s - used.get(x, 0) > 0]
    T.blocks = sorted(free, key=lambda x: labs[x[0]])  # stable: the peeled node's block first on ties
    kept = {x for x, _ in T.blocks}
    if P.n == 1 and Q.n == 1 and labs[pperm[0]] == labs[qperm[0]] and len(T.blocks) == 2:
        T.swap = (pperm[0], qperm[0])
    else:
        for child, perm in ((Q, qperm), (P, pperm)):
            if child.swap is not None:
                a, b = perm[child.swap[0]], perm[child.swap[1]]
                if a in kept and b in kept and used.get(a, 0) == used.get(b, 0):
                    T.swap = (a, b)
                break
    T.depth = 1 + max(P.depth, Q.depth)
    T.gkey = (1, T.depth, _order_key(ckey))
    _make_components(T, labs)

    # times entries, in local component numbers of the two children
    p_first = P.gkey <= Q.gkey
    same = P is Q
    T.first, T.second = (P, Q) if p_first else (Q, P)
    terms = [([], 1)]
    for _, m in contr:
        terms = [(ts + [t], w * _multinom(t)) for ts, w in terms for t in _monos(m)]
    pnodes = [(pperm[a], a) for a, _ in P.blocks]
    qnodes = [(qperm[b], b) for b, _ in Q.blocks]
    rows = []
    zero = (0, 0, 0)
    for c, comp in enumerate(T.comps):
        fr = {nd: comp[i] for i, (nd, _) in enumerate(T.blocks)}
        acc = {}
        for ts, w in terms:
            cnt = {}
            for ((a, b), _), t in zip(contr, ts):
                for x in (a, b):
                    u = cnt.get(x, zero)
                    cnt[x] = (u[0] + t[0], u[1] + t[1], u[2] + t[2])

            def vec(x):
                f, u = fr.get(x, zero), cnt.get(x, zero)
                return (f[0] + u[0], f[1] + u[1], f[2] + u[2])

            ip = P.cidx[tuple(vec(x) for x, _ in pnodes)]
            iq = Q.cidx[tuple(vec(x) for x, _ in qnodes)]
            if same:
                k = (ip, iq) if ip <= iq else (iq, ip)
            else:
                k = (ip, iq) if p_first else (iq, ip)
            acc[k] = acc.get(k, 0) + w
        for (i, j), w in sorted(acc.items()):
            rows.append((i, j, w, c))
    T.ent = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return T


@lru_cache(maxsize=None)
def _generate(level: int) -> MTPBasis:
    scalars = [_tensor(g) for g in _scalar_graphs(level)]
    tensors = {}
    stack = list(scalars)
    while stack:
        T = stack.pop()
        if T.ckey in tensors:
            continue
        tensors[T.ckey] = T
        if T.first is not None:
            stack += [T.first, T.second]
    ordered = sorted(tensors.values(), key=lambda T: T.gkey)  # basic tensors first, by (mu, nu)
    offset, basic, g = {}, [], 0
    for T in ordered:
        offset[T.ckey] = g
        if T.n == 1:
            mu = T.ckey[0][0][0]
            basic += [(mu,) + (comp[0] if comp else (0, 0, 0)) for comp in T.comps]
        g += len(T.comps)
    chunks = []
    for T in ordered:
        if T.n > 1 and len(T.ent):
            e = T.ent.copy()
            e[:, 0] += offset[T.first.ckey]
            e[:, 1] += offset[T.second.ckey]
            e[:, 3] += offset[T.ckey]
            chunks.append(e)
    times = np.concatenate(chunks) if chunks else np.zeros((0, 4), dtype=np.int64)
    mapping = [offset[T.ckey] for T in sorted(scalars, key=lambda T: _order_key(T.ckey))]
    K = 1 + max(T.ckey[0][0][0] for T in ordered if T.n == 1)
    return MTPBasis(level=level, radial_funcs_count=K, alpha_moments_count=g, alpha_index_basic=basic,
                    alpha_index_times=times, alpha_moment_mapping=mapping)


def basis_graphs(level: int):
    """Contraction graph of each scalar basis function of ``generate_basis(level)``, in mapping order.

    Each is ``(labels, edges)``: ``labels[i] = (mu, nu)`` of factor i, ``edges = {(i, j): multiplicity}``
    (i < j): the number of indices contracted between factors i and j.
    """
    generate_basis(level)  # validates the level
    graphs = sorted(_scalar_graphs(level), key=_order_key)
    return [(labs, _edges((labs, et))) for labs, et in graphs]


# --------------------------------------------------------------------------------------------------------
# bases given as arrays (e.g. read from a template), levels, reference evaluation


def moment_levels(alpha_index_basic, alpha_index_times, alpha_moments_count=None) -> np.ndarray:
    """Level of every moment (basic: 2+4mu+nu; product: sum of the factors' levels). -1 where never set.

    Raises ValueError when an output's products disagree in level (not a contraction basis).
    """
    basic = np.asarray(alpha_index_basic, dtype=np.int64).reshape(-1, 4)
    times = np.asarray(alpha_index_times, dtype=np.int64).reshape(-1, 4)
    n = alpha_moments_count
    if n is None:
        n = max(len(basic), int(times[:, [0, 1, 3]].max()) + 1 if len(times) else 0)
    lev = np.full(int(n), -1, dtype=np.int64)
    lev[: len(basic)] = 2 + 4 * basic[:, 0] + basic[:, 1:].sum(axis=1)
    for p, q, _, o in times.tolist():
        v = lev[p] + lev[q]
        if lev[o] == -1:
            lev[o] = v
        elif lev[o] != v:
            raise ValueError(f"moment {o} mixes levels {lev[o]} and {v}")
    return lev


def basis_from_arrays(alpha_index_basic, alpha_index_times, alpha_moment_mapping, alpha_moments_count=None,
                      radial_funcs_count=None, level=None) -> MTPBasis:
    """An MTPBasis from MLIP index arrays (checked for shape, index range and topological order)."""
    basic = np.asarray(alpha_index_basic, dtype=np.int64).reshape(-1, 4)
    times = np.asarray(alpha_index_times, dtype=np.int64).reshape(-1, 4)
    mapping = np.asarray(alpha_moment_mapping, dtype=np.int64).reshape(-1)
    nb = len(basic)
    if nb == 0:
        raise ValueError("alpha_index_basic is empty")
    if (basic < 0).any():
        raise ValueError("alpha_index_basic has negative entries")
    top = max(nb, int(times[:, [0, 1, 3]].max()) + 1 if len(times) else 0,
              int(mapping.max()) + 1 if len(mapping) else 0)
    n = top if alpha_moments_count is None else int(alpha_moments_count)
    if n < top:
        raise ValueError(f"alpha_moments_count={n} but indices reach {top - 1}")
    if len(times) and (times[:, [0, 1, 3]] < 0).any():
        raise ValueError("alpha_index_times has negative indices")
    if len(times) and (times[:, 3] < nb).any():
        raise ValueError("alpha_index_times writes into a basic moment")
    done = np.zeros(n, dtype=bool)
    done[:nb] = True
    last = {}
    for t, o in enumerate(times[:, 3].tolist()):
        last[o] = t
    for t, (p, q, _, o) in enumerate(times.tolist()):
        for x in (p, q):
            if not done[x] and last.get(x, -1) >= t:
                raise ValueError(f"alpha_index_times row {t} reads moment {x} before it is complete")
        if last[o] == t:
            done[o] = True
    if len(mapping) and (mapping < 0).any():
        raise ValueError("alpha_moment_mapping has negative indices")
    K = int(basic[:, 0].max()) + 1
    if radial_funcs_count is not None:
        if int(radial_funcs_count) < K:
            raise ValueError(f"radial_funcs_count={radial_funcs_count} but alpha_index_basic uses mu={K - 1}")
        K = int(radial_funcs_count)
    if level is None:
        lev = moment_levels(basic, times, n)
        level = int(lev[mapping].max()) if len(mapping) else 0
    return MTPBasis(level=level, radial_funcs_count=K, alpha_moments_count=n, alpha_index_basic=basic,
                    alpha_index_times=times, alpha_moment_mapping=mapping)


def evaluate_basis_numpy(basis: MTPBasis, f, u) -> np.ndarray:
    """Scalar basis values ``[M[mapping[k]] for k]`` (float64) of one environment, by the literal definition.

    ``f`` (n_neighbours, K): radial function values ``f_mu(r_ij)``; ``u`` (n_neighbours, 3): unit vectors.
    Leading batch axes are allowed (``f`` (..., n, K), ``u`` (..., n, 3) -> (..., n_scalars)).
    Basic moments are summed over neighbours; then ``M_o += m * M_p * M_q`` row by row.
    """
    f = np.asarray(f, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    if u.shape[-1] != 3 or f.shape[:-1] != u.shape[:-1]:
        raise ValueError(f"need f (..., n, K) and u (..., n, 3) with the same leading shape, "
                         f"got {f.shape} and {u.shape}")
    basic = basis.alpha_index_basic
    if f.shape[-1] <= int(basic[:, 0].max()):
        raise ValueError(f"f has {f.shape[-1]} radial functions, the basis uses mu up to {int(basic[:, 0].max())}")
    batch = f.shape[:-2]
    M = np.zeros((basis.alpha_moments_count,) + batch, dtype=np.float64)
    pmax = int(basic[:, 1:].max())
    pw = [np.ones(u.shape)] + [u ** k for k in range(1, pmax + 1)]  # pw[k][..., n, axis] = u_axis**k
    for i, (mu, a, b, c) in enumerate(basic.tolist()):
        M[i] = np.sum(f[..., mu] * pw[a][..., 0] * pw[b][..., 1] * pw[c][..., 2], axis=-1)
    for p, q, m, o in basis.alpha_index_times.tolist():
        M[o] += m * M[p] * M[q]
    return np.moveaxis(M[basis.alpha_moment_mapping], 0, -1)


_KEY_RE = re.compile(r"^\s*([A-Za-z_]+)\s*=\s*(.*?)\s*$")


def _read_template_arrays(path) -> dict:
    """Index arrays and counts of an MLIP .mtp/.almtp text (private; keys fit ``basis_from_arrays(**d)``)."""
    path = Path(path)
    raw = path.read_bytes().split(b"#MVS", 1)[0]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"not a text MTP file ({e})", path) from None
    vals, lines = {}, text.splitlines()
    i = 0
    while i < len(lines):
        m = _KEY_RE.match(lines[i])
        lineno = i + 1
        i += 1
        if not m:
            continue
        key, val = m.group(1), m.group(2)
        if val.startswith("{"):
            while val.count("{") > val.count("}") and i < len(lines):
                val += lines[i]
                i += 1
            if val.count("{") != val.count("}"):
                raise FormatError(f"unbalanced braces in {key}", path, lineno)
        vals[key] = (val, lineno)

    def ints(key, width):
        if key not in vals:
            raise FormatError(f"missing {key}", path)
        val, ln = vals[key]
        if not re.fullmatch(r"[\s{},0-9-]*", val):
            raise FormatError(f"{key} is not a list of integers", path, ln)
        a = np.array([int(x) for x in re.findall(r"-?\d+", val)], dtype=np.int64)
        if width > 1:
            if len(a) % width:
                raise FormatError(f"{key} has {len(a)} numbers, not a multiple of {width}", path, ln)
            a = a.reshape(-1, width)
        return a

    def count(key):
        if key not in vals:
            return None
        val, ln = vals[key]
        try:
            return int(val)
        except ValueError:
            raise FormatError(f"{key} = {val!r} is not an integer", path, ln) from None

    basic = ints("alpha_index_basic", 4)
    times = ints("alpha_index_times", 4) if "alpha_index_times" in vals else np.zeros((0, 4), np.int64)
    mapping = ints("alpha_moment_mapping", 1)
    for key, arr in (("alpha_index_basic_count", basic), ("alpha_index_times_count", times),
                     ("alpha_scalar_moments", mapping)):
        c = count(key)
        if c is not None and c != len(arr):
            raise FormatError(f"{key} = {c} but the array has {len(arr)} entries", path, vals[key][1])
    return dict(alpha_index_basic=basic, alpha_index_times=times, alpha_moment_mapping=mapping,
                alpha_moments_count=count("alpha_moments_count"), radial_funcs_count=count("radial_funcs_count"))
