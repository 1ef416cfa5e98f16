"""Experiments a (RMSE vs level and cutoff, Fig. 4) and b (cost-accuracy Pareto front, Figs. 5 and 15).

The slow tests run the scripts' --quick modes end to end into a temporary folder (a: ~4-5 min on 2 busy cores;
b then reuses a's fits and data).
"""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from mtpjax.experiment import settings_dict

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _module(name):
    """Import experiments/<name>.py (a script, not a package module; its helpers come from mtpjax.experiment)."""
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    mod = sys.modules.get(name)
    if mod is None:
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return mod


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------------- fast


def test_pareto_front_and_config_errors(tmp_path, capsys):
    B = _module("b_pareto")
    A = _module("a_level_cutoff")
    # (cost, error): (1, 10) cheapest; (2, 5) and (4, 1) better; (3, 6) and (5, 1) dominated; nan never optimal
    costs = [1.0, 2.0, 3.0, 4.0, 5.0, float("nan"), 2.0]
    errors = [10.0, 5.0, 6.0, 1.0, 1.0, 0.1, 5.0]
    assert B.pareto_front(costs, errors) == [True, True, False, True, False, False, True]
    assert B.pareto_front([], []) == []

    bad = tmp_path / "bad.toml"
    bad.write_text("[quick]\nlevles = [8]\n[full]\n")
    with pytest.raises(A.ExperimentError, match=r"bad\.toml.*quick\.levles: unknown key"):
        A.load_settings(bad, "quick")
    bad.write_text("[quick]\nlevels = [8, 40]\n")
    with pytest.raises(A.ExperimentError, match=r"quick\.levels: every entry must be in \[2, 28\]"):
        A.load_settings(bad, "quick")
    bad.write_text("[quick]\nsubsets = ['RATLE']\n")
    with pytest.raises(A.ExperimentError, match=r"quick\.subsets: unknown subset"):
        A.load_settings(bad, "quick")
    with pytest.raises(A.ExperimentError, match=r"no \[full\] table"):
        A.load_settings(bad, "full")
    bad.write_text("[quick]\nrmse = 'validation'\n")
    with pytest.raises(A.ExperimentError, match=r"quick\.rmse: must be 'train' or 'test'"):
        B.load_settings(bad, "quick")
    # the shipped configs are valid in both modes
    for mod in (A, B):
        for mode in ("quick", "full"):
            p = settings_dict(mod.load_settings(mod.DEFAULT_CONFIG, mode))
            assert Path(p["generate"]).exists()
    # the command line reports bad input with exit status 2, naming the file and key
    bad.write_text("[quick]\nmax_steps = 0\n")
    assert A.main(["--quick", "--config", str(bad), "--out", str(tmp_path / "a")]) == 2
    assert "quick.max_steps: must be a positive integer" in capsys.readouterr().err
    assert B.main(["--quick", "--sweep", str(tmp_path / "nothing"), "--out", str(tmp_path / "b"), "--no-jax-cache"]) == 2
    assert "no results.csv" in capsys.readouterr().err


