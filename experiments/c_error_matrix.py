"""Experiment c: the error matrix of Poul et al. (Fig. 14): training subset × verification quantity.

One MTP (same level, cutoff, seed and optimiser settings) is fitted to each training subset of a generated Mg set
(RANDSPG, VOLMIN, CELLMIN, INTMIN, TRIAX, SHEAR, RATTLE, EVERYTHING = the union), each is run through the
verification suite (:func:`mtpjax.verify.suite.run_suite`) against the oracle that labelled the data, and the rows
of every report are put side by side: one matrix row per verification quantity, one column per training subset.

    python experiments/c_error_matrix.py --quick            # ~4 min on 2 CPU cores
    python experiments/c_error_matrix.py                    # paper scale (GPU)
    python experiments/c_error_matrix.py --config my.toml --out runs/experiments/c_mine

Outputs in OUT (default ``runs/experiments/c_error_matrix[_quick]``):

- ``data/``: the generated training set (``mtpjax generate``; resumable);
- ``fits/runs/<run>/``: one fitted MTP per subset (``potential.mtpjax``, ``result.json``; :func:`mtpjax.sweep.run_sweep`);
- ``verify/<SUBSET>/``: the verification report of each (``rows.csv``, ``metrics.json``, ``summary.md``, figures);
- ``fits.csv``: training RMSE per subset (energy meV/atom, forces eV/Å, stress GPa);
- ``error_matrix.csv``: the matrix (test, quantity, unit, kind, one column per subset): ``kind = relative`` rows hold
  the relative error in % (100 · (MTP − oracle)/|oracle|), ``kind = absolute`` rows the error in the row's unit (an
  RMSE for curve comparisons, MTP − oracle otherwise);
- ``error_matrix_long.csv``: every verification row of every subset (test, quantity, unit, mtp, oracle, error,
  relative_error);
- ``error_matrix.png``: the heatmap (two panels: relative errors, coloured by |%| on a log scale; absolute errors,
  coloured by log10 |error| in the row's unit, so comparable along a row only).

Resumable: generation continues from its checkpoints, finished fits (``result.json``) and finished verifications
(``verify/<SUBSET>/done.json`` with the same tests, options and potential) are skipped; an interrupted
verification of the same potential continues with its unfinished tests where ``run_suite`` supports ``resume``.
Units: eV, Å, GPa, meV/atom, J/m², THz.

This module also holds the helpers that ``d_transferability.py`` imports (settings, data, fits).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import inspect
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NAME = "c_error_matrix"
DEFAULT_CONFIG = HERE / "configs" / "c_error_matrix.toml"
#: Training subsets the generator writes (EVERYTHING = the union of the generated ones).
KNOWN_SUBSETS = ("RANDSPG", "VOLMIN", "CELLMIN", "INTMIN", "TRIAX", "SHEAR", "RATTLE", "EVERYTHING")
#: MLIP-3's schedule of exact linear solves.
MLIP_SOLVES = [0, 25, 70, 100, 150, 250, 400]

#: Every key of a [quick] / [full] table and its default (the type of the default is the required type).
SCHEMA = {
    "data": str(REPO / "configs" / "generate_mg.toml"),  # generation recipe (a given path: relative to the config file)
    "subsets": list(KNOWN_SUBSETS),  # training subsets, one MTP and one matrix column each
    "level": 16,  # MTP level
    "cutoff": 6.5,  # Å
    "seed": 0,
    "max_steps": 1000,  # L-BFGS steps per fit
    "linear_solve_at": MLIP_SOLVES,
    "optimizer": "lbfgs",  # lbfgs | bfgs | adam
    "max_batch_atoms": 100000,
    "tests": ["eos", "strain", "elastic", "phonons", "vacancy", "planar"],  # verification tests
    "verify_quick": False,  # the suite's quick mode (smaller cells, fewer points)
    "verify_options": {},  # per-test options, {"phonons": {"structures": ["hcp"]}}
    "exclude": [],  # matrix rows whose "test: quantity" contains one of these strings are left out
}


class ExperimentError(Exception):
    """Bad input of an experiment script (the message names the file and key)."""


def log(msg: str) -> None:
    """A timestamped progress line on stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------- settings
def _type_name(default) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}[type(default)]


def _check_value(value, default, where: str):
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ExperimentError(f"{where}: must be {_type_name(default)}, got {value!r}")
    return float(value) if isinstance(default, float) else value


