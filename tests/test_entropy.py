"""The entropy-maximised generator (mtpjax.generate.entropy, the ENTROPY stage of mtpjax generate): the
nearest-neighbour estimator against hand computations, its gradient against central finite differences, the MTP
descriptors against the model's own site energies, the optimiser (S increases, seeded and deterministic), and the
stage in a tiny generate run that resumes from its checkpoints to the same files."""
from __future__ import annotations

import math
import shutil

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms

from mtpjax.errors import ConfigError, MtpjaxError
from mtpjax.generate import entropy as E
from mtpjax.generate import pipeline
from mtpjax.generate.config import SUBSETS, GenerateConfig, config_from_dict
from mtpjax.neighbors import Neighbours, neighbour_list
from mtpjax.potential import site_energies

OMEGA0, DNN = 23.093, 3.1935  # the Zhou Mg reference (docs/generate.md)
DMIN = 0.6 * DNN


@pytest.fixture(scope="module")
def descriptor():
    mtp = E.descriptor_mtp(6, 1.7 * DNN, DMIN, omega0=OMEGA0)
    return mtp, E.calibration_scales(mtp, OMEGA0, DNN, 0)


# ------------------------------------------------------------------------------------------------ the estimator
def test_estimator_by_hand():
    # 1D: 0, 1, 3, 7 -> nearest-neighbour distances 1, 1, 2, 4
    q = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert float(E.entropy(q)) == pytest.approx((math.log(4 * 1) * 2 + math.log(4 * 2) + math.log(4 * 4)) / 4, abs=1e-12)
    # 2D: the corners of a 3 x 4 rectangle: every nearest neighbour is 3 away -> S = ln(4 * 3)
    r = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [3.0, 4.0]])
    assert float(E.entropy(r)) == pytest.approx(math.log(12.0), abs=1e-12)
    # 2D, three points: (0,0), (1,0), (1,2): distances 1, 1, 2 -> (ln 3 + ln 3 + ln 6) / 3
    t = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]])
    assert float(E.entropy(t)) == pytest.approx((2 * math.log(3) + math.log(6)) / 3, abs=1e-12)
    # padding rows (mask False) change nothing, wherever they sit
    padded = np.concatenate([q, [[1.0], [0.0]]])
    assert float(E.entropy(padded, np.array([1, 1, 1, 1, 0, 0], bool))) == pytest.approx(float(E.entropy(q)), abs=1e-14)
    # coincident points (symmetry-equivalent atoms) are not each other's nearest neighbour: 0, 0, 1 -> 1, 1, 1
    assert float(E.entropy(np.array([[0.0], [0.0], [1.0]]))) == pytest.approx(math.log(3.0), abs=1e-10)
    # ... and a point with no distinct neighbour gets the floor, never -inf
    assert float(E.entropy(np.array([[2.0], [2.0]]))) == pytest.approx(math.log(2.0) + math.log(E.FLOOR), abs=1e-10)


def test_softmin_bounds_and_limit():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(7, 3))
    exact = np.asarray(E.log_nn_distances(q))
    for tau in (0.3, 0.05):
        soft = np.asarray(E.log_nn_distances(q, temperature=tau))
        assert np.all(soft <= exact + 1e-12) and np.all(soft >= exact - tau * math.log(6) - 1e-12)
    assert np.asarray(E.log_nn_distances(q, temperature=1e-3)) == pytest.approx(exact, abs=1e-2)


@pytest.mark.parametrize("tau", [0.0, 0.2])
def test_estimator_gradient_against_finite_differences(tau):
    rng = np.random.default_rng(1)
    q = rng.normal(size=(6, 4))
    mask = np.array([1, 1, 1, 1, 1, 0], bool)  # a padding row: zero gradient, no NaN
    f = lambda x: E.entropy(x, mask, temperature=tau)
    g = np.asarray(jax.grad(f)(jnp.asarray(q)))
    assert np.all(np.isfinite(g)) and np.all(g[5] == 0)
    h = 1e-6
    fd = np.zeros_like(q)
    for idx in np.ndindex(q.shape):
        e = np.zeros_like(q)
        e[idx] = h
        fd[idx] = (float(f(q + e)) - float(f(q - e))) / (2 * h)
    assert g == pytest.approx(fd, rel=1e-6, abs=1e-8)
    assert np.abs(g).max() > 0.1  # the test can fail