def test_shared_helpers(tmp_path):
    """mtpjax.experiment: the fit stage's split, fit settings guarded, the generator's output reused, CSV cells, Figures."""
    import json
    import types

    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure

    from mtpjax import experiment as E
    from mtpjax.errors import MtpjaxError
    from mtpjax.generate import load_config

    assert issubclass(E.ExperimentError, MtpjaxError)
    # the split: a seeded 30 % of 10 records held out, the ones numpy's seeded permutation (salt 2023) puts first
    recs = [types.SimpleNamespace(i=i, subset="RATTLE") for i in range(10)]
    train, test = E.split(recs, 0.3, 5)
    held = set(np.random.default_rng([5, 2023]).permutation(10)[:3].tolist())
    assert {r.i for r in test} == held and {r.i for r in train} == set(range(10)) - held
    assert E.split(recs, 0.0, 5) == (recs, [])
    # fit settings: recorded once; the same values (a tuple read back as a list) pass; another value is refused
    f = tmp_path / "fits" / "fit_settings.json"
    E.check_fit_settings(f, {"max_steps": 10, "linear_solve_at": (0, 5)})
    E.check_fit_settings(f, {"max_steps": 10, "linear_solve_at": [0, 5]})
    with pytest.raises(E.ExperimentError, match=r"fit_settings\.json.*other settings \(max_steps: \[10\] there, \[11\] now"):
        E.check_fit_settings(f, {"max_steps": 11, "linear_solve_at": [0, 5]})
    # settings: numbers where the dataclass wants floats, lists as tuples, bool is not an integer
    cfg = tmp_path / "s.toml"
    cfg.write_text("[quick]\ncutoffs = [5, 6.5]\nlevels = [8]\n[full]\nmax_steps = true\n")
    s = E.load_settings(E.SweepSettings, cfg, "quick")
    assert s.cutoffs == (5.0, 6.5) and all(isinstance(c, float) for c in s.cutoffs) and s.levels == (8,)
    assert s.max_steps == E.SweepSettings().max_steps == 300
    with pytest.raises(E.ExperimentError, match=r"s\.toml: full\.max_steps: True is not an integer"):
        E.load_settings(E.SweepSettings, cfg, "full")
    # a folder holding the recipe's data (where the work ran does not count) is reused, not generated again
    recipe = EXPERIMENTS / "configs" / "quick_data_ab.toml"
    data = tmp_path / "data"
    data.mkdir()
    (data / "EVERYTHING.extxyz").write_text("")
    have = json.loads(json.dumps(load_config(recipe).to_dict(), default=list))
    have["executor"]["kind"] = "process"
    (data / "manifest.json").write_text(json.dumps({"config": have, "element": "Mg",
                                                    "subsets": {"EVERYTHING": {"structures": 7}}}))
    lines = []
    manifest, spec = E.prepare_data(recipe, data, log=lines.append)
    assert manifest["element"] == "Mg" and spec == {"type": "zhou", "element": "Mg"}
    assert lines == [f"data: {data} (7 structures) already holds this recipe's data, skipped"]
    # CSV: the chosen columns, None and NaN as empty cells
    path = E.write_csv(tmp_path / "t.csv", [{"a": 1.5, "b": None, "c": "x"}, {"a": float("nan"), "b": 2}], ["a", "b"])
    assert path.read_text().splitlines() == ["a,b", "1.5,", ",2"]
    # figures: a Figure object, saved as PNG, the global backend untouched
    A = _module("a_level_cutoff")
    backend = matplotlib.get_backend()
    rows = [{"subset": sub, "level": lv, "cutoff": 5.2, "train_energy_meV": e, "train_forces": e / 100}
            for sub, k in (("RATTLE", 1), ("EVERYTHING", 4)) for lv, e in ((6, 5.0 * k), (10, 3.0 * k))]
    fig = A.level_cutoff_figure(rows, "test")
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert E.save_figure(fig, tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.get_backend() == backend


# ---------------------------------------------------------------------------------------------------- slow


@pytest.fixture(scope="module")
def quick_a(tmp_path_factory):
    """Experiment a's --quick run (data generated, four fits)."""
    A = _module("a_level_cutoff")
    out = tmp_path_factory.mktemp("a_quick")
    assert A.main(["--quick", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_a_level_cutoff_quick(quick_a, capsys):
    A = _module("a_level_cutoff")
    p = settings_dict(A.load_settings(A.DEFAULT_CONFIG, "quick"))
    rows = _rows(quick_a / "a_level_cutoff.csv")
    assert len(rows) == len(p["levels"]) * len(p["cutoffs"]) * len(p["subsets"]) * len(p["seeds"])
    assert {r["subset"] for r in rows} == set(p["subsets"])
    for r in rows:
        for k in ("train_energy_meV", "train_forces", "train_stress_GPa", "test_energy_meV", "test_forces"):
            assert math.isfinite(float(r[k])) and float(r[k]) > 0, (r, k)
        assert 1 <= int(r["steps"]) <= p["max_steps"]  # Levenberg-Marquardt (the default) stops when converged
        assert float(r["train_energy_meV"]) < 100 and float(r["train_forces"]) < 0.3  # a fit, not noise
    results = [json.loads(f.read_text()) for f in sorted((quick_a / "sweep" / "runs").glob("*/result.json"))]
    assert len(results) == len(rows)
    for res in results:  # a fit that stopped before max_steps did so by its own convergence test
        assert res["steps"] == p["max_steps"] or res["stopped"] == "converged", res
    # a higher level (a superset of basis functions) does not fit the training data worse
    lo, hi = min(p["levels"]), max(p["levels"])
    for s in p["subsets"]:
        for c in p["cutoffs"]:
            pick = {int(r["level"]): r for r in rows if r["subset"] == s and float(r["cutoff"]) == c}
            assert int(pick[hi]["n_basis"]) > int(pick[lo]["n_basis"])
            for k in ("train_energy_meV", "train_forces"):
                assert float(pick[hi][k]) <= 1.05 * float(pick[lo][k]), (s, c, k, pick[lo][k], pick[hi][k])
    # EVERYTHING (all subsets) is harder to fit than RATTLE alone
    if "RATTLE" in p["subsets"]:
        for lv in p["levels"]:
            e = {r["subset"]: float(r["train_energy_meV"]) for r in rows if int(r["level"]) == lv}
            assert e["EVERYTHING"] > e["RATTLE"]
    for f in ("a_level_cutoff.png", "sweep/results.csv", "sweep/rmse_vs_level.png", "data/EVERYTHING.extxyz", "settings.json"):
        assert (quick_a / f).stat().st_size > 0, f
    # resumable: a second run fits nothing again
    capsys.readouterr()
    assert A.main(["--quick", "--out", str(quick_a)]) == 0
    log = capsys.readouterr().out
    assert "already holds this recipe's data, skipped" in log
    assert log.count("done before, skipped") == len(rows)
    # changing a fit setting of an existing sweep is refused, naming the key
    changed = quick_a / "changed.toml"
    changed.write_text(A.DEFAULT_CONFIG.read_text().replace("generate = \"quick_data_ab.toml\"",
                                                            f"generate = \"{A.DEFAULT_CONFIG.parent / 'quick_data_ab.toml'}\"")
                       .replace("max_steps = 250", "max_steps = 260", 1))
    assert A.main(["--quick", "--config", str(changed), "--out", str(quick_a)]) == 2
    assert "max_steps" in capsys.readouterr().err


def _check_pareto_csv(path, n_mtp):
    rows = _rows(path)
    mtps = [r for r in rows if r["kind"] == "mtp"]
    oracle = [r for r in rows if r["kind"] == "oracle"]
    assert len(mtps) == n_mtp and len(oracle) == 1
    o = oracle[0]
    assert "EAM" in o["name"] and float(o["us_per_atom"]) > 0 and float(o["train_energy_meV"]) == 0.0
    for r in mtps:
        assert 0 < float(r["us_per_atom_min"]) <= float(r["us_per_atom"]) < 1e4
        assert float(r["us_per_atom_nl"]) > 0 and int(r["atoms"]) == 432
        assert math.isfinite(float(r["train_energy_meV"])) and float(r["train_energy_meV"]) > 0
    for kind, key in (("energy", "train_energy_meV"), ("forces", "train_forces")):
        pts = [(float(r["us_per_atom"]), float(r[key]), r[f"pareto_{kind}"] == "True") for r in mtps]
        front = [(c, e) for c, e, opt in pts if opt]
        assert front, kind
        # the cheapest and the most accurate MTPs are always on the front
        assert min(pts)[2] and min(pts, key=lambda t: t[1])[2]
        for c, e, opt in pts:  # optimal points are non-dominated; the others are dominated by one on the front
            dominated = any(c2 <= c and e2 <= e and (c2, e2) != (c, e) for c2, e2, _ in pts)
            assert opt == (not dominated), (kind, c, e)
    return mtps


@pytest.mark.slow
def test_b_pareto_reusing_a(quick_a, tmp_path):
    B = _module("b_pareto")
    out = tmp_path / "b"
    assert B.main(["--quick", "--sweep", str(quick_a), "--out", str(out)]) == 0
    a_rows = [r for r in _rows(quick_a / "a_level_cutoff.csv") if r["subset"] == "EVERYTHING"]
    mtps = _check_pareto_csv(out / "b_pareto.csv", len(a_rows))
    # the RMSEs are a's
    a_e = {(int(r["level"]), float(r["cutoff"])): float(r["train_energy_meV"]) for r in a_rows}
    for r in mtps:
        assert float(r["train_energy_meV"]) == pytest.approx(a_e[(int(r["level"]), float(r["cutoff"]))])
    assert (out / "b_pareto.png").stat().st_size > 0
    # a re-run times nothing again
    before = (out / "timings.json").read_text()
    assert B.main(["--quick", "--sweep", str(quick_a), "--out", str(out)]) == 0
    assert (out / "timings.json").read_text() == before


@pytest.mark.slow
def test_b_pareto_own_sweep(quick_a, tmp_path):
    """b fits its own sweep (on a's data, a short config: one level, two cutoffs trained together)."""
    B = _module("b_pareto")
    cfg = tmp_path / "b.toml"
    cfg.write_text("[quick]\nlevels = [6]\ncutoffs = [4.2, 5.2]\nmax_steps = 60\nlinear_solve_at = [0, 25]\nrepeats = 5\n")
    out = tmp_path / "b_own"
    assert B.main(["--quick", "--config", str(cfg), "--data", str(quick_a / "data"), "--out", str(out)]) == 0
    mtps = _check_pareto_csv(out / "b_pareto.csv", 2)
    assert {float(r["cutoff"]) for r in mtps} == {4.2, 5.2}
    assert (out / "sweep" / "results.csv").exists() and (out / "b_pareto.png").stat().st_size > 0
