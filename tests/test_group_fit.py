"""Models of one level trained together (vmap over cutoffs and seeds) equal separate fits; resume; sweeps."""
from __future__ import annotations

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


def test_group_equals_separate_fits():
    """Two cutoffs and two seeds in one program, data packed at the larger cutoff, give each model's own fit."""
    records = _records(20)
    b5, _ = pack_records(records, 5.0)
    b45, _ = pack_records(records, 4.5)
    basis = generate_basis(8)
    m1 = F.initial_mtp(basis, 1, 2.0, 4.5, b45, seed=1)
    m2 = F.initial_mtp(basis, 1, 2.0, 5.0, b5, seed=2)
    cfg = F.FitConfig(max_steps=5, linear_solve_at=(0,))
    (g1, g2), hists = fit_group([m1, m2], b5, cfg, log=QUIET)
    s1, h1 = F.fit(m1, b45, cfg, log=QUIET)
    s2, h2 = F.fit(m2, b5, cfg, log=QUIET)
    # the same losses, step by step, and the same predictions (coefficients agree to ~1e-8 only: the exact linear
    # solve is ill-conditioned, and the two packings sum the normal equations in different orders)
    np.testing.assert_allclose([v for _, v in hists[0]], [v for _, v in h1], rtol=1e-8)
    np.testing.assert_allclose([v for _, v in hists[1]], [v for _, v in h2], rtol=1e-8)
    for g, s in ((g1, s1), (g2, s2)):
        assert _diff(g, s) < 1e-7
        eg, fg, _, _ = (np.asarray(x) for x in F.efs(g, b5[0]))
        es, fs, _, _ = (np.asarray(x) for x in F.efs(s, b5[0]))
        np.testing.assert_allclose(eg, es, rtol=0, atol=1e-9)
        np.testing.assert_allclose(fg, fs, rtol=0, atol=1e-9)
    assert hists[0][-1][1] < hists[0][0][1]
    assert float(g1.max_dist) == 4.5 and float(g2.max_dist) == 5.0


def test_group_resume_after_kill(tmp_path):
    records = _records(12)
    b, _ = pack_records(records, 5.0)
    basis = generate_basis(6)
    mtps = [F.initial_mtp(basis, 1, 2.0, 5.0, b, seed=s) for s in (0, 1)]
    cfg = F.FitConfig(max_steps=7, checkpoint_every=3, linear_solve_at=(0, 4))
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
    for x, y in zip(full, resumed):
        assert _diff(x, y) < 1e-10


def test_sweep_groups_cutoffs_and_seeds(tmp_path):
    from mtpjax.sweep import run_sweep

    records = _records(12)
    cfg = F.FitConfig(max_steps=3, linear_solve_at=(0,))
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