@pytest.mark.parametrize("tau", [0.0, 0.2])
def test_fixed_points_split_equals_the_union(tau):
    """S of varying ∪ fixed points computed without the fixed-fixed block (the stage's form) = S of the union."""
    rng = np.random.default_rng(4)
    q, ref = rng.normal(size=(6, 3)), rng.normal(size=(9, 3))
    ref[3] = ref[1]  # a coincident pair among the fixed points
    q[2] = ref[5]  # a varying point on a fixed one
    mask, ref_mask = np.array([1, 1, 1, 1, 0, 1], bool), np.array([1] * 8 + [0], bool)
    terms = E.fixed_terms(ref, ref_mask, tau, rows=4)
    split = jax.jit(jax.value_and_grad(lambda x: E.entropy_with_fixed(x, mask, ref, ref_mask, terms, tau)))
    union = jax.jit(jax.value_and_grad(lambda x: E.entropy(jnp.concatenate([x, jnp.asarray(ref)]),
                                                           np.concatenate([mask, ref_mask]), tau)))
    (s1, g1), (s2, g2) = split(q), union(q)
    assert float(s1) == pytest.approx(float(s2), abs=1e-12)
    assert np.asarray(g1) == pytest.approx(np.asarray(g2), abs=1e-12) and np.abs(np.asarray(g1)).max() > 0.01


# ------------------------------------------------------------------------------------------------ descriptors
def test_descriptors_are_the_models_basis(descriptor):
    """moment_coeffs · B(i) + species_coeffs = the MTP's own site energies, for random coefficients."""
    mtp, _ = descriptor
    rng = np.random.default_rng(2)
    mtp = eqx.tree_at(lambda m: (m.moment_coeffs, m.species_coeffs), mtp,
                      (jnp.asarray(rng.normal(size=mtp.moment_coeffs.shape)), jnp.asarray([-1.5])))
    a = Atoms("Mg3", positions=rng.uniform(0, 4.0, (3, 3)), cell=np.diag([4.1, 3.9, 4.3]) + 0.3, pbc=True)
    B = E.descriptors(mtp, [a])
    assert B.shape == (3, mtp.moment_coeffs.shape[0]) and np.ptp(B, axis=0).max() > 1e-3
    nbrs = neighbour_list(a.positions, a.cell.array, a.pbc, mtp.cutoff, n_atoms_pad=3)
    V = eqx.filter_jit(site_energies)(mtp, jnp.asarray(a.positions), jnp.asarray(a.cell.array), jnp.zeros(3, int),
                      Neighbours(*map(jnp.asarray, nbrs)))
    assert B @ np.asarray(mtp.moment_coeffs) - 1.5 == pytest.approx(np.asarray(V), rel=1e-10, abs=1e-10)


