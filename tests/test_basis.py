"""mtpjax.basis: the MTP basis generated from its definition, checked against MLIP's templates.

- counts (scalar functions, basic moments, radial functions, moments, products) equal MLIP's, and the
  arrays are identical to the templates' arrays;
- both bases span the same function space (rank test on random environments), and the rank test can fail;
- every generated scalar is rotation invariant, and equals the dense einsum contraction of its graph;
- levels 2..5, odd levels and bad levels.
"""
import time
from pathlib import Path

import numpy as np
import pytest

from mtpjax import basis as mb
from mtpjax.basis import (MTPBasis, basis_from_arrays, basis_graphs, evaluate_basis_numpy, generate_basis,
                          moment_levels, node_level)
from mtpjax.errors import FormatError

TEMPLATES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mtp_templates"
TEMPLATE_LEVELS = list(range(6, 29, 2))
# MLIP's alpha_scalar_moments of its templates 06..28
MLIP_SCALARS = {6: 5, 8: 9, 10: 16, 12: 29, 14: 52, 16: 92, 18: 163, 20: 288, 22: 500, 24: 864, 26: 1464, 28: 2445}
SLOW = pytest.mark.slow
# measured linear dependencies among MLIP's scalar basis functions (3D identities), e.g. 288 -> 282 at 20
RANK_DEFICIT = {16: 1, 18: 2, 20: 6, 22: 14, 24: 33, 26: 70, 28: 148}


def lv(levels, slow_from=22):
    """pytest params of levels, marking levels >= slow_from as slow."""
    return [pytest.param(L, marks=SLOW) if L >= slow_from else L for L in levels]


def template(level: int) -> dict:
    path = TEMPLATES / f"{level:02d}.almtp"
    if not path.exists():
        pytest.skip(f"MLIP template {path} not found (expected in ../shared/data/mtp_templates)")
    return mb._read_template_arrays(path)


def environments(n_env, n_nb, K, seed):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n_env, n_nb, K))
    u = rng.normal(size=(n_env, n_nb, 3))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    return f, u


def singular_values(X):
    """Singular values (relative to the largest) of X with every column scaled to unit norm."""
    s = np.linalg.svd(X / np.linalg.norm(X, axis=0), compute_uv=False)
    return s / s[0]


def ranks(A, B, rtol=1e-10, min_gap=1e6):
    """(rank A, rank B, rank [A B]) by SVD; each rank must sit in a clear gap of the spectrum."""
    out = []
    for X in (A, B, np.hstack([A, B])):
        s = singular_values(X)
        r = int((s > rtol).sum())
        if r < len(s):  # the rank is unambiguous: kept and dropped singular values are far apart
            assert s[r - 1] > min_gap * max(s[r], 1e-300), (r, s[r - 1], s[r])
        out.append(r)
    return tuple(out)


def span_matrices(b1: MTPBasis, b2: MTPBasis, seed=0):
    n = max(b1.alpha_scalar_moments, b2.alpha_scalar_moments)
    K = max(b1.radial_funcs_count, b2.radial_funcs_count)
    f, u = environments(n + 100, 8, K, seed)  # more environments than functions
    return evaluate_basis_numpy(b1, f, u), evaluate_basis_numpy(b2, f, u)


def random_rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


# ---------------------------------------------------------------------------------------------------------
# counts and arrays against MLIP


@pytest.mark.parametrize("level", sorted(MLIP_SCALARS))
def test_scalar_count_table(level):
    assert generate_basis(level).alpha_scalar_moments == MLIP_SCALARS[level]


@pytest.mark.parametrize("level", TEMPLATE_LEVELS)
def test_counts_equal_template(level):
    ref = template(level)
    b = generate_basis(level)
    assert b.alpha_scalar_moments == len(ref["alpha_moment_mapping"]) == MLIP_SCALARS[level]
    assert b.alpha_index_basic_count == len(ref["alpha_index_basic"])
    assert b.radial_funcs_count == ref["radial_funcs_count"]
    assert b.alpha_moments_count == ref["alpha_moments_count"]
    assert b.alpha_index_times_count == len(ref["alpha_index_times"])


@pytest.mark.parametrize("level", TEMPLATE_LEVELS)
def test_arrays_identical_to_template(level):
    ref = template(level)
    b = generate_basis(level)
    np.testing.assert_array_equal(b.alpha_index_basic, ref["alpha_index_basic"])
    np.testing.assert_array_equal(b.alpha_index_times, ref["alpha_index_times"])
    np.testing.assert_array_equal(b.alpha_moment_mapping, ref["alpha_moment_mapping"])


# ---------------------------------------------------------------------------------------------------------
# span


@pytest.mark.parametrize("level", lv(TEMPLATE_LEVELS))
def test_same_span_as_template(level):
    ours, ref = generate_basis(level), basis_from_arrays(**template(level))
    A, B = span_matrices(ours, ref, seed=level)
    rA, rB, rAB = ranks(A, B)
    assert rA == rB == rAB, (rA, rB, rAB)
    # a few exact dependencies from 3D identities (e.g. Cayley-Hamilton: tr A^4 from lower traces) from 16 on
    assert rA == ours.alpha_scalar_moments - RANK_DEFICIT.get(level, 0)