def load_settings(path, mode: str, schema: dict, validate=None) -> dict:
    """The ``[mode]`` table ("quick" or "full") of the TOML file ``path`` with every default of ``schema`` filled in.

    Unknown keys, wrong types and missing tables are :class:`ExperimentError`\\ s naming the file and the key. The
    ``data`` path is resolved relative to the config file. ``validate(settings, where)`` adds checks of its own.
    """
    from mtpjax.errors import FormatError
    from mtpjax.io.tomlfile import read_toml

    path = Path(path)
    try:
        doc = read_toml(path)
    except FormatError as err:
        raise ExperimentError(str(err)) from None
    unknown = sorted(set(doc) - {"quick", "full"})
    if unknown:
        raise ExperimentError(f"{path}: unknown table or key {unknown[0]!r} (the file holds a [quick] and a [full] table)")
    if mode not in doc:
        raise ExperimentError(f"{path}: no [{mode}] table")
    table = doc[mode]
    if not isinstance(table, dict):
        raise ExperimentError(f"{path}: {mode} must be a table")
    out = {}
    for key, value in table.items():
        if key not in schema:
            raise ExperimentError(f"{path}: [{mode}].{key}: unknown key (known: {', '.join(schema)})")
        out[key] = _check_value(value, schema[key], f"{path}: [{mode}].{key}")
    settings = {k: json.loads(json.dumps(v)) for k, v in schema.items()} | out
    data = Path(settings["data"])
    settings["data"] = str(data if data.is_absolute() else (path.parent / data).resolve())
    if not Path(settings["data"]).exists():
        raise ExperimentError(f"{path}: [{mode}].data: no such generation recipe {settings['data']}")
    where = f"{path}: [{mode}]"
    for key in ("level", "max_steps", "max_batch_atoms"):
        if key in settings and settings[key] < 1:
            raise ExperimentError(f"{where}.{key}: must be positive, got {settings[key]}")
    if "level" in settings and not 2 <= settings["level"] <= 28:
        raise ExperimentError(f"{where}.level: must be in 2..28, got {settings['level']}")
    if "cutoff" in settings and not settings["cutoff"] > 0:
        raise ExperimentError(f"{where}.cutoff: must be positive (Å), got {settings['cutoff']}")
    if "optimizer" in settings and settings["optimizer"] not in ("lbfgs", "bfgs", "adam"):
        raise ExperimentError(f"{where}.optimizer: choose lbfgs, bfgs or adam, not {settings['optimizer']!r}")
    if "tests" in settings:
        from mtpjax.verify.suite import TESTS

        bad = [t for t in settings["tests"] if t not in TESTS]
        if bad or not settings["tests"]:
            raise ExperimentError(f"{where}.tests: unknown test {bad[0]!r} (known: {', '.join(TESTS)})" if bad else f"{where}.tests: is empty")
        extra = sorted(set(settings.get("verify_options", {})) - set(settings["tests"]))
        if extra:
            raise ExperimentError(f"{where}.verify_options: options for {extra[0]!r}, which is not in tests")
    if validate is not None:
        validate(settings, where)
    return settings


def check_subsets(subsets, where: str) -> None:
    """Each name must be a generated subset, EVERYTHING, or a union ``A+B`` of generated subsets."""
    if not subsets:
        raise ExperimentError(f"{where}: is empty")
    for s in subsets:
        parts = s.split("+")
        bad = [p for p in parts if p not in KNOWN_SUBSETS or (p == "EVERYTHING" and len(parts) > 1)]
        if bad or not isinstance(s, str):
            raise ExperimentError(f"{where}: unknown training subset {s!r} (known: {', '.join(KNOWN_SUBSETS)}, or a union A+B)")
    if len(set(subsets)) != len(subsets):
        raise ExperimentError(f"{where}: a subset is named twice in {subsets}")


def _validate_c(settings, where):
    check_subsets(settings["subsets"], f"{where}.subsets")