def test_objective_gradient_against_finite_differences(descriptor):
    """dL/d(positions, shape, volume) of a batch, lists held at the base geometry (pairs move continuously)."""
    mtp, scales = descriptor
    tasks = [(3, 0), (3, 1)]  # the optimiser test's shapes and options: the same compiled program
    params, problem = E.prepare(tasks, OMEGA0, scales=scales, d_min=DMIN, repulsion=30.0, seed=1,
                                reference=np.random.default_rng(0).normal(size=(3, len(scales))))
    pos, cells = E.geometry(params, problem.cells0, problem.structure, problem.shape_strain, problem.log_volume_range)
    radius = max(mtp.cutoff, E.REPULSION_MARGIN * DMIN)
    lists = E.NeighbourLists(radius, [3, 3], E.expected_neighbours(radius, 0.8 * OMEGA0))
    nbrs = Neighbours(*map(jnp.asarray, lists(np.asarray(pos), np.asarray(cells), problem.species.shape[0])))
    vg = lambda p: E.value_and_grad(p, nbrs, mtp, None, 0, problem)
    f = lambda p: vg(p)[0][0]
    g = vg(params)[1]
    h = 1e-6
    for name, idx in [("u", (0, 0)), ("u", (4, 2)), ("y", (1, 2)), ("y", (0, 4)), ("z", (1,))]:
        def shifted(d):
            return {**params, name: params[name].at[idx].add(d)}
        fd = (float(f(shifted(h))) - float(f(shifted(-h)))) / (2 * h)
        assert float(g[name][idx]) == pytest.approx(fd, rel=1e-5, abs=1e-7), (name, idx)
    assert float(jnp.abs(g["u"][6:]).max()) == 0.0  # padding atoms


def test_volume_and_shape_stay_in_their_bounds():
    rng = np.random.default_rng(3)
    F = E.deformation(jnp.asarray(rng.normal(scale=50, size=(20, 5))), jnp.asarray(rng.normal(scale=50, size=20)),
                      0.3, (math.log(0.8), math.log(1.5)))
    det = np.linalg.det(np.asarray(F))
    assert det.min() >= 0.8 - 1e-12 and det.max() <= 1.5 + 1e-12 and det.max() > 1.45 and det.min() < 0.85


# ------------------------------------------------------------------------------------------------ the optimiser
def test_optimiser_increases_entropy_seeded(descriptor):
    mtp, scales = descriptor
    kw = dict(mtp=mtp, scales=scales, d_min=DMIN, steps=15, learning_rate=0.05)
    tasks = [(3, 0), (3, 1)]  # the shapes of the stage's batches below: one compiled program
    a = E.optimise(tasks, "Mg", OMEGA0, seed=1, **kw)
    assert a.S_final > a.S_initial + 0.2
    b = E.optimise(tasks, "Mg", OMEGA0, seed=1, **kw)
    assert all(np.array_equal(x.positions, y.positions) and np.array_equal(x.cell.array, y.cell.array)
               for x, y in zip(a.structures, b.structures))
    c = E.optimise(tasks, "Mg", OMEGA0, seed=2, **kw)
    assert not np.allclose(a.structures[0].positions, c.structures[0].positions)
    vols = [s.get_volume() / len(s) / OMEGA0 for s in a.structures]
    assert min(vols) >= 0.8 - 1e-9 and max(vols) <= 1.5 + 1e-9
    with pytest.raises(MtpjaxError, match="JAX oracle"):
        E.optimise(tasks, "Mg", OMEGA0, energy_weight=1.0, oracle=None, **kw)


# ------------------------------------------------------------------------------------------------ the stage
TINY = {
    "element": "Mg", "seed": 4, "oracle": {"type": "zhou"}, "subsets": ["ENTROPY"],
    "entropy": {"n_atoms": [2, 3], "copies": 2, "steps": 15, "batch_structures": 2, "descriptor_level": 6},
    "executor": {"kind": "jax"},
}


def test_stage_is_off_by_default_and_validated():
    assert "ENTROPY" not in GenerateConfig().subsets and "ENTROPY" not in SUBSETS
    with pytest.raises(ConfigError, match="entropy.steps"):
        config_from_dict({**TINY, "entropy": {"steps": 0}})
    with pytest.raises(ConfigError, match="entropy.volume_range"):
        config_from_dict({**TINY, "entropy": {"volume_range": [1.5, 0.8]}})


