"""Sweeps: fits over levels x cutoffs x training subsets x seeds, resumable, with a table and plots.

Each run lives in ``OUT/runs/<name>/`` (potential, checkpoint, result.json). Runs of one level train together in
one compiled program (:func:`mtpjax.fit.train_potentials`; checkpoints in ``OUT/groups/``). A finished run (its result.json
exists) is skipped; an interrupted one resumes from its checkpoint. ``OUT/results.csv`` has one row per run
and ``OUT/rmse_vs_level.png`` / ``OUT/rmse_vs_cutoff.png`` plot training errors as the paper's Figs 4a and 4b.
"""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
from pathlib import Path

from .errors import MtpjaxError
from .io.files import atomic_open, write_json

COLUMNS = ["subset", "level", "cutoff", "seed", "n_basis", "steps", "wall_s", "cpu_s",
           "train_energy_meV", "train_forces", "train_stress_GPa", "test_energy_meV", "test_forces", "test_stress_GPa"]


def select_subset(records, subset: str):
    """Records of a subset: 'all' (or 'EVERYTHING', the generator's name for the union), one tag, or a union 'A+B'.
    A tag 'EVERYTHING' on the records themselves is taken as it is."""
    if subset == "all" or (subset == "EVERYTHING" and not any(r.subset == "EVERYTHING" for r in records)):
        return list(records)
    tags = set(subset.split("+"))
    chosen = [r for r in records if r.subset in tags]
    if not chosen:
        known = sorted({r.subset for r in records})
        raise MtpjaxError(f"no training structure is tagged {subset!r}; the tags are {known}")
    return chosen


def run_name(subset, level, cutoff, seed) -> str:
    return f"{subset}_L{level:02d}_rc{cutoff:g}_s{seed}".replace("+", "-")


GROUPINGS = ("auto", "level", "seed", "none")


def _groups(subsets, levels, cutoffs, seeds, group: str, by_seed: bool = False):
    """The runs as lists of (subset, level, cutoff, seed) trained together. ``by_seed``: runs of different seeds are
    never together (a validation split or a minibatch order depends on the seed)."""
    if group not in GROUPINGS:
        raise MtpjaxError(f"unknown grouping {group!r}; choose one of {GROUPINGS}")
    if group == "level":
        groups = [[(s, lv, c, sd) for c in cutoffs for sd in seeds] for s in subsets for lv in levels]
    elif group == "seed":
        groups = [[(s, lv, c, sd) for sd in seeds] for s in subsets for lv in levels for c in cutoffs]
    else:
        groups = [[run] for run in itertools.product(subsets, levels, cutoffs, seeds)]
    if by_seed:
        groups = [[m for m in g if m[3] == sd] for g in groups for sd in dict.fromkeys(m[3] for m in g)]
    return groups


def _group_dir(out: Path, members) -> Path:
    """The work folder (checkpoint) of a group of runs: named by its subset, level and members."""
    import hashlib

    names = [run_name(*m) for m in members]
    tag = hashlib.sha256("|".join(names).encode()).hexdigest()[:8]
    return out / "groups" / f"{members[0][0]}_L{members[0][1]:02d}_{len(members)}_{tag}".replace("+", "-")


def _train_group(members, train, test, out: Path, cfg, n_species, species, init, max_batch_atoms, log, rmin=None) -> None:
    """Fit the pending runs of one group together (one compiled program, :func:`mtpjax.fit.train_potentials`) and
    write each run's outputs in ``out/runs/<name>/``; the group's checkpoint is in ``out/groups/``."""
    from .fit import Run, train_potentials

    subset, level = members[0][0], members[0][1]
    runs = []
    for _, _, cutoff, seed in members:
        name = run_name(subset, level, cutoff, seed)
        runs.append(Run(cutoff, seed, out / "runs" / name / "potential.almtp", out / "runs" / name, name))
    train_potentials(select_subset(train, subset), test, runs, level=level, n_species=n_species, species=species, cfg=cfg,
                     workdir=_group_dir(out, members), resume=True, max_batch_atoms=max_batch_atoms, init=init, rmin=rmin,
                     cache_dir=out / "cache", progress=_step_lines(cfg, log), log=log)


def _step_lines(cfg, log):
    """``progress(k, loss)`` for one fit of the sweep: "fit: step K/MAX, loss L, T s" through ``log`` at the first
    step, every few steps or seconds and the last (:func:`mtpjax.progress.fit_progress`): long fits are not silent."""
    from .progress import fit_progress

    return fit_progress(cfg.max_steps, quiet=False, bar=False, emit=log)[1]


