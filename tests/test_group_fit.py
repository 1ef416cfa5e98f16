"""Models of one level trained together (vmap over cutoffs and seeds) equal separate fits; resume; sweeps."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from conftest import SHARED, need
from mtpjax import fit as F
from mtpjax.basis import generate_basis
from mtpjax.data import load_records, pack_records
from mtpjax.fit import fit_group

QUIET = lambda m: None  # noqa: E731


def _records(n):
    return load_records(need(SHARED / "bench" / "fit" / "train.extxyz"))[:n]


def _diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(F.trainable(a), F.trainable(b)))


@pytest.mark.slow  # three compilations of the L-BFGS loop (~30 s); test_sweep_groups_cutoffs_and_seeds checks the same
def test_group_equals_separate_fits():  # stacking (grouped against separate fits) through run_sweep in the quick suite
    """Two cutoffs and two seeds in one program, data packed at the larger cutoff, give each model's own fit."""
    records = _records(20)
    b5, _ = pack_records(records, 5.0)
    b45, _ = pack_records(records, 4.5)
    basis = generate_basis(8)
    m1 = F.initial_mtp(basis, 1, 2.0, 4.5, b45, seed=1)
    m2 = F.initial_mtp(basis, 1, 2.0, 5.0, b5, seed=2)
    cfg = F.FitConfig(method="lbfgs", max_steps=5, linear_solve_at=(0,))
    (g1, g2), hists = fit_group([m1, m2], b5, cfg, log=QUIET)
    s1, h1 = F.fit(m1, b45, cfg, log=QUIET)
    s2, h2 = F.fit(m2, b5, cfg, log=QUIET)
    # the same losses, step by step, and the same predictions (coefficients agree to ~1e-8 only: the exact linear
    # solve is ill-conditioned, and the two packings sum the normal equations in different orders)
    np.testing.assert_allclose([v for _, v in hists[0]], [v for _, v in h1], rtol=1e-8)
    np.testing.assert_allclose([v for _, v in hists[1]], [v for _, v in h2], rtol=1e-8)
    for g, s in ((g1, s1), (g2, s2)):
        assert _diff(g, s) < 1e-7
        eg, fg, _, _ = (np.asarray(x) for x in jax.jit(F.efs)(g, b5[0]))
        es, fs, _, _ = (np.asarray(x) for x in jax.jit(F.efs)(s, b5[0]))
        np.testing.assert_allclose(eg, es, rtol=0, atol=1e-9)
        np.testing.assert_allclose(fg, fs, rtol=0, atol=1e-9)
    assert hists[0][-1][1] < hists[0][0][1]
    assert float(g1.max_dist) == 4.5 and float(g2.max_dist) == 5.0


def test_group_resume_after_kill(tmp_path):
    records = _records(12)
    b, _ = pack_records(records, 5.0)
    basis = generate_basis(6)
    mtps = [F.initial_mtp(basis, 1, 2.0, 5.0, b, seed=s) for s in (0, 1)]
    cfg = F.FitConfig(method="lbfgs", max_steps=7, checkpoint_every=3, linear_solve_at=(0, 4))
    full, hf = fit_group(mtps, b, cfg, names=["a", "b"], workdir=tmp_path / "full", log=QUIET)

    class Killed(Exception):
        pass

    def kill(k, vals):
        if k == 4:
            raise Killed

    with pytest.raises(Killed):
        fit_group(mtps, b, cfg, names=["a", "b"], workdir=tmp_path / "r", log=QUIET, progress=kill)
    resumed, hr = fit_group(mtps, b, cfg, names=["a", "b"], workdir=tmp_path / "r", resume=True, log=QUIET)
    assert [k for k, _ in hr[0]] == list(range(7))
    assert hr == hf  # bit-identical
    for x, y in zip(full, resumed):
        assert _diff(x, y) == 0.0