@pytest.mark.parametrize("level", [12, 16])
def test_rank_check_detects_a_broken_basis(level):
    b = generate_basis(level)
    mapping = b.alpha_moment_mapping
    # B_1 = M_{0,0} = sum_j f_0 is the only function linear in f_0: it cannot be a combination of the rest
    assert mapping[0] == 0
    dropped = basis_from_arrays(b.alpha_index_basic, b.alpha_index_times, mapping[1:], b.alpha_moments_count)
    duplicated = basis_from_arrays(b.alpha_index_basic, b.alpha_index_times,
                                   np.concatenate([mapping[1:2], mapping[1:]]), b.alpha_moments_count)
    for broken in (dropped, duplicated):
        A, B = span_matrices(b, broken, seed=1)
        rA, rB, rAB = ranks(A, B)
        assert rB < rA == rAB, (rA, rB, rAB)
        assert not rA == rB == rAB


# ---------------------------------------------------------------------------------------------------------
# invariance and an independent evaluation


@pytest.mark.parametrize("level", lv(range(2, 29, 2), slow_from=26))
def test_rotation_invariance(level):
    b = generate_basis(level)
    f, u = environments(3, 9, b.radial_funcs_count, seed=100 + level)
    R = random_rotation(level)
    x, y = evaluate_basis_numpy(b, f, u), evaluate_basis_numpy(b, f, u @ R.T)
    # every function is a degree-<=4 polynomial of sums over 9 neighbours of bounded terms
    scale = np.abs(f).sum(axis=1).max() ** np.arange(1, 5).max()
    np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-12 * scale)


def dense_moment(f, u, mu, nu):
    T = f[:, mu]
    for _ in range(nu):
        T = T[..., None] * u.reshape((u.shape[0],) + (1,) * (T.ndim - 1) + (3,))
    return T.sum(axis=0)


