"""``mtpjax run``: config validation, an end-to-end tiny run, stage caching and reruns."""
from __future__ import annotations

import argparse
import json

import pytest

from mtpjax.errors import MtpjaxError
from mtpjax.pipeline import RunConfigError, config_from_dict, load_config, read_log, read_stage, run, stage_hashes

TINY = {
    "name": "tiny",
    "generate": {
        "element": "Mg", "seed": 3, "subsets": ["RANDSPG", "VOLMIN", "RATTLE"],
        "oracle": {"type": "zhou"},
        "randspg": {"space_groups": [191, 194], "n_atoms": [1, 2], "copies": 1, "workers": 1},
        "relax": {"max_steps": 100},
        "deform": {"copies": 1},
        "executor": {"chunk_size": 8},
    },
    "fit": {"level": 6, "max_steps": 4, "test_fraction": 0.2, "linear_solve_at": [0]},  # cutoff: the default (Mg: 5.5 Å)
    "verify": {"tests": ["eos"], "quick": True},
}


def _copy(d):
    return json.loads(json.dumps(d))


# ---------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("patch, key", [
    ({"bogus": 1}, "bogus"),
    ({"fit": {"levle": 8}}, "fit.levle"),
    ({"fit": {"level": "8"}}, "fit.level"),
    ({"fit": {"level": 1}}, "fit.level"),
    ({"fit": {"cutoff": -1.0}}, "fit.cutoff"),
    ({"fit": {"max_steps": 1.5}}, "fit.max_steps"),
    ({"fit": {"subset": "NOPE"}}, "fit.subset"),
    ({"fit": {"subset": "SHEAR"}}, "fit.subset"),  # not generated in TINY
    ({"fit": {"test_fraction": 1.5}}, "fit.test_fraction"),
    ({"fit": {"optimizer": "sgd"}}, "fit.optimizer"),
    ({"verify": {"tests": ["eos", "nope"]}}, "verify.tests"),
    ({"verify": {"quick": "yes"}}, "verify.quick"),
    ({"verify": {"options": {"phonons": {"mesh": [4, 4, 4]}}}}, "verify.options.phonons"),
    ({"report": {"colour": "red"}}, "report.colour"),
    ({"report": 3}, "report"),
    ({"generate": {"randspg": {"n_atom": [1, 2]}}}, "generate.randspg.n_atom"),
    ({"generate": {"element": "Xx"}}, "generate.element"),
    ({"fit": {"force_constant_weight": 0.05}}, "fit.force_constant_weight"),  # no HESSIAN subset: said before generating
    ({"name": 5}, "name"),
])
def test_bad_config_names_the_key(patch, key):
    cfg = _copy(TINY)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    with pytest.raises(RunConfigError) as err:
        config_from_dict(cfg)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}:")