def test_sweep_groups_cutoffs_and_seeds(tmp_path):
    from mtpjax.sweep import run_sweep

    records = _records(12)
    cfg = F.FitConfig(method="lbfgs", max_steps=3, linear_solve_at=(0,))
    logs = []
    rows = run_sweep(records, records[:3], tmp_path / "g", levels=[6], cutoffs=[4.5, 5.0], seeds=[0, 1], cfg=cfg, log=logs.append)
    assert any("4 runs together" in m for m in logs)
    assert len(rows) == 4 and all(r["test_energy_meV"] > 0 for r in rows)
    alone = run_sweep(records, records[:3], tmp_path / "n", levels=[6], cutoffs=[4.5, 5.0], seeds=[0, 1], cfg=cfg, group="none",
                      log=QUIET)
    for a, b in zip(rows, alone):
        assert (a["cutoff"], a["seed"]) == (b["cutoff"], b["seed"])
        assert a["train_energy_meV"] == pytest.approx(b["train_energy_meV"], rel=1e-6)
        assert a["test_forces"] == pytest.approx(b["test_forces"], rel=1e-6)


class _Scripted:
    """A stand-in method whose losses are scripted per model: each step adds 1 to every moment coefficient (so a
    model's coefficients count the steps it accepted) and returns values[k] and done[k]."""

    name = "scripted"
    full_batch = True

    def __init__(self, values, done=None):
        self.values, self.done = np.asarray(values, float), done

    def init(self, models, batches, n_structures):
        return {"count": np.zeros(F.n_models(models), np.int64)}

    def step(self, k, models, state, batches, n_structures):
        import equinox as eqx

        models = eqx.tree_at(lambda m: m.moment_coeffs, models, models.moment_coeffs + 1.0)
        done = self.done[k] if self.done is not None else np.zeros(self.values.shape[1], bool)
        return models, {"count": state["count"] + 1}, self.values[k], done


def test_loop_stops_each_model_by_its_own_rules():
    """One loop for any M: per model, the method's done, the tolerance over 50 steps and a NaN each stop only that
    model, which keeps its last good parameters while the others go on; a single model obeys the same rules."""
    b, _ = pack_records(_records(4), 5.0)
    basis = generate_basis(6)
    mtps = [F.initial_mtp(basis, 1, 2.0, 5.0, b, seed=s) for s in range(3)]
    K = 160
    k = np.arange(K, dtype=float)
    values = np.stack([1.0 / (k + 1), np.ones(K), np.where(k == 30, np.nan, 2.0 - k / 100)], axis=1)
    done = np.zeros((K, 3), bool)
    done[140, 0] = True
    cfg = F.FitConfig(method="lbfgs", max_steps=K)
    seen = []
    r = F.fit_models(F.stack_models(mtps), b, cfg, method=_Scripted(values, done), log=QUIET,
                     progress=lambda k, v: seen.append((k, np.asarray(v).shape)))
    assert r.stopped == ["converged", "tolerance", "not finite"]
    assert [len(h) for h in r.histories] == [141, 101, 30] and r.steps == 141
    assert r.histories[1][-1] == (100, 1.0) and r.histories[2][-1] == (29, 2.0 - 29 / 100)
    offsets = [float(np.asarray(m.moment_coeffs - m0.moment_coeffs).max()) for m, m0 in zip(F.unstack_models(r.models), mtps)]
    assert offsets == [141.0, 101.0, 30.0]  # frozen at the last accepted step
    assert seen[0] == (0, (3,)) and len(seen) == 141
    # M = 1: the same tolerance rule (the plateau model alone), and progress gets a float
    floats = []
    one = F.fit_models(F.stack_models(mtps[1:2]), b, cfg, method=_Scripted(values[:, 1:2]), log=QUIET,
                       progress=lambda k, v: floats.append(v))
    assert len(one.histories[0]) == 101 and one.stopped == ["tolerance"] and isinstance(floats[0], float)


def test_group_honours_tolerance():
    """fit_group stops at the tolerance test (step 100) as a single fit does, not at max_steps."""
    b, _ = pack_records(_records(6), 5.0)
    basis = generate_basis(6)
    mtps = [F.initial_mtp(basis, 1, 2.0, c, b, seed=s) for s, c in ((0, 5.0), (1, 4.5))]
    cfg = F.FitConfig(method="lbfgs", max_steps=130, linear_solve_at=(0,), tolerance=0.5)
    _, hists = fit_group(mtps, b, cfg, log=QUIET)
    _, single = F.fit(mtps[0], b, cfg, log=QUIET)
    assert [len(h) for h in hists] == [101, 101] and len(single) == 101
    # (the same losses at first; over 100 steps L-BFGS amplifies the 1e-16 differences of vmap's summation order)
    np.testing.assert_allclose([v for _, v in hists[0][:10]], [v for _, v in single[:10]], rtol=1e-8)
