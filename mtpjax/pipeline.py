"""``mtpjax run CONFIG``: one TOML config from data generation to a report.

Stages (each in ``OUT/<stage>/`` with a ``stage.json``)::

    generate ─► fit ─► verify ─► report

A stage's *hash* covers its own config section (with defaults filled in) and the hashes of the stages it depends
on. A finished stage whose hash matches is skipped; a changed parameter reruns that stage and every stage
downstream. A stage that was interrupted (``stage.json`` status "running" with the same hash) resumes: generation
from its chunk checkpoints, fitting from its optimiser checkpoint, verification from the tests already finished. Every decision is appended to ``OUT/stages.log``.
See docs/run.md for the config format.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MtpjaxError
from .io.files import write_json
from .generate.config import ConfigError

#: Bumped when a stage's outputs change for the same inputs (part of every stage hash).
PIPELINE_VERSION = 1
STAGES = ("generate", "fit", "verify", "report")
DEPENDS = {"generate": (), "fit": ("generate",), "verify": ("fit", "generate"), "report": ("generate", "fit", "verify")}


class RunConfigError(ConfigError):
    """A bad run config; the message starts with the key at fault (``fit.level: ...``), also in ``.key``."""

    @property
    def key(self) -> str:
        return self.field


# --------------------------------------------------------------------------------------------------
# the config


@dataclass(frozen=True)
class FitSection:
    """[fit]: one MTP fitted to one subset of the generated data."""

    level: int = 12  # MTP level (2-28)
    cutoff: float = 5.5  # Å
    rmin: float = 0.0  # Å; 0 = 0.99 x the shortest training distance (MLIP-3)
    seed: int = 0  # initial radial coefficients and the train/test split
    max_steps: int = 0  # 0: the optimiser's default (mtpjax.fit.config.DEFAULT_MAX_STEPS)
    subset: str = "EVERYTHING"  # training subset: a generated <SUBSET>.extxyz
    test_fraction: float = 0.1  # random fraction of the training subset held out as the test set
    test_subset: str = ""  # or: this subset is the test set (and removed from the training set); overrides test_fraction
    optimizer: str = "lm"  # lm (Levenberg-Marquardt, default), lbfgs, bfgs or adam
    checkpoint_every: int = 50
    linear_solve_at: tuple = (0, 25, 70, 100, 150, 250, 400)  # MLIP-3's (mtpjax.fit.MLIP_LINEAR_SOLVES)
    memory_size: int = 20
    learning_rate: float = 1e-3  # adam only
    orthonormalize: bool = True
    energy_weight: float = 1.0
    force_weight: float = 0.01
    stress_weight: float = 0.001
    init: str = "mlip"  # mlip or random
    max_batch_atoms: int = 100000


@dataclass(frozen=True)
class VerifySection:
    """[verify]: the physics tests of the fitted MTP against the oracle."""

    tests: tuple = ("eos", "strain", "elastic", "phonons", "vacancy", "planar")
    quick: bool = False
    options: dict = field(default_factory=dict)  # per-test keyword arguments {"phonons": {"mesh": [8, 8, 8]}}
    oracle: dict = field(default_factory=dict)  # default: the [generate.oracle] that labelled the data


@dataclass(frozen=True)
class ReportSection:
    """[report]: the combined markdown report."""

    title: str = ""  # default: "<name>: generate → fit → verify"
    max_rows: int = 0  # verification rows in the report (0 = all)


@dataclass(frozen=True)
class RunConfig:
    name: str
    out: str
    generate: object  # mtpjax.generate.config.GenerateConfig
    generate_raw: dict
    fit: FitSection
    verify: VerifySection
    report: ReportSection
    path: str = ""


_TOP = ("name", "out", "generate", "fit", "verify", "report")


def _type_ok(value, default) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple))
    if isinstance(default, dict):
        return isinstance(value, dict)
    return True


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", tuple: "a list", dict: "a table"}


def _section(cls, data, prefix: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RunConfigError(prefix.rstrip("."), f"must be a table, got {data!r}")
    proto = cls()
    names = [f.name for f in dataclasses.fields(cls)]
    kw = {}
    for k, v in data.items():
        if k not in names:
            raise RunConfigError(f"{prefix}{k}", f"unknown key (known: {', '.join(names)})")
        default = getattr(proto, k)
        if not _type_ok(v, default):
            raise RunConfigError(f"{prefix}{k}", f"must be {_TYPE_NAMES[type(default)]}, got {v!r}")
        if isinstance(default, float):
            v = float(v)
        if isinstance(default, tuple):
            v = tuple(v)
        kw[k] = v
    return cls(**kw)


def _check_fit(f: FitSection, subsets) -> None:
    from .generate.config import SUBSETS

    if not 2 <= f.level <= 28:
        raise RunConfigError("fit.level", f"must be between 2 and 28, got {f.level}")
    if not f.cutoff > 0:
        raise RunConfigError("fit.cutoff", f"must be positive (Å), got {f.cutoff}")
    if f.rmin < 0 or (f.rmin and f.rmin >= f.cutoff):
        raise RunConfigError("fit.rmin", f"must be 0 (automatic) or in (0, cutoff), got {f.rmin}")
    if f.max_steps < 0:
        raise RunConfigError("fit.max_steps", f"must be 0 (the optimiser's default) or a positive integer, got {f.max_steps}")
    for k in ("checkpoint_every", "memory_size", "max_batch_atoms"):
        if getattr(f, k) < 1:
            raise RunConfigError(f"fit.{k}", f"must be a positive integer, got {getattr(f, k)}")
    if f.seed < 0:
        raise RunConfigError("fit.seed", f"must be a non-negative integer, got {f.seed}")
    valid = set(subsets) | {"EVERYTHING"}
    if f.subset not in valid:
        raise RunConfigError("fit.subset", f"{f.subset!r} is not a generated subset; choose from "
                                           f"{', '.join(s for s in (*SUBSETS, 'EVERYTHING') if s in valid)}")
    if f.test_subset and f.test_subset not in set(subsets):
        raise RunConfigError("fit.test_subset", f"{f.test_subset!r} is not a generated subset ({', '.join(subsets)})")
    if f.test_subset and f.test_subset == f.subset:
        raise RunConfigError("fit.test_subset", "must differ from fit.subset")
    if not 0 <= f.test_fraction < 1:
        raise RunConfigError("fit.test_fraction", f"must be in [0, 1), got {f.test_fraction}")
    if f.optimizer not in ("lm", "lbfgs", "bfgs", "adam"):
        raise RunConfigError("fit.optimizer", f"must be lm, lbfgs, bfgs or adam, got {f.optimizer!r}")
    if f.init not in ("mlip", "random"):
        raise RunConfigError("fit.init", f"must be mlip or random, got {f.init!r}")
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in f.linear_solve_at):
        raise RunConfigError("fit.linear_solve_at", f"must be a list of non-negative integers, got {list(f.linear_solve_at)}")
    for k in ("energy_weight", "force_weight", "stress_weight"):
        if getattr(f, k) < 0:
            raise RunConfigError(f"fit.{k}", f"must be non-negative, got {getattr(f, k)}")
    if not f.learning_rate > 0:
        raise RunConfigError("fit.learning_rate", f"must be positive, got {f.learning_rate}")


def _check_verify(v: VerifySection) -> None:
    from .verify.suite import TESTS

    if not v.tests:
        raise RunConfigError("verify.tests", f"is empty; choose from {', '.join(TESTS)}")
    bad = [t for t in v.tests if t not in TESTS]
    if bad:
        raise RunConfigError("verify.tests", f"unknown test {bad[0]!r}; choose from {', '.join(TESTS)}")
    if len(set(v.tests)) != len(v.tests):
        raise RunConfigError("verify.tests", f"a test is named twice: {list(v.tests)}")
    bad = [k for k, o in v.options.items() if k not in v.tests or not isinstance(o, dict)]
    if bad:
        raise RunConfigError(f"verify.options.{bad[0]}", "must be a table of options of a test listed in verify.tests")
    if v.oracle and "type" not in v.oracle:
        raise RunConfigError("verify.oracle.type", "an [verify.oracle] table needs a type (e.g. zhou, eam)")


def config_from_dict(data: dict, path=None) -> RunConfig:
    """A validated :class:`RunConfig` from a TOML-like dict; missing keys take their defaults."""
    from .generate.config import ConfigError
    from .generate.config import config_from_dict as generate_config

    if not isinstance(data, dict):
        raise RunConfigError("config", "must be a table")
    for k in data:
        if k not in _TOP:
            raise RunConfigError(k, f"unknown key (known top-level keys and tables: {', '.join(_TOP)})")
    name = data.get("name", Path(path).stem if path else "run")
    if not isinstance(name, str) or not name:
        raise RunConfigError("name", f"must be a non-empty string, got {name!r}")
    out = data.get("out", f"runs/{name}")
    if not isinstance(out, str) or not out:
        raise RunConfigError("out", f"must be a non-empty string (a folder), got {out!r}")
    gen_raw = data.get("generate", {})
    if not isinstance(gen_raw, dict):
        raise RunConfigError("generate", f"must be a table, got {gen_raw!r}")
    try:
        gen = generate_config(gen_raw)
    except ConfigError as err:
        raise RunConfigError(f"generate.{err.field}", str(err)[len(err.field) + 2:]) from None
    except TypeError as err:
        raise RunConfigError("generate", f"bad value: {err}") from None
    fit = _section(FitSection, data.get("fit"), "fit.")
    _check_fit(fit, gen.subsets)
    verify = _section(VerifySection, data.get("verify"), "verify.")
    _check_verify(verify)
    report = _section(ReportSection, data.get("report"), "report.")
    if report.max_rows < 0:
        raise RunConfigError("report.max_rows", f"must be >= 0, got {report.max_rows}")
    return RunConfig(name, out, gen, gen_raw, fit, verify, report, str(path or ""))


def load_config(path) -> RunConfig:
    """Read and validate a run config (TOML). Errors name the file and the key."""
    from .io.tomlfile import read_toml

    path = Path(path)
    data = read_toml(path)
    try:
        return config_from_dict(data, path)
    except RunConfigError as err:
        raise RunConfigError(err.key, f"{str(err)[len(err.key) + 2:]} (in {path})") from None


def resolve_out(cfg: RunConfig, out=None) -> Path:
    """The output folder: ``out`` if given, else the config's ``out`` (relative to the current directory)."""
    return Path(out) if out is not None else Path(cfg.out)


