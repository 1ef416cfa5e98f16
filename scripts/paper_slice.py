"""experiments/c_error_matrix.py on an existing paper-scale data folder, with mtpjax fit's default optimiser.

    nice -n 10 .venv/bin/python scripts/paper_slice.py --config experiments/configs/c_paper_slice.toml \
        --data /tmp/mtpjax-paper-data --out /tmp/paper_slice/L16_rc6.5            # [full]: level 16, 6.5 Å
    ... --quick ... --out /tmp/paper_slice/L08_rc5.2                              # [quick]: level 8, 5.2 Å

Every option is c_error_matrix.py's; the script calls its ``main`` with two changes, both for reasons outside this
study (docs/study/paper_scale.md, "Work-arounds"):

1. **The data folder is used as it is.** ``mtpjax.experiment.prepare_data`` reuses a folder only when its manifest's
   ``config`` equals ``GenerateConfig.to_dict()`` of the recipe. ``to_dict()`` has carried the ``entropy`` and
   ``hessian`` tables since those (optional, off by default) stages were added, so a folder made from the same
   recipe before then no longer matches and would be generated again. Here the folder is taken when the two
   configs are equal once the keys absent from the manifest are dropped, and only if every dropped key holds its
   default value and names a stage that the recipe's ``subsets`` does not select; otherwise the script stops with
   an :class:`mtpjax.experiment.ExperimentError` (nothing is generated).
2. **Levenberg-Marquardt.** c_error_matrix's ``optimizer`` key takes lbfgs, bfgs or adam; ``mtpjax fit``'s default
   is lm. The fits here go through the same ``mtpjax.experiment.fit_plan_runs`` (:func:`mtpjax.sweep.run_sweep`) with
   ``optimizer="lm"``, so ``fits/fit_settings.json`` and each run's ``result.json`` say lm.

When the data's EVERYTHING.extxyz carries per-structure loss weights other than 1 (``weight=`` on its comment lines,
as scripts/paper_slice_weights.py writes them), or ``--variant`` is given, ``OUT/settings.json`` records them after
the run (``"variant"``: the name given by ``--variant``, ``weighted`` by default; ``"weights"``: structures per
weight; ``"data_dir"``), and scripts/paper_slice_tables.py names the fits ``EVERYTHING-<variant>`` (a control fit on
the same data with every weight 1 is named by giving ``--variant``). ``--variant`` is this script's one option of
its own; running the same command again after a finished run only rewrites ``settings.json`` (the fits and the
verification are read back).

Units: Å, eV; see experiments/c_error_matrix.py.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))

import c_error_matrix  # noqa: E402  (experiments/c_error_matrix.py)

from mtpjax import experiment as E  # noqa: E402
from mtpjax.experiment import ExperimentError  # noqa: E402
from mtpjax.io.files import atomic_write  # noqa: E402

#: The two options of c_error_matrix.py that record_weights needs.
PATHS = argparse.ArgumentParser(add_help=False)
PATHS.add_argument("--data")
PATHS.add_argument("--out")
#: This script's own option (taken out of the arguments before c_error_matrix.py sees them).
VARIANT = argparse.ArgumentParser(add_help=False)
VARIANT.add_argument("--variant", default=None, type=E.name_token,
                     help="name of the fits: SUBSET-<variant> (default: 'weighted' on data with loss weights other "
                          "than 1, none otherwise)")

#: The optimiser of the fits: mtpjax fit's default (mtpjax.fit.config.FitConfig.method).
OPTIMIZER = "lm"


def existing_data(recipe, data_dir, log=E.log, progress: bool = False) -> tuple[dict, dict]:
    """(manifest, oracle spec) of ``data_dir``, which must hold the data of generation recipe ``recipe`` (see the
    module docstring, 1); never generates. Raises :class:`ExperimentError` naming the keys that differ."""
    from mtpjax.generate import GenerateConfig, load_config

    recipe, data_dir = Path(recipe), Path(data_dir)
    cfg = load_config(recipe)
    want = json.loads(json.dumps(cfg.to_dict(), default=list))
    defaults = json.loads(json.dumps(GenerateConfig().to_dict(), default=list))
    manifest = E.read_manifest(data_dir)
    if manifest is None or not (data_dir / "EVERYTHING.extxyz").exists():
        raise ExperimentError(f"--data {data_dir}: no manifest.json and EVERYTHING.extxyz there")
    have = dict(manifest.get("config", {}))
    for d in (want, have):
        d.pop("executor", None)
    dropped = sorted(set(want) - set(have))
    selected = {s.lower() for s in want.get("subsets", [])}
    bad = [k for k in dropped if want[k] != defaults.get(k) or k in selected]
    diff = sorted(k for k in set(have) | (set(want) - set(dropped)) if have.get(k) != want.get(k))
    if bad or diff:
        raise ExperimentError(f"--data {data_dir}: its manifest does not record recipe {recipe} "
                              f"(differing keys: {diff + bad})")
    n = manifest.get("subsets", {}).get("EVERYTHING", {}).get("structures", "?")
    log(f"data: {data_dir} ({n} structures) holds the data of {recipe.name} (manifest config equal but for "
        f"{dropped}, absent there and at their defaults, stages not selected); used as it is")
    return manifest, cfg.oracle_spec()


def lm_fits(fit_plan_runs):
    """``fit_plan_runs`` with its ``optimizer`` set to :data:`OPTIMIZER` whatever the caller passes."""

    @functools.wraps(fit_plan_runs)
    def wrapped(*args, **kwargs):
        return fit_plan_runs(*args, **{**kwargs, "optimizer": OPTIMIZER})

    return wrapped


def data_weights(data_dir) -> dict:
    """{weight: structures} over ``data_dir/EVERYTHING.extxyz``, as the fits read them (mtpjax.data.load_records:
    ``info['weight']``, 1 when absent)."""
    from mtpjax.data import load_records

    counts: dict = {}
    for r in load_records(Path(data_dir) / "EVERYTHING.extxyz", log=lambda *a, **k: None):
        counts[r.weight] = counts.get(r.weight, 0) + 1
    return counts


def record_weights(data_dir, out, variant: str | None = None) -> None:
    """Add ``variant`` and the weights of ``data_dir``'s EVERYTHING.extxyz to ``out/settings.json`` when ``variant``
    is given or any structure's weight is not 1 (then ``variant`` defaults to ``weighted``; module docstring)."""
    counts = data_weights(data_dir)
    if variant is None:
        if set(counts) == {1.0}:
            return
        variant = "weighted"
    path = Path(out) / "settings.json"
    s = json.loads(path.read_text())
    s.update(variant=variant, weights={f"{w:g}": n for w, n in sorted(counts.items())}, data_dir=str(data_dir))
    atomic_write(path, json.dumps(s, indent=1) + "\n")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        own, argv = VARIANT.parse_known_args(argv)
    except SystemExit as err:  # a bad --variant: argparse said why
        return int(err.code or 2)
    E.prepare_data = existing_data
    E.fit_plan_runs = lm_fits(E.fit_plan_runs)
    rc = E.guarded("paper_slice", c_error_matrix.main, argv)
    known, _ = PATHS.parse_known_args(argv)
    if rc == 0 and known.data and known.out and (Path(known.out) / "settings.json").is_file():
        record_weights(known.data, known.out, own.variant)
    return rc


if __name__ == "__main__":
    sys.exit(main())
