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
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import config
from .errors import ConfigError, MtpjaxError
from .fit.config import SPLIT_SALT, FitConfig, TrainOptions
from .fit.validate import mtp_level, non_negative_int, positive_float
from .generate.config import ALL_SUBSETS, GenerateConfig
from .io.files import write_json

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
# the config: dataclasses checked by mtpjax.config (strict types, unknown keys listed, the file named)


@dataclass(frozen=True)
class FitSection:
    """[fit]: one MTP fitted to one subset of the generated data. Every key of :class:`mtpjax.fit.FitConfig` (with
    :class:`~mtpjax.fit.LossConfig`'s weights) and :class:`mtpjax.fit.config.TrainOptions` may be set here too, with
    their defaults (``optimizer``, ``max_steps``, ``energy_weight``, ``init``, ...); read them as attributes
    (``cfg.fit.max_steps``)."""

    level: int = field(default=12, metadata={"check": mtp_level})  # MTP level (2-28)
    cutoff: float | None = field(default=None, metadata={"check": positive_float})  # Å; left out: fit_cutoff(oracle range)
    seed: int = field(default=0, metadata={"check": non_negative_int})  # initial radial coefficients and the train/test split
    subset: str = "EVERYTHING"  # training subset: a generated <SUBSET>.extxyz
    test_fraction: float = 0.1  # random fraction of the training subset held out as the test set
    test_subset: str = ""  # or: this subset is the test set (and removed from the training set); overrides test_fraction
    options: TrainOptions = field(default_factory=TrainOptions, metadata={"flatten": True})
    fit: FitConfig = field(default_factory=FitConfig, metadata={"flatten": True, "fields": {"seed": {"config": False}}})
    cutoff_source: str = field(default="", metadata={"config": False})  # how cutoff was chosen (resolve_fit_cutoff)

    def __getattr__(self, name):
        """The keys of the flattened sections as attributes: ``cfg.fit.max_steps``, ``cfg.fit.optimizer``."""
        if name.startswith("_") or name in ("options", "fit"):
            raise AttributeError(name)
        for part in (self.options, self.fit):
            values = config.flat_values(part)
            if name in values:
                return values[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def fit_config(self) -> FitConfig:
        """The :class:`FitConfig` of the fit (seeded by ``seed``)."""
        return dataclasses.replace(self.fit, seed=self.seed)

    def check_config(self) -> None:
        if not 0 <= self.test_fraction < 1:
            raise ConfigError("test_fraction", f"must be in [0, 1), got {self.test_fraction}")
        if self.options.rmin is not None and self.cutoff is not None and self.options.rmin >= self.cutoff:
            why = f", {self.cutoff_source}" if self.cutoff_source else ""
            raise ConfigError("rmin", f"must be below the cutoff ({self.cutoff:g} Å{why}), got {self.options.rmin}")
        if self.test_subset and self.test_subset == self.subset:
            raise ConfigError("test_subset", "must differ from fit.subset")


@dataclass(frozen=True)
class VerifySection:
    """[verify]: the physics tests of the fitted MTP against the oracle."""

    tests: tuple[str, ...] = ("eos", "strain", "elastic", "phonons", "vacancy", "planar")  # tests to run (docs/verify.md)
    quick: bool = False  # smaller cells and fewer points
    options: dict = field(default_factory=dict)  # per-test keyword arguments {"phonons": {"mesh": [8, 8, 8]}}
    oracle: dict = field(default_factory=dict)  # default: the [generate.oracle] that labelled the data
    ground_state: str = ""  # hcp, fcc or bcc; default: the oracle's lowest of hcp, fcc, dhcp, bcc

    def check_config(self) -> None:
        from .verify.prototypes import LATTICES
        from .verify.suite import OPTIONAL_TESTS, TESTS

        if self.ground_state and self.ground_state not in LATTICES:
            raise ConfigError("ground_state", f"must be one of {', '.join(LATTICES)} (or left out), got {self.ground_state!r}")

        if not self.tests:
            raise ConfigError("tests", f"is empty; choose from {', '.join(TESTS + OPTIONAL_TESTS)}")
        bad = [t for t in self.tests if t not in TESTS + OPTIONAL_TESTS]
        if bad:
            raise ConfigError("tests", f"unknown test {bad[0]!r}; choose from {', '.join(TESTS + OPTIONAL_TESTS)}")
        if len(set(self.tests)) != len(self.tests):
            raise ConfigError("tests", f"a test is named twice: {list(self.tests)}")
        bad = [k for k, o in self.options.items() if k not in self.tests or not isinstance(o, dict)]
        if bad:
            raise ConfigError(f"options.{bad[0]}", "must be a table of options of a test listed in verify.tests")
        if self.oracle and "type" not in self.oracle:
            raise ConfigError("oracle.type", "an [verify.oracle] table needs a type (e.g. zhou, eam)")


@dataclass(frozen=True)
class ReportSection:
    """[report]: the combined markdown report."""

    title: str = ""  # default: "<name>: generate → fit → verify"
    max_rows: int = 0  # verification rows in the report (0 = all)

    def check_config(self) -> None:
        if self.max_rows < 0:
            raise ConfigError("max_rows", f"must be >= 0, got {self.max_rows}")


@dataclass(frozen=True)
class RunConfig:
    """A whole run config (docs/run.md): ``name``, ``out`` and the [generate], [fit], [verify], [report] tables."""

    name: str = "run"  # the run's name (default: the config file's name)
    out: str = ""  # output folder, relative to the current directory (default: runs/NAME)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    fit: FitSection = field(default_factory=FitSection)
    verify: VerifySection = field(default_factory=VerifySection)
    report: ReportSection = field(default_factory=ReportSection)
    path: str = field(default="", metadata={"config": False})  # the config file

    @property
    def generate_raw(self) -> dict:
        """The [generate] table with every default filled in."""
        return self.generate.to_dict()

    def check_config(self) -> None:
        """The checks across sections (the fit's subsets must be generated ones)."""
        if not self.name:
            raise ConfigError("name", "must be a non-empty string")
        subsets = self.generate.subsets
        valid = set(subsets) | {"EVERYTHING"}
        f = self.fit
        if f.subset not in valid:
            raise ConfigError("fit.subset", f"{f.subset!r} is not a generated subset; choose from "
                                            f"{', '.join(s for s in (*ALL_SUBSETS, 'EVERYTHING') if s in valid)}")
        if f.test_subset and f.test_subset not in set(subsets):
            raise ConfigError("fit.test_subset", f"{f.test_subset!r} is not a generated subset ({', '.join(subsets)})")
        if f.fit.loss.force_constant_weight > 0 and "HESSIAN" not in subsets:  # checked now, not after generating
            raise ConfigError("fit.force_constant_weight", f"= {f.fit.loss.force_constant_weight:g} > 0 needs force-"
                                                           "constant labels: add \"HESSIAN\" to [generate] subsets")
        if f.fit.loss.force_constant_weight > 0 and f.fit.method == "adam":
            raise ConfigError("fit.force_constant_weight", "the force-constant term is full-batch: use optimizer lm, "
                                                           "lbfgs or bfgs, not adam")


def config_from_dict(data: dict, path=None) -> RunConfig:
    """A validated :class:`RunConfig` from a TOML-like dict (from the file ``path``, named in errors); missing keys
    take their defaults (``name``: the file's name; ``out``: runs/NAME). Raises RunConfigError naming the key."""
    if isinstance(data, dict) and "name" not in data and path:
        data = {"name": Path(path).stem, **data}
    try:
        cfg = config.from_dict(RunConfig, data, path=path)
    except RunConfigError:
        raise
    except ConfigError as err:
        new = RunConfigError(err.field, str(err)[len(err.field) + 2:])
        new.path = getattr(err, "path", None)
        raise new from None
    return resolve_fit_cutoff(dataclasses.replace(cfg, out=cfg.out or f"runs/{cfg.name}", path=str(path or "")))


#: The [fit] cutoff (Å) when the oracle's range is unknown (an ASE calculator), and the longest the default picks.
DEFAULT_FIT_CUTOFF = 5.5
#: The default cutoff is the oracle's range rounded up to a multiple of this (Å).
FIT_CUTOFF_STEP = 0.5


def fit_cutoff(oracle_range: float | None, longest: float = DEFAULT_FIT_CUTOFF, step: float = FIT_CUTOFF_STEP) -> float:
    """The default MTP cutoff (Å) for an oracle whose pairs interact up to ``oracle_range`` Å
    (:func:`mtpjax.oracles.interaction_range`): that range rounded up to a multiple of ``step``, at most ``longest``;
    ``longest`` when the range is unknown (None).

    Why: a cutoff far beyond the oracle's range spends the MTP's radial basis on distances where the labels carry
    nothing (Zhou 2004 W, range 4.38 Å: train energy RMSE 31.0 meV/atom at 5.5 Å, 14.8 at 4.5 Å, on the same data;
    docs/study/stiff_elements.md), while a longer one than 5.5 Å costs time and did not help (W at 6.5 Å: 36.9).
    Rounding up keeps every pair bound by more than the range's tolerance (1 meV) inside the cutoff."""
    if oracle_range is None:
        return float(longest)
    return float(min(longest, step * math.ceil(oracle_range / step - 1e-9)))


def resolve_fit_cutoff(cfg: RunConfig) -> RunConfig:
    """``cfg`` with ``fit.cutoff`` set (and ``fit.cutoff_source`` saying how): the config's own value, or
    :func:`fit_cutoff` of the range of the [generate] oracle that labels the data. Idempotent; raises
    :class:`RunConfigError` naming ``generate.oracle`` if the oracle cannot be built, ``fit.rmin`` if r_min is not
    below the chosen cutoff."""
    f = cfg.fit
    if f.cutoff_source:
        return cfg
    if f.cutoff is not None:
        return dataclasses.replace(cfg, fit=dataclasses.replace(f, cutoff_source="config"))
    from .oracles import RANGE_TOL, interaction_range, make_oracle

    where = Path(cfg.path) if cfg.path else None
    try:
        oracle = make_oracle(cfg.generate.oracle_spec())
    except MtpjaxError as err:
        raise RunConfigError("generate.oracle", f"cannot build the oracle, whose range sets the default fit.cutoff "
                                                f"(set fit.cutoff to skip this): {err}", where) from None
    rng = interaction_range(oracle)
    cutoff = fit_cutoff(rng)
    if rng is None:
        how = f"default: {DEFAULT_FIT_CUTOFF:g} Å, the oracle's range is unknown"
    else:
        how = (f"default: the oracle's range {rng:.3g} Å (dimers bound by > {1000 * RANGE_TOL:g} meV) rounded up to "
               f"{FIT_CUTOFF_STEP:g} Å, at most {DEFAULT_FIT_CUTOFF:g} Å")
    f = dataclasses.replace(f, cutoff=cutoff, cutoff_source=how)
    try:
        f.check_config()
    except ConfigError as err:
        raise RunConfigError("fit." + err.field, str(err)[len(err.field) + 2:], where) from None
    return dataclasses.replace(cfg, fit=f)


def load_config(path) -> RunConfig:
    """Read and validate a run config (TOML). Errors name the file and the key."""
    from .io.tomlfile import read_toml

    return config_from_dict(read_toml(path), Path(path))


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
    """Each stage's own config (defaults filled in, the fit's cutoff resolved): what its hash covers besides its
    upstream hashes."""
    cfg = resolve_fit_cutoff(cfg)
    gen = _jsonable(cfg.generate.to_dict())
    gen.pop("executor", None)  # where the work runs does not change the data
    verify = _jsonable(dataclasses.asdict(cfg.verify))
    verify["oracle"] = verify["oracle"] or _jsonable(cfg.generate.oracle_spec())
    if not verify.get("ground_state"):  # detected: the hash of a run without the key stays what it was
        verify.pop("ground_state", None)
    return {"generate": gen, "fit": _jsonable(config.flat_values(cfg.fit)), "verify": verify,
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


def _warn(out: Path, stage: str, warnings: list, echo=None) -> None:
    """Each warning of a stage into ``stages.log`` (action ``WARNING``) and on stderr (and through ``echo``)."""
    for w in warnings:
        _log(out, stage, "WARNING", w, echo)
        if echo is None:
            print(f"mtpjax run: {stage}: WARNING: {w}", file=sys.stderr)


def read_log(out) -> list[tuple[str, str]]:
    """[(stage, action)] from ``OUT/stages.log`` (actions: skip, run, resume, done, failed, WARNING, setting)."""
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
    _warn(out, "generate", manifest.get("warnings", []), echo)
    return {"structures": manifest["subsets"]["EVERYTHING"]["structures"], "figures": [f.name for f in figures],
            "timings": manifest["timings"], "warnings": manifest.get("warnings", [])}


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
    perm = np.random.default_rng([f.seed, SPLIT_SALT]).permutation(n)
    test_ids = set(perm[:n_test].tolist())
    return [r for i, r in enumerate(records) if i not in test_ids], [r for i, r in enumerate(records) if i in test_ids]


def _stage_fit(cfg: RunConfig, out: Path, d: Path, resume: bool, progress: bool, echo) -> dict:
    from .data import load_records
    from .fit import train_potential
    from .progress import fit_progress

    f = cfg.fit
    if f.cutoff_source != "config":
        _log(out, "fit", "setting", f"cutoff {f.cutoff:g} Å, {f.cutoff_source}", echo)
    gen = out / "generate"
    species = list(cfg.generate.species)  # MLIP type order (an alloy's elements)
    records = load_records(gen / f"{f.subset}.extxyz", species=species, n_species=len(species))
    train, test = split_records(records, f)
    if test is None:
        test = load_records(gen / f"{f.test_subset}.extxyz", species=species, n_species=len(species))
    if not train:
        raise MtpjaxError(f"fit: the training set ({f.subset} without {f.test_subset or 'the test fraction'}) is empty")
    fcfg = f.fit_config()
    fc = None  # the HESSIAN stage's force constants, less the cells held out as the test set
    if "HESSIAN" in cfg.generate.subsets and fcfg.loss.force_constant_weight > 0:
        from .fit.force_constants import read_force_constant_labels

        fc = read_force_constant_labels(gen / "HESSIAN.extxyz", exclude=test)
    # a bar on a terminal; otherwise (a log file) a line now and then through echo: a paper-scale fit takes minutes
    bar, on_step = fit_progress(fcfg.max_steps, quiet=not (progress or echo), bar=progress,
                                emit=(lambda line: echo(f"mtpjax run: {line}")) if echo else None)
    with bar:
        result = train_potential(train, test, level=f.level, cutoff=f.cutoff, rmin=f.options.rmin, seed=f.seed,
                                 n_species=len(species), species=species, cfg=fcfg, workdir=d, output=d / "potential.almtp",
                                 resume=resume, max_batch_atoms=f.options.max_batch_atoms, init=f.options.init,
                                 force_constants=fc, progress=on_step,
                                 log=(lambda m: echo(m)) if echo else (lambda m: None))
    _warn(out, "fit", result.get("warnings", []), echo)
    return {"potential": "potential.mtpjax", "cutoff": f.cutoff, "cutoff_source": f.cutoff_source,
            "steps": result["steps"], "wall_s": result["wall_s"],
            "n_train": len(train), "n_test": len(test), "warnings": result.get("warnings", [])}


def verify_oracle_spec(cfg: RunConfig) -> dict:
    return dict(cfg.verify.oracle) if cfg.verify.oracle else cfg.generate.oracle_spec()


def _stage_verify(cfg: RunConfig, out: Path, d: Path, resume: bool, progress: bool, echo) -> dict:
    from .oracles import make_oracle
    from .oracles import make_potential
    from .verify.suite import run_suite

    pot = make_potential(out / "fit" / "potential.mtpjax", species=list(cfg.generate.species))
    spec = verify_oracle_spec(cfg)
    oracle = make_oracle(spec)
    res = run_suite(pot, oracle, d, tests=list(cfg.verify.tests), element=cfg.generate.element,
                    options=dict(cfg.verify.options), progress=progress, quick=cfg.verify.quick,
                    ground_state=cfg.verify.ground_state or None,
                    potential_label=f"MTP level {cfg.fit.level}, {cfg.fit.cutoff:g} Å", potential_spec=str(out / "fit" / "potential.mtpjax"),
                    resume=resume)
    status = {n: t["status"] for n, t in res["tests"].items()}
    _warn(out, "verify", res.get("warnings", []), echo)
    return {"tests": status, "timings": res["timings"], "warnings": res.get("warnings", [])}


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
    cfg = resolve_fit_cutoff(cfg)
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