# ------------------------------------------------------------------------------------------------- data
def ensure_data(recipe, data_dir, progress: bool = False) -> tuple[dict, dict]:
    """Generate the training set of ``recipe`` (a generation TOML) into ``data_dir`` unless it is there already with
    the same recipe; an interrupted generation resumes from its checkpoints. Returns (the manifest, the oracle's
    :func:`mtpjax.oracles.make_oracle` spec)."""
    from mtpjax.errors import MtpjaxError
    from mtpjax.generate import load_config, run

    data_dir = Path(data_dir)
    try:
        cfg = load_config(recipe)
    except MtpjaxError as err:
        raise ExperimentError(f"generation recipe {recipe}: {err}") from None
    manifest = data_dir / "manifest.json"
    if manifest.exists() and (data_dir / "EVERYTHING.extxyz").exists():
        have = json.loads(manifest.read_text())
        want = json.loads(json.dumps(cfg.to_dict(), default=list))
        have_cfg = {k: v for k, v in have.get("config", {}).items() if k != "executor"}
        if have_cfg == {k: v for k, v in want.items() if k != "executor"}:
            log(f"data: {data_dir} is complete ({have['subsets']['EVERYTHING']['structures']} structures), skipped")
            return have, cfg.oracle_spec()
    log(f"data: generating {recipe} into {data_dir} (resumable)")
    t0 = time.perf_counter()
    try:
        m = run(cfg, data_dir, resume=True, progress=progress)
    except MtpjaxError as err:
        raise ExperimentError(f"data {data_dir}: {err}") from None
    counts = ", ".join(f"{s} {v['structures']}" for s, v in m["subsets"].items())
    log(f"data: done in {time.perf_counter() - t0:.0f} s: {counts}")
    return m, cfg.oracle_spec()


def load_training(data_dir, element: str):
    """All labelled structures of ``data_dir/EVERYTHING.extxyz`` (each tagged with its subset)."""
    from mtpjax.data import load_records

    return load_records(Path(data_dir) / "EVERYTHING.extxyz", species=[element])


def sweep_subset(subset: str) -> str:
    """The :func:`mtpjax.sweep.select_subset` name of a training subset (EVERYTHING is all records)."""
    return "all" if subset == "EVERYTHING" else subset


# ------------------------------------------------------------------------------------------------- fits
FIT_KEYS = ("data", "max_steps", "linear_solve_at", "optimizer", "max_batch_atoms")


def check_fit_settings(fits_dir, settings: dict, data_id: str) -> None:
    """Fits of other data or optimiser settings must not be reused: ``fits_dir/fit_settings.json`` records the
    settings the fits were made with (and ``data_id``, the SHA-256 of the training file); a difference is an error
    naming the keys. (Level, cutoff, subset and seed are in each run's name.)"""
    fits_dir = Path(fits_dir)
    fits_dir.mkdir(parents=True, exist_ok=True)
    want = {k: settings[k] for k in FIT_KEYS}
    want["data"] = data_id
    path = fits_dir / "fit_settings.json"
    if path.exists():
        have = json.loads(path.read_text())
        diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        if diff:
            raise ExperimentError(f"{path}: the fits in {fits_dir} were made with other settings ({', '.join(diff)}: "
                                  f"{[have.get(k) for k in diff]} there, {[want.get(k) for k in diff]} now); "
                                  "choose another --out or delete that folder")
    else:
        from mtpjax.io.files import atomic_write

        atomic_write(path, json.dumps(want, indent=1) + "\n")


def data_id(manifest: dict) -> str:
    """The SHA-256 of the generated EVERYTHING.extxyz (what the fits were trained on)."""
    return manifest.get("files", {}).get("EVERYTHING.extxyz", {}).get("sha256", "unknown")


def fit_all(records, fits_dir, plan, settings: dict, element: str, data: str) -> dict:
    """Fit every (subset, level, cutoffs) of ``plan`` with :func:`mtpjax.sweep.run_sweep` (the cutoffs of one subset
    and level train together; finished runs are skipped, interrupted ones resume). ``data``: :func:`data_id` of the
    training set. Returns {(subset, level, cutoff): run folder}."""
    from mtpjax.fit import FitConfig
    from mtpjax.sweep import run_name, run_sweep

    check_fit_settings(fits_dir, settings, data)
    cfg = FitConfig(max_steps=settings["max_steps"], linear_solve_at=tuple(settings["linear_solve_at"]),
                    method=settings["optimizer"])
    out = {}
    for k, (subset, level, cutoffs) in enumerate(plan):
        names = [run_name(sweep_subset(subset), level, c, settings["seed"]) for c in cutoffs]
        todo = [n for n in names if not (Path(fits_dir) / "runs" / n / "result.json").exists()]
        log(f"fit {k + 1}/{len(plan)}: {subset}, level {level}, cutoff(s) {', '.join(f'{c:g}' for c in cutoffs)} Å"
            + ("" if todo else ": done before, skipped"))
        if todo:
            t0 = time.perf_counter()
            run_sweep(records, None, fits_dir, levels=[level], cutoffs=list(cutoffs), subsets=[sweep_subset(subset)],
                      seeds=[settings["seed"]], cfg=cfg, species=[element], max_batch_atoms=settings["max_batch_atoms"],
                      log=lambda m: log(f"    {m}"))
            log(f"fit {k + 1}/{len(plan)}: done in {time.perf_counter() - t0:.0f} s")
        for c, n in zip(cutoffs, names):
            out[(subset, level, c)] = Path(fits_dir) / "runs" / n
    return out