def test_load_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[fit]\nlevle = 8\n")
    with pytest.raises(RunConfigError, match=r"fit\.levle: unknown key .*bad\.toml"):
        load_config(bad)
    bad.write_text("[fit\n")
    with pytest.raises(MtpjaxError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(MtpjaxError, match="no such config file"):
        load_config(tmp_path / "missing.toml")


def test_defaults_and_hashes():
    cfg = config_from_dict({})
    assert cfg.name == "run" and cfg.out == "runs/run" and cfg.fit.subset == "EVERYTHING" and not cfg.verify.quick
    h = stage_hashes(config_from_dict(TINY))
    d = _copy(TINY)
    d["fit"]["max_steps"] = 5
    h2 = stage_hashes(config_from_dict(d))
    assert h["generate"] == h2["generate"] and all(h[s] != h2[s] for s in ("fit", "verify", "report"))
    d = _copy(TINY)
    d["generate"]["executor"] = {"chunk_size": 2}  # where the work runs does not change the data
    assert stage_hashes(config_from_dict(d)) == h
    d["verify"]["quick"] = False
    h3 = stage_hashes(config_from_dict(d))
    assert h3["fit"] == h["fit"] and h3["verify"] != h["verify"] and h3["report"] != h["report"]


def test_shipped_quickstart_config_is_valid():
    from pathlib import Path

    cfg = load_config(Path(__file__).parents[1] / "configs" / "quickstart.toml")
    assert 12 <= cfg.fit.level <= 16 and 5.2 <= cfg.fit.cutoff <= 6.5 and cfg.verify.quick


def test_shipped_full_study_config_is_paper_scale():
    from pathlib import Path

    cfg = load_config(Path(__file__).parents[1] / "configs" / "study_mg.toml")
    assert cfg.generate.randspg.space_groups == (1, 230) and cfg.generate.randspg.n_atoms == (1, 10)
    assert cfg.generate.deform.copies == 5 and len(cfg.generate.subsets) == 7 and not cfg.verify.quick


# ---------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = config_from_dict(TINY)
    summary = run(cfg, out, progress=False)
    return cfg, out, summary


def test_end_to_end_writes_report(tiny_run):
    cfg, out, summary = tiny_run
    assert [v["action"] for v in summary["stages"].values()] == ["run"] * 4
    for s in ("generate", "fit", "verify", "report"):
        st = read_stage(out, s)
        assert st["status"] == "done" and st["hash"] == summary["stages"][s]["hash"]
    assert (out / "generate" / "EVERYTHING.extxyz").exists() and (out / "fit" / "potential.mtpjax").exists()
    assert (out / "verify" / "metrics.json").exists()
    fit = read_stage(out, "fit")  # the default cutoff, resolved from the oracle's range: logged, recorded, hashed
    assert fit["inputs"]["cutoff"] == fit["result"]["cutoff"] == cfg.fit.cutoff == 5.5
    assert fit["result"]["cutoff_source"].startswith("default: the oracle's range 6.46 Å")
    assert ("fit", "setting") in read_log(out) and "cutoff 5.5 Å, default: the oracle's range 6.46 Å" in (out / "stages.log").read_text()
    text = (out / "report.md").read_text()
    for needle in ("## Data set", "Fig. 2", "generate/fig1_space_groups.png", "generate/fig3_distances.png",
                   "fit/loss.png", "RMSE per subset", "| test | RANDSPG |", "| train | VOLMIN |",
                   "## Verification", "Fig. 14", "verify/eos/"):
        assert needle in text, needle
    # every relative link in the report resolves
    import re

    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (out / link).exists(), link


def test_rerun_skips_everything(tiny_run):
    cfg, out, _ = tiny_run
    before = {s: read_stage(out, s)["finished"] for s in ("generate", "fit", "verify", "report")}
    mtime = (out / "report.md").stat().st_mtime_ns
    n_log = len(read_log(out))
    summary = run(cfg, out, progress=False)
    assert [v["action"] for v in summary["stages"].values()] == ["skip"] * 4
    assert read_log(out)[n_log:] == [(s, "skip") for s in ("generate", "fit", "verify", "report")]
    assert {s: read_stage(out, s)["finished"] for s in before} == before
    assert (out / "report.md").stat().st_mtime_ns == mtime


def test_changed_fit_parameter_reruns_downstream_only(tiny_run):
    _, out, first = tiny_run
    d = _copy(TINY)
    d["fit"]["max_steps"] = 3
    gen_finished = read_stage(out, "generate")["finished"]
    n_log = len(read_log(out))
    lines = []
    summary = run(config_from_dict(d), out, progress=False, echo=lines.append)
    # no bar (progress=False, as with stderr in a log file): the fit's progress lines come through echo
    beats = [x for x in lines if x.startswith("mtpjax run: fit: step ")]
    assert beats and beats[0].startswith("mtpjax run: fit: step 1/3, loss ") and beats[-1].endswith(" s"), lines
    assert {s: v["action"] for s, v in summary["stages"].items()} == {
        "generate": "skip", "fit": "run", "verify": "run", "report": "run"}
    assert read_stage(out, "generate")["finished"] == gen_finished
    assert read_stage(out, "fit")["hash"] != first["stages"]["fit"]["hash"]
    assert json.loads((out / "fit" / "result.json").read_text())["steps"] <= 3
    log = read_log(out)[n_log:]
    assert ("generate", "skip") in log and ("fit", "run") in log and ("verify", "done") in log
    assert (out / "report.md").exists()


def test_cli_force_report_only(tiny_run, tmp_path, capsys):
    """--force report reruns the report alone (nothing is downstream of it); the CLI entry returns 0."""
    from mtpjax.run_cli import add_parser

    _, out, _ = tiny_run
    d = _copy(TINY)
    d["fit"]["max_steps"] = 3  # the configuration of the previous test: everything is finished
    path = tmp_path / "tiny.toml"
    path.write_text(_toml(d))
    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["run", str(path), "--out", str(out), "--force", "report"])
    n_log = len(read_log(out))
    assert args.func(args) == 0
    log = read_log(out)[n_log:]
    assert [a for s, a in log if s != "report"] == ["skip", "skip", "skip"]
    assert ("report", "run") in log
    assert "report" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        p.parse_args(["run", str(path), "--force", "nope"])


@pytest.mark.slow
def test_interrupted_fit_resumes(tmp_path):
    """A stage left 'running' with the same hash resumes (fit from its checkpoint, verify from its finished tests)."""
    from mtpjax.pipeline import _write_stage

    d = _copy(TINY)
    d["verify"] = {"tests": ["eos"], "quick": True}
    cfg = config_from_dict(d)
    out = tmp_path / "run"
    summary = run(cfg, out, progress=False)
    st = read_stage(out, "fit")
    st["status"] = "running"
    _write_stage(out, "fit", st)
    summary = run(cfg, out, progress=False)
    assert {s: v["action"] for s, v in summary["stages"].items()} == {
        "generate": "skip", "fit": "resume", "verify": "run", "report": "run"}
    st = read_stage(out, "verify")  # verify interrupted after its finished tests: they are reused
    st["status"] = "running"
    _write_stage(out, "verify", st)
    before = (out / "verify" / "eos" / "result.json").stat().st_mtime_ns
    summary = run(cfg, out, progress=False)
    assert {s: v["action"] for s, v in summary["stages"].items()} == {
        "generate": "skip", "fit": "skip", "verify": "resume", "report": "run"}
    assert (out / "verify" / "eos" / "result.json").stat().st_mtime_ns == before


def _toml(d: dict) -> str:
    """A minimal TOML writer for the test configs (tables of scalars, lists and sub-tables)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)

    lines = []

    def table(prefix, t):
        scalars = {k: v for k, v in t.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {val(v)}" for k, v in scalars.items())
        for k, v in t.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", d)
    return "\n".join(lines) + "\n"