def test_stage_batches_resume_from_their_checkpoints(tmp_path):
    """run_stage with the generate checkpoint store: killed after its first batch, resumed, it recomputes only the
    second batch and gives the same structures, bit for bit, as an uninterrupted run."""
    from collections import Counter

    from mtpjax.generate.checkpoint import Store

    cfg = config_from_dict(TINY)
    ref = {"omega0": OMEGA0, "nn_distance": DNN, "energy": -1.5}

    def stage(folder, hook=lambda *a, **k: None):
        chunks = Counter()
        res, stats = E.run_stage(cfg, None, {}, ref, DMIN, Store(folder), chunks, hook, 2)
        return res, stats, chunks

    full, stats, chunks = stage(tmp_path / "a")
    assert chunks == {"ENTROPY:computed": 2} and len(full) == 4 and len(stats["batches"]) == 2
    assert all(b["S_final"] > b["S_initial"] for b in stats["batches"])
    assert [a.info["id"] for a in full] == ["ENTROPY/n2-c0", "ENTROPY/n2-c1", "ENTROPY/n3-c0", "ENTROPY/n3-c1"]

    class Killed(Exception):
        pass

    def kill(event, stage=None, **_):
        raise Killed()

    with pytest.raises(Killed):
        stage(tmp_path / "b", kill)
    again, stats_b, chunks = stage(tmp_path / "b")
    assert chunks == {"ENTROPY:cached": 1, "ENTROPY:computed": 1}
    assert [(b["S_initial"], b["S_final"]) for b in stats_b["batches"]] == [(b["S_initial"], b["S_final"]) for b in stats["batches"]]
    for x, y in zip(full, again):
        assert np.array_equal(x.positions, y.positions) and np.array_equal(x.cell.array, y.cell.array)


@pytest.mark.slow
def test_stage_runs_and_resumes_to_the_same_files(tmp_path):
    cfg = config_from_dict(TINY)
    ref = pipeline.run(cfg, tmp_path / "a", progress=False)
    s = ref["subsets"]["ENTROPY"]
    assert s["attempted"] == 4 and s["structures"] + sum(s["rejected"].values()) == 4 and s["structures"] >= 3
    assert all(b["S_final"] > b["S_initial"] for b in s["batches"]) and len(s["batches"]) == 2
    assert ref["subsets"]["EVERYTHING"]["subsets"] == ["ENTROPY"] and "RANDSPG" not in ref["subsets"]
    import ase.io

    got = ase.io.read(tmp_path / "a" / "ENTROPY.extxyz", ":")
    assert all(a.info["config_type"] == "ENTROPY" and a.calc is not None for a in got)

    class Killed(Exception):
        pass

    def kill(event, stage=None, **_):
        if event == "chunk_done" and stage == "ENTROPY":
            raise Killed()

    (tmp_path / "b" / "checkpoints").mkdir(parents=True)  # the oracle's reference from run a (saves its relaxation)
    shutil.copytree(tmp_path / "a" / "checkpoints" / "reference", tmp_path / "b" / "checkpoints" / "reference")
    with pytest.raises(Killed):
        pipeline.run(cfg, tmp_path / "b", hook=kill, progress=False)
    m = pipeline.run(cfg, tmp_path / "b", resume=True, progress=False)
    assert m["checkpoints"]["chunks"]["ENTROPY:cached"] == 1 and m["checkpoints"]["chunks"]["ENTROPY:computed"] == 1
    for name in ("ENTROPY.extxyz", "EVERYTHING.extxyz"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()


@pytest.mark.slow
def test_energy_term_uses_the_oracle(descriptor):
    """E - kS: the oracle's energy per atom inside the objective is the labelled one, and weighting it lowers it."""
    from mtpjax.oracles import label, make_potential

    mtp, scales = descriptor
    zhou = make_potential("zhou:Mg")
    a = E.optimise([(2, 0), (3, 0), (3, 1)], "Mg", OMEGA0, mtp=mtp, scales=scales, d_min=DMIN, steps=15, seed=1,
                   energy_weight=5.0, oracle=zhou, energy_reference=-1.5)
    h0, h1 = a.history[0]["energy"], a.history[-1]["energy"]
    assert h1 < h0 - 0.2
    lab = label(zhou, a.structures)
    assert sum(x.get_potential_energy() for x in lab) / 8 == pytest.approx(h1, abs=1e-9)