# --------------------------------------------------------------------------------------------------
# hashing and stage state


def _jsonable(x):
    return json.loads(json.dumps(x, default=lambda o: list(o) if isinstance(o, (tuple, set)) else str(o), sort_keys=True))


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def section_inputs(cfg: RunConfig) -> dict:
    """Each stage's own config (defaults filled in): what its hash covers besides its upstream hashes."""
    gen = _jsonable(cfg.generate.to_dict())
    gen.pop("executor", None)  # where the work runs does not change the data
    verify = _jsonable(dataclasses.asdict(cfg.verify))
    verify["oracle"] = verify["oracle"] or _jsonable(cfg.generate.oracle_spec())
    return {"generate": gen, "fit": _jsonable(dataclasses.asdict(cfg.fit)), "verify": verify,
            "report": _jsonable({**dataclasses.asdict(cfg.report), "name": cfg.name})}


def stage_hashes(cfg: RunConfig) -> dict:
    """{stage: hash} over its section and the hashes of the stages it depends on."""
    inputs = section_inputs(cfg)
    out = {}
    for s in STAGES:
        out[s] = _digest({"version": PIPELINE_VERSION, "stage": s, "config": inputs[s],
                          "upstream": {d: out[d] for d in DEPENDS[s]}})
    return out


def read_stage(out: Path, stage: str) -> dict | None:
    p = out / stage / "stage.json"
    try:
        return json.loads(p.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_stage(out: Path, stage: str, info: dict) -> None:
    write_json(out / stage / "stage.json", info, indent=1)


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def _log(out: Path, stage: str, action: str, detail: str = "", echo=None) -> None:
    line = f"{_now()} {stage} {action}{(' ' + detail) if detail else ''}"
    with open(out / "stages.log", "a") as fh:
        fh.write(line + "\n")
    if echo:
        echo(f"mtpjax run: {stage}: {action}{(' (' + detail + ')') if detail else ''}")


def read_log(out) -> list[tuple[str, str]]:
    """[(stage, action)] from ``OUT/stages.log`` (actions: skip, run, resume, done, failed)."""
    p = Path(out) / "stages.log"
    if not p.exists():
        return []
    return [tuple(line.split()[1:3]) for line in p.read_text().splitlines() if len(line.split()) >= 3]


# --------------------------------------------------------------------------------------------------
# the stages


def _stage_generate(cfg: RunConfig, out: Path, d: Path, resume: bool, progress: bool, echo) -> dict:
    from .generate.pipeline import run as generate_run
    from .generate.plots import plot_dataset

    manifest = generate_run(cfg.generate, d, resume=resume, progress=progress)
    figures = plot_dataset(d)
    return {"structures": manifest["subsets"]["EVERYTHING"]["structures"], "figures": [f.name for f in figures],
            "timings": manifest["timings"]}


def split_records(records, f: FitSection):
    """(train, test) records per [fit]: a test subset taken out, or a seeded random test fraction."""
    import numpy as np

    if f.test_subset:
        return [r for r in records if r.subset != f.test_subset], None
    n = len(records)
    n_test = int(round(f.test_fraction * n))
    n_test = min(n_test, n - 1) if n > 1 else 0
    if n_test <= 0:
        return records, []
    perm = np.random.default_rng([f.seed, 2023]).permutation(n)
    test_ids = set(perm[:n_test].tolist())
    return [r for i, r in enumerate(records) if i not in test_ids], [r for i, r in enumerate(records) if i in test_ids]


def _stage_fit(cfg: RunConfig, out: Path, d: Path, resume: bool, progress: bool, echo) -> dict:
    from tqdm import tqdm

    from .data import load_records
    from .fit import FitConfig, LossConfig, train_potential

    f = cfg.fit
    gen = out / "generate"
    species = [cfg.generate.element]
    records = load_records(gen / f"{f.subset}.extxyz", species=species)
    train, test = split_records(records, f)
    if test is None:
        test = load_records(gen / f"{f.test_subset}.extxyz", species=species)
    if not train:
        raise MtpjaxError(f"fit: the training set ({f.subset} without {f.test_subset or 'the test fraction'}) is empty")
    fcfg = FitConfig(max_steps=f.max_steps or None, checkpoint_every=f.checkpoint_every, method=f.optimizer,
                     linear_solve_at=tuple(f.linear_solve_at), memory_size=f.memory_size, learning_rate=f.learning_rate,
                     orthonormalize=f.orthonormalize,
                     loss=LossConfig(energy_weight=f.energy_weight, force_weight=f.force_weight, stress_weight=f.stress_weight))
    with tqdm(total=fcfg.max_steps, desc="fit", unit="step", disable=not progress) as bar:
        def on_step(k, val):
            bar.n = k + 1
            bar.set_postfix(loss=f"{val:.4g}", refresh=False)
            bar.update(0)

        result = train_potential(train, test, level=f.level, cutoff=f.cutoff, rmin=f.rmin or None, seed=f.seed,
                                 n_species=1, species=species, cfg=fcfg, workdir=d, output=d / "potential.almtp",
                                 resume=resume, max_batch_atoms=f.max_batch_atoms, init=f.init, progress=on_step,
                                 log=(lambda m: echo(m)) if echo else (lambda m: None))
    return {"potential": "potential.mtpjax", "steps": result["steps"], "wall_s": result["wall_s"],
            "n_train": len(train), "n_test": len(test)}


def verify_oracle_spec(cfg: RunConfig) -> dict:
    return dict(cfg.verify.oracle) if cfg.verify.oracle else cfg.generate.oracle_spec()


def _stage_verify(cfg: RunConfig, out: Path, d: Path, resume: bool, progress: bool, echo) -> dict:
    from .oracles import make_oracle
    from .verify.load import load_potential
    from .verify.suite import run_suite

    pot = load_potential(out / "fit" / "potential.mtpjax", species=[cfg.generate.element])
    spec = verify_oracle_spec(cfg)
    oracle = make_oracle(spec)
    res = run_suite(pot, oracle, d, tests=list(cfg.verify.tests), element=cfg.generate.element,
                    options=dict(cfg.verify.options), progress=progress, quick=cfg.verify.quick,
                    potential_label=f"MTP level {cfg.fit.level}, {cfg.fit.cutoff:g} Å", potential_spec=str(out / "fit" / "potential.mtpjax"),
                    resume=resume)
    status = {n: t["status"] for n, t in res["tests"].items()}
    return {"tests": status, "timings": res["timings"]}


def _stage_report(cfg: RunConfig, out: Path, d: Path, resume: bool, progress: bool, echo) -> dict:
    from .study_report import write_report

    path = write_report(cfg, out, {s: read_stage(out, s) for s in STAGES})
    return {"report": str(path.relative_to(out))}


_RUNNERS = {"generate": _stage_generate, "fit": _stage_fit, "verify": _stage_verify, "report": _stage_report}
_RESUMABLE = {"generate", "fit", "verify"}


def run(cfg: RunConfig, out=None, force=None, progress: bool | None = None, echo=None) -> dict:
    """Run the stages into ``out`` (default: the config's ``out``), skipping finished ones whose hash matches.

    ``force``: a stage name (or list of names) to rerun even when finished; every stage downstream of it reruns too.
    ``progress``: tqdm bars (default: when stderr is a terminal). ``echo(str)``: one line per stage decision.
    Returns ``{"out", "stages": {stage: {"action": skip|run|resume, "seconds", "hash"}}, "report"}``.
    """
    out = resolve_out(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    progress = sys.stderr.isatty() if progress is None else progress
    forced = {force} if isinstance(force, str) else set(force or ())
    bad = sorted(forced - set(STAGES))
    if bad:
        raise MtpjaxError(f"--force {bad[0]}: not a stage; choose from {', '.join(STAGES)}")
    hashes = stage_hashes(cfg)
    inputs = section_inputs(cfg)
    summary = {"out": str(out), "stages": {}}
    rerun_downstream = False
    for stage in STAGES:
        d = out / stage
        have = read_stage(out, stage)
        done = have is not None and have.get("status") == "done" and have.get("hash") == hashes[stage]
        upstream_ran = any(summary["stages"][u]["action"] != "skip" for u in DEPENDS[stage])
        if stage in forced or upstream_ran or rerun_downstream:
            rerun_downstream = True
            done = False
        if done:
            _log(out, stage, "skip", f"hash {hashes[stage]} finished {have.get('finished')}", echo)
            summary["stages"][stage] = {"action": "skip", "seconds": 0.0, "hash": hashes[stage]}
            continue
        resume = (stage in _RESUMABLE and stage not in forced and have is not None and have.get("status") == "running"
                  and have.get("hash") == hashes[stage] and d.exists())
        if not resume and d.exists():
            shutil.rmtree(d)  # stale outputs of other inputs (or a forced rerun)
        d.mkdir(parents=True, exist_ok=True)
        action = "resume" if resume else "run"
        reason = ("forced" if stage in forced else "upstream changed" if upstream_ran else
                  "first run" if have is None else "interrupted" if resume else "inputs changed" if have.get("hash") != hashes[stage]
                  else "incomplete")
        _log(out, stage, action, f"hash {hashes[stage]} ({reason})", echo)
        info = {"stage": stage, "hash": hashes[stage], "status": "running", "started": _now(), "inputs": inputs[stage],
                "upstream": {u: hashes[u] for u in DEPENDS[stage]}, "pipeline_version": PIPELINE_VERSION}
        _write_stage(out, stage, info)
        t0 = time.perf_counter()
        try:
            result = _RUNNERS[stage](cfg, out, d, resume, progress, echo)
        except BaseException as err:
            _log(out, stage, "failed", f"{type(err).__name__}: {err}".replace("\n", " ")[:300])
            raise
        seconds = time.perf_counter() - t0
        info.update(status="done", finished=_now(), seconds=round(seconds, 3), result=result)
        _write_stage(out, stage, info)
        _log(out, stage, "done", f"{seconds:.1f} s", echo)
        summary["stages"][stage] = {"action": action, "seconds": seconds, "hash": hashes[stage]}
    summary["report"] = str(out / "report.md")
    return summary