def fit_row(subset: str, run_dir) -> dict:
    """One line of fits.csv from a run's result.json (training RMSE: meV/atom, eV/Å, GPa)."""
    r = json.loads((Path(run_dir) / "result.json").read_text())
    tr = r["train"].get("all", {})
    return {"subset": subset, "level": r["level"], "cutoff": r["cutoff"], "n_train": r.get("n_train"),
            "n_basis": r.get("n_basis"), "steps": r["steps"], "wall_s": round(r["wall_s"], 1),
            "train_energy_meV": tr.get("energy"), "train_forces_eV_A": tr.get("forces"), "train_stress_GPa": tr.get("stress")}


def write_csv(path, rows, fields=None) -> Path:
    """Rows (dicts) as CSV; None and NaN become empty cells."""
    from mtpjax.io.files import atomic_open

    path = Path(path)
    fields = fields or list(dict.fromkeys(k for r in rows for k in r))
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None or (isinstance(r.get(k), float) and math.isnan(r[k])) else r.get(k)
                        for k in fields})
    return path


def file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def setup_jax_cache(out: Path) -> None:
    """Reuse compiled programs between runs (a resumed or repeated experiment compiles far less): JAX's persistent
    cache in ``OUT/jax_cache`` unless one is configured already."""
    import jax

    if not os.environ.get("JAX_COMPILATION_CACHE_DIR") and not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(out / "jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


# ------------------------------------------------------------------------------------------------- verification
def verify(run_dir, oracle, oracle_spec, outdir, settings: dict, element: str, label: str) -> list:
    """The verification suite of the MTP in ``run_dir`` against ``oracle`` into ``outdir``; returns its rows. Skipped
    (rows read back) when ``outdir/done.json`` records the same tests, options and potential."""
    from mtpjax.io.files import atomic_write
    from mtpjax.verify.load import load_potential
    from mtpjax.verify.suite import run_suite

    outdir = Path(outdir)
    pot_file = Path(run_dir) / "potential.mtpjax"
    key = {"tests": settings["tests"], "quick": settings["verify_quick"], "options": settings["verify_options"],
           "potential": file_digest(pot_file), "oracle": oracle_spec}
    done, started = outdir / "done.json", outdir / "started.json"
    if done.exists():
        have = json.loads(done.read_text())
        if have.get("key") == key:
            log(f"verify {label}: done before, skipped")
            return have["rows"]
    # an interrupted suite of the same potential and settings continues with its unfinished tests (where run_suite
    # can resume); anything else in the folder is stale
    same = started.exists() and json.loads(started.read_text()) == key
    if outdir.exists() and not same:
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    atomic_write(started, json.dumps(key) + "\n")
    extra = {"resume": True} if same and "resume" in inspect.signature(run_suite).parameters else {}
    t0 = time.perf_counter()
    pot = load_potential(pot_file, species=[element])
    res = run_suite(pot, oracle, outdir, tests=list(settings["tests"]), element=element,
                    options=json.loads(json.dumps(settings["verify_options"])), quick=settings["verify_quick"],
                    progress=sys.stderr.isatty(), potential_label=label, potential_spec=str(pot_file), **extra)
    status = ", ".join(f"{n} {t['status']} {t['seconds']:.0f} s" for n, t in res["tests"].items())
    log(f"verify {label}: {status}; total {time.perf_counter() - t0:.0f} s")
    atomic_write(done, json.dumps({"key": key, "rows": res["rows"], "tests": {n: t["status"] for n, t in res["tests"].items()}},
                                  indent=1) + "\n")
    return res["rows"]


# ------------------------------------------------------------------------------------------------- the matrix
def assemble_matrix(rows_by_subset: dict, exclude=()) -> list:
    """The error matrix from verification rows: {subset: [row, ...]} -> one dict per quantity with test, quantity,
    unit, kind and one value per subset.

    ``kind`` is ``relative`` when at least one subset's row has a relative error (value = 100 · relative error, %),
    else ``absolute`` (value = the error in the row's unit). Quantities keep the order of their first appearance; a
    subset without the quantity (or with a non-finite value) gets NaN. Rows whose ``"test: quantity"`` contains a
    string of ``exclude``, and quantities without a finite error in any subset, are left out.
    """
    order, cells = [], {}
    for subset, rows in rows_by_subset.items():
        for r in rows:
            key = (r.get("test"), r.get("quantity"), r.get("unit") or "")
            label = f"{key[0]}: {key[1]}"
            if any(e in label for e in exclude):
                continue
            if key not in cells:
                order.append(key)
                cells[key] = {}
            cells[key][subset] = r
    out = []
    for key in order:
        have = cells[key]
        if not any(_finite(r.get("error")) for r in have.values()):
            continue  # no value anywhere (e.g. a quantity the quick mode skips)
        relative = any(_finite(r.get("relative_error")) for r in have.values())
        line = {"test": key[0], "quantity": key[1], "unit": key[2], "kind": "relative" if relative else "absolute"}
        for subset in rows_by_subset:
            r = have.get(subset)
            v = None if r is None else (r.get("relative_error") if relative else r.get("error"))
            line[subset] = 100.0 * float(v) if relative and _finite(v) else (float(v) if _finite(v) else math.nan)
        out.append(line)
    return out


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def plot_matrix(matrix, subsets, path, title: str = "") -> Path:
    """The heatmap of :func:`assemble_matrix`'s output: relative rows coloured by |error| in % (log scale), absolute
    rows by log10 |error| in the row's unit; every cell annotated with its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    groups = [(k, [m for m in matrix if m["kind"] == k]) for k in ("relative", "absolute")]
    groups = [(k, g) for k, g in groups if g]
    heights = [max(len(g), 1) for _, g in groups]
    width = 4.5 + 1.1 * len(subsets)
    fig, axes = plt.subplots(len(groups), 1, figsize=(width, 1.6 + 0.24 * sum(heights) + 0.9 * len(groups)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (kind, g) in zip(axes[:, 0], groups):
        vals = np.array([[m[s] for s in subsets] for m in g], dtype=float)
        mag = np.abs(vals)
        pos = mag[np.isfinite(mag) & (mag > 0)]
        lo, hi = (pos.min(), pos.max()) if pos.size else (1e-3, 1.0)
        hi = max(hi, lo * 10)
        cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
        shown = np.where(np.isfinite(mag) & (mag > 0), mag, np.nan)
        im = ax.imshow(np.ma.masked_invalid(shown), aspect="auto", cmap=cmap, norm=LogNorm(vmin=lo, vmax=hi))
        for i in range(vals.shape[0]):
            for j in range(vals.shape[1]):
                v = vals[i, j]
                txt = "n/a" if not np.isfinite(v) else (f"{v:+.3g}%" if kind == "relative" else f"{v:.3g}")
                dark = np.isfinite(shown[i, j]) and np.log(shown[i, j] / lo) < 0.55 * np.log(hi / lo)
                ax.text(j, i, txt, ha="center", va="center", fontsize=6.5, color="w" if dark else "k")
        ax.set_xticks(range(len(subsets)))
        ax.set_xticklabels(subsets, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(g)))
        ax.set_yticklabels([f"{m['test']}: {m['quantity']}" + (f" [{m['unit']}]" if m["unit"] else "") for m in g], fontsize=7)
        cb = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
        cb.set_label("|relative error| (%)" if kind == "relative" else "|error| (row's unit)", fontsize=8)
        ax.set_title("relative error (MTP − oracle)/|oracle|" if kind == "relative"
                     else "absolute error in the row's unit\n(RMSE of curves, or MTP − oracle; colours compare along a row)",
                     fontsize=9)
    axes[-1, 0].set_xlabel("training subset")
    top = 1.0
    if title:
        fig.suptitle(title, fontsize=10)
        top = 1.0 - 0.45 / fig.get_figheight()
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


# ------------------------------------------------------------------------------------------------- main
def parse_args(argv, name: str, default_config: Path, doc: str):
    p = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the small [quick] settings (minutes on a CPU) instead of [full]")
    p.add_argument("--config", default=str(default_config), help=f"TOML with [quick] and [full] tables (default {default_config.relative_to(REPO)})")
    p.add_argument("--out", default=None, help=f"output folder (default runs/experiments/{name}[_quick])")
    p.add_argument("--data", default=None, help="folder of the generated training set (default OUT/data); reused when complete")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Run experiment c; returns {"matrix": [...], "subsets": [...], "out": Path, "files": {...}}."""
    args = parse_args(argv, NAME, DEFAULT_CONFIG, __doc__)
    mode = "quick" if args.quick else "full"
    s = load_settings(args.config, mode, SCHEMA, _validate_c)
    out = Path(args.out or REPO / "runs" / "experiments" / (NAME + ("_quick" if args.quick else ""))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    from mtpjax.io.files import write_json

    write_json(out / "settings.json", {"mode": mode, "config": str(args.config), **s}, indent=1)
    t0 = time.perf_counter()
    log(f"{NAME} ({mode}): subsets {s['subsets']}, level {s['level']}, cutoff {s['cutoff']} Å, {s['max_steps']} steps; "
        f"tests {s['tests']}{' (quick)' if s['verify_quick'] else ''} -> {out}")
    setup_jax_cache(out)
    from mtpjax.oracles import make_oracle

    data_dir = Path(args.data).resolve() if args.data else out / "data"
    manifest, spec = ensure_data(s["data"], data_dir)
    element = manifest["element"]
    generated = set(manifest["subsets"]["EVERYTHING"]["subsets"])
    for sub in s["subsets"]:
        missing = [p for p in sub.split("+") if p != "EVERYTHING" and p not in generated]
        if missing:
            raise ExperimentError(f"{args.config}: [{mode}].subsets: {missing[0]} was not generated by {s['data']} "
                                  f"(its subsets: {sorted(generated)})")
    records = load_training(data_dir, element)
    runs = fit_all(records, out / "fits", [(sub, s["level"], [s["cutoff"]]) for sub in s["subsets"]], s, element,
                   data_id(manifest))
    fits = [fit_row(sub, runs[(sub, s["level"], s["cutoff"])]) for sub in s["subsets"]]
    write_csv(out / "fits.csv", fits)
    oracle = make_oracle(spec)
    rows = {}
    for k, sub in enumerate(s["subsets"]):
        log(f"verify {k + 1}/{len(s['subsets'])}: {sub}")
        rows[sub] = verify(runs[(sub, s["level"], s["cutoff"])], oracle, spec, out / "verify" / sub.replace("+", "-"), s,
                           element, f"MTP L{s['level']} {s['cutoff']:g} Å on {sub}")
    matrix = assemble_matrix(rows, s["exclude"])
    files = {"matrix": write_csv(out / "error_matrix.csv", matrix, ["test", "quantity", "unit", "kind", *s["subsets"]])}
    long = [{"subset": sub, **{k: r.get(k) for k in ("test", "quantity", "unit", "mtp", "oracle", "error", "relative_error")}}
            for sub, rs in rows.items() for r in rs]
    files["long"] = write_csv(out / "error_matrix_long.csv", long)
    files["fits"] = out / "fits.csv"
    files["png"] = plot_matrix(matrix, s["subsets"], out / "error_matrix.png",
                               f"Error matrix ({mode}): MTP level {s['level']}, cutoff {s['cutoff']:g} Å, "
                               f"{s['max_steps']} steps, against {manifest['oracle'].get('name', 'the oracle')}")
    wall = time.perf_counter() - t0
    write_json(out / "summary.json", {"mode": mode, "subsets": s["subsets"], "rows": len(matrix), "wall_s": wall,
                                      "fits": fits, "files": {k: str(v) for k, v in files.items()}}, indent=1)
    log(f"{NAME}: {len(matrix)} quantities × {len(s['subsets'])} subsets -> {files['png']} ({wall:.0f} s)")
    return {"matrix": matrix, "subsets": s["subsets"], "out": out, "files": files, "fits": fits, "wall_s": wall}


if __name__ == "__main__":
    try:
        main()
    except ExperimentError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