def dense_contraction(labels, edges, f, u):
    letters = iter("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    subs = [""] * len(labels)
    for (i, j), m in edges.items():
        for _ in range(m):
            c = next(letters)
            subs[i] += c
            subs[j] += c
    tensors = [dense_moment(f, u, mu, nu) for mu, nu in labels]
    return float(np.einsum(",".join(subs) + "->", *tensors))


@pytest.mark.parametrize("level", lv(range(2, 21), slow_from=18))
def test_arrays_compute_their_contraction_graphs(level):
    """The times list really computes, for each mapping entry, the full contraction of its graph."""
    b = generate_basis(level)
    graphs = basis_graphs(level)
    assert len(graphs) == b.alpha_scalar_moments
    f, u = environments(1, 7, b.radial_funcs_count, seed=level)
    got = evaluate_basis_numpy(b, f[0], u[0])
    want = np.array([dense_contraction(labels, edges, f[0], u[0]) for labels, edges in graphs])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("level", range(2, 29))
def test_graphs_follow_the_definition(level):
    """<= 4 factors, no self-loops, degree = nu, total level <= L, MLIP's caps from 26 on; all distinct."""
    seen = set()
    for labels, edges in basis_graphs(level):
        assert 1 <= len(labels) <= 4
        assert sum(node_level(mu, nu) for mu, nu in labels) <= level
        if level >= 26:
            assert all(nu <= 10 and mu <= 5 for mu, nu in labels)
        deg = [0] * len(labels)
        for (i, j), m in edges.items():
            assert i < j and m > 0
            deg[i] += m
            deg[j] += m
        assert deg == [nu for _, nu in labels]
        key = (labels, tuple(sorted(edges.items())))
        assert key not in seen
        seen.add(key)


# ---------------------------------------------------------------------------------------------------------
# structure, edge cases, errors


@pytest.mark.parametrize("level", range(2, 29))
def test_structure(level):
    b = generate_basis(level)
    basic, times, mapping = b.alpha_index_basic, b.alpha_index_times, b.alpha_moment_mapping
    assert basic.dtype == times.dtype == mapping.dtype == np.int64
    assert not basic.flags.writeable
    # each (mu, nu) once with all its (nu+1)(nu+2)/2 monomials, sorted by (mu, nu)
    mus, nus = basic[:, 0], basic[:, 1:].sum(axis=1)
    pairs = sorted(set(zip(mus.tolist(), nus.tolist())))
    assert list(zip(mus.tolist(), nus.tolist())) == [p for p in pairs for _ in range((p[1] + 1) * (p[1] + 2) // 2)]
    assert b.radial_funcs_count == mus.max() + 1
    if level >= 26:
        assert nus.max() <= 10 and mus.max() <= 5
    # topologically ordered, contiguous outputs, each used moment set, every scalar of level <= L
    basis_from_arrays(basic, times, mapping, b.alpha_moments_count)  # raises if not topological
    if len(times):
        assert (np.diff(times[:, 3]) >= 0).all() and times[0, 3] == len(basic)
        assert times[-1, 3] == b.alpha_moments_count - 1 and (times[:, 2] >= 1).all()
    levels = moment_levels(basic, times, b.alpha_moments_count)
    assert (levels > 0).all() and levels[mapping].max() <= level
    assert len(set(mapping.tolist())) == len(mapping)


def test_levels_2_to_5():
    for level in (2, 3):
        b = generate_basis(level)
        assert b.level == level
        assert b.alpha_index_basic.tolist() == [[0, 0, 0, 0]] and b.alpha_index_times.shape == (0, 4)
        assert b.alpha_moment_mapping.tolist() == [0] and b.alpha_moments_count == 1 and b.radial_funcs_count == 1
        f, u = environments(1, 5, 1, seed=level)
        np.testing.assert_allclose(evaluate_basis_numpy(b, f[0], u[0]), [f[0, :, 0].sum()])
    for level in (4, 5):
        b = generate_basis(level)
        assert b.alpha_index_times.tolist() == [[0, 0, 1, 1]] and b.alpha_moment_mapping.tolist() == [0, 1]
        f, u = environments(1, 5, 1, seed=level)
        s = f[0, :, 0].sum()
        np.testing.assert_allclose(evaluate_basis_numpy(b, f[0], u[0]), [s, s * s])


@pytest.mark.parametrize("level", range(3, 29, 2))
def test_odd_level_equals_even_level_below(level):
    # a contraction has sum(nu) even, so every level 2n + 4 sum(mu) + sum(nu) is even
    a, b = generate_basis(level), generate_basis(level - 1)
    for key in ("alpha_index_basic", "alpha_index_times", "alpha_moment_mapping"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


@pytest.mark.parametrize("bad", [1, 0, -4, 29, 30, 100, 2.5, 8.0, "8", None, True])
def test_bad_levels_raise(bad):
    with pytest.raises(ValueError, match="level"):
        generate_basis(bad)
    with pytest.raises(ValueError, match="level"):
        basis_graphs(bad)


def test_generation_is_fast_and_cached():
    caches = (mb._generate, mb._tensor, mb._order_key)
    for c in caches:
        c.cache_clear()
    t0 = time.perf_counter()
    b = generate_basis(28)
    cold = time.perf_counter() - t0
    assert cold < 15.0, f"level 28 took {cold:.1f} s"
    assert generate_basis(28) is b


def test_evaluator_shapes_and_errors():
    b = generate_basis(8)
    f, u = environments(4, 6, 2, seed=3)
    batch = evaluate_basis_numpy(b, f, u)
    assert batch.shape == (4, 9) and batch.dtype == np.float64
    np.testing.assert_allclose(batch[2], evaluate_basis_numpy(b, f[2], u[2]))
    assert np.allclose(evaluate_basis_numpy(b, np.zeros((0, 2)), np.zeros((0, 3))), 0)  # no neighbours
    with pytest.raises(ValueError):
        evaluate_basis_numpy(b, f[0, :, :1], u[0])  # too few radial functions
    with pytest.raises(ValueError):
        evaluate_basis_numpy(b, f[0], u[0, :5])


def test_basis_from_arrays_validates():
    b = generate_basis(10)
    t = b.alpha_index_times
    with pytest.raises(ValueError, match="before it is complete"):
        basis_from_arrays(b.alpha_index_basic, t[::-1], b.alpha_moment_mapping)
    with pytest.raises(ValueError, match="basic"):
        bad = t.copy()
        bad[0, 3] = 0
        basis_from_arrays(b.alpha_index_basic, bad, b.alpha_moment_mapping)
    with pytest.raises(ValueError, match="alpha_moments_count"):
        basis_from_arrays(b.alpha_index_basic, t, b.alpha_moment_mapping, alpha_moments_count=10)
    same = basis_from_arrays(b.alpha_index_basic, t, b.alpha_moment_mapping)
    assert same.level == 10 and same.alpha_moments_count == b.alpha_moments_count
    assert same.radial_funcs_count == b.radial_funcs_count


def test_template_parser_errors(tmp_path):
    good = "MTP\nalpha_index_basic_count = 1\nalpha_index_basic = {{0, 0, 0, 0}}\nalpha_scalar_moments = 1\n" \
           "alpha_moment_mapping = {0}\n"
    p = tmp_path / "ok.mtp"
    p.write_text(good)
    d = mb._read_template_arrays(p)
    assert basis_from_arrays(**d).alpha_scalar_moments == 1
    p.write_text(good.replace("alpha_scalar_moments = 1", "alpha_scalar_moments = 2"))
    with pytest.raises(FormatError, match="alpha_scalar_moments"):
        mb._read_template_arrays(p)
    p.write_text(good.replace("alpha_moment_mapping = {0}\n", ""))
    with pytest.raises(FormatError, match="missing alpha_moment_mapping"):
        mb._read_template_arrays(p)
    p.write_text(good.replace("{{0, 0, 0, 0}}", "{{0, 0, 0}}"))
    with pytest.raises(FormatError, match="multiple of 4"):
        mb._read_template_arrays(p)