def run_sweep(train, test, out: Path, *, levels, cutoffs, subsets=("all",), seeds=(0,), cfg=None, n_species=1, species=None,
              init=None, max_batch_atoms=None, rmin=None, group: str = "auto", log=print) -> list[dict]:
    """Fit every (subset, level, cutoff, seed); returns the table rows (also written to ``out/results.csv``).

    ``group``: which runs train together in one compiled program (:func:`mtpjax.fit.train_potentials`): "level" (all cutoffs
    and seeds of a subset and level; the data is packed at the largest cutoff), "seed" (the seeds of each cutoff),
    or "none" (one fit after another), or "auto" (default): "level" for the gradient optimisers, whose one vmapped
    step advances the whole group, and "seed" for Levenberg-Marquardt, which takes its models' steps in turn (a group
    shares the compiled programs and the packed data, but a model of a smaller cutoff would visit the pairs up to the
    group's largest one for nothing). Grouped runs are charged an equal share of their group's time. ``init``,
    ``max_batch_atoms`` and ``rmin`` (Å, below every cutoff) default to :class:`mtpjax.fit.config.TrainOptions`'s.
    """
    from .fit import FitConfig, make_method, records_digest, train_potential
    from .fit.config import TrainOptions

    out = Path(out)
    cfg = cfg or FitConfig()
    defaults = TrainOptions()
    init = defaults.init if init is None else init
    max_batch_atoms = defaults.max_batch_atoms if max_batch_atoms is None else max_batch_atoms
    rmin = defaults.rmin if rmin is None else rmin
    settings = {"fit": dataclasses.asdict(cfg), "init": init, "max_batch_atoms": max_batch_atoms,
                "n_species": n_species, "species": list(species) if species else None,
                "data": {"train": records_digest(train), "test": records_digest(test or [])}}
    if rmin is not None:  # (absent from the sweep.json of sweeps run before rmin was an option)
        settings["rmin"] = rmin
    check_settings(out, settings)
    rows = []
    method = make_method(cfg)
    by_seed = cfg.validation_fraction > 0 or not getattr(method, "full_batch", True)
    if group == "auto":
        group = "seed" if getattr(method, "eliminates_linear", False) else "level"
    groups = _groups(subsets, levels, cutoffs, seeds, group, by_seed)
    n_runs, k = sum(map(len, groups)), 0
    for members in groups:
        pending = [m for m in members if not (out / "runs" / run_name(*m) / "result.json").exists()]
        if len(pending) > 1:
            log(f"[{k + 1}-{k + len(members)}/{n_runs}] {len(pending)} runs together: {[run_name(*m) for m in pending]}")
            _train_group(pending, train, test, out, cfg, n_species, species, init, max_batch_atoms, log, rmin)
        for subset, level, cutoff, seed in members:
            k += 1
            name = run_name(subset, level, cutoff, seed)
            work = out / "runs" / name
            done = work / "result.json"
            if (subset, level, cutoff, seed) not in pending:
                log(f"[{k}/{n_runs}] {name}: done before, skipped")
            elif len(pending) == 1:
                log(f"[{k}/{n_runs}] {name}")
                train_potential(select_subset(train, subset), test, level=level, cutoff=cutoff, seed=seed, n_species=n_species,
                                species=species, cfg=cfg, workdir=work, output=work / "potential.almtp", resume=True,
                                max_batch_atoms=max_batch_atoms, init=init, rmin=rmin, progress=_step_lines(cfg, log),
                                log=log)
            result = json.loads(done.read_text())
            tr, te = result["train"].get("all", {}), result.get("test", {}).get("all", {})
            rows.append({"subset": subset, "level": level, "cutoff": cutoff, "seed": seed, "n_basis": result.get("n_basis"),
                         "steps": result["steps"], "wall_s": round(result["wall_s"], 2), "cpu_s": round(result["cpu_s"], 2),
                         "train_energy_meV": tr.get("energy"), "train_forces": tr.get("forces"),
                         "train_stress_GPa": tr.get("stress"), "test_energy_meV": te.get("energy"),
                         "test_forces": te.get("forces"), "test_stress_GPa": te.get("stress")})
            write_table(rows, out / "results.csv")
    plot_sweep(rows, out)
    log(f"sweep: {len(rows)} runs -> {out / 'results.csv'}")
    return rows


def check_settings(out: Path, settings: dict) -> None:
    """Record the fit settings of a sweep, with digests of its training and test data (``settings["data"]``), in
    ``out/sweep.json``; refuse to resume a sweep whose finished runs were fitted with other settings or data (the
    file and what differs are named), since its finished runs would be skipped and their old errors reported."""
    from .fit.checkpoint import flatten, jsonable

    settings = jsonable(settings)
    path = out / "sweep.json"
    if path.exists():
        a, b = flatten(json.loads(path.read_text())), flatten(settings)
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if diff:
            data = {"data.train": "training", "data.test": "test"}
            detail = [f"the {data[k]} data differ (digest {str(a.get(k))[:16]} in sweep.json != {str(b.get(k))[:16]} now)"
                      for k in diff if k in data]
            detail += [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff if k not in data][:5]
            raise MtpjaxError(f"{path}: the sweep in {out} was run with other settings or data ({'; '.join(detail)}); "
                              "use another output folder, or delete it to start afresh")
        return
    write_json(path, settings, indent=1)


def write_table(rows, path: Path) -> None:
    with atomic_open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def plot_sweep(rows, out: Path) -> None:
    """Training RMSE (energy, forces) vs level for each cutoff, and vs cutoff for each level (mean over seeds)."""
    import numpy as np

    from .plotting import subplots

    def mean(sel, key):
        vals = [r[key] for r in sel if r[key] is not None]
        return float(np.mean(vals)) if vals else np.nan

    for x_key, line_key, fname in (("level", "cutoff", "rmse_vs_level.png"), ("cutoff", "level", "rmse_vs_cutoff.png")):
        fig, axes = subplots(1, 2, figsize=(10, 4))
        for (subset, line), _ in itertools.groupby(sorted(((r["subset"], r[line_key]) for r in rows))):
            sel = [r for r in rows if r["subset"] == subset and r[line_key] == line]
            xs = sorted({r[x_key] for r in sel})
            for ax, key in zip(axes, ("train_energy_meV", "train_forces")):
                ax.plot(xs, [mean([r for r in sel if r[x_key] == x], key) for x in xs], "o-",
                        label=f"{subset}, {line_key} {line:g}")
        for ax, ylabel in zip(axes, ("energy RMSE (meV/atom)", "force RMSE (eV/Å)")):
            ax.set_xticks(sorted({r[x_key] for r in rows}))
            ax.set_xlabel("level" if x_key == "level" else "cutoff (Å)")
            ax.set_ylabel(f"training {ylabel}")
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=110)
