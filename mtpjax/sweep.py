"""Sweeps: fits over levels x cutoffs x training subsets x seeds, resumable, with a table and plots.

Each run lives in ``OUT/runs/<name>/`` (potential, checkpoint, result.json). A finished run (its result.json
exists) is skipped; an interrupted one resumes from its checkpoint. ``OUT/results.csv`` has one row per run
and ``OUT/rmse_vs_level.png`` / ``OUT/rmse_vs_cutoff.png`` plot training errors as the paper's Figs 4a and 4b.
"""
from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

from .errors import MtpjaxError

COLUMNS = ["subset", "level", "cutoff", "seed", "n_basis", "steps", "wall_s", "cpu_s",
           "train_energy_meV", "train_forces", "train_stress_GPa", "test_energy_meV", "test_forces", "test_stress_GPa"]


def select_subset(records, subset: str):
    """Records of a subset: 'all', one tag, or a union 'A+B'."""
    if subset == "all":
        return list(records)
    tags = set(subset.split("+"))
    chosen = [r for r in records if r.subset in tags]
    if not chosen:
        known = sorted({r.subset for r in records})
        raise MtpjaxError(f"no training structure is tagged {subset!r}; the tags are {known}")
    return chosen


def run_name(subset, level, cutoff, seed) -> str:
    return f"{subset}_L{level:02d}_rc{cutoff:g}_s{seed}".replace("+", "-")


def run_sweep(train, test, out: Path, *, levels, cutoffs, subsets=("all",), seeds=(0,), cfg=None, n_species=1, species=None,
              init="mlip", max_batch_atoms=100000, log=print) -> list[dict]:
    """Fit every (subset, level, cutoff, seed); returns the table rows (also written to ``out/results.csv``)."""
    from .fit import train_potential

    out = Path(out)
    rows = []
    grid = list(itertools.product(subsets, levels, cutoffs, seeds))
    for k, (subset, level, cutoff, seed) in enumerate(grid):
        name = run_name(subset, level, cutoff, seed)
        work = out / "runs" / name
        done = work / "result.json"
        if done.exists():
            result = json.loads(done.read_text())
            log(f"[{k + 1}/{len(grid)}] {name}: done before, skipped")
        else:
            log(f"[{k + 1}/{len(grid)}] {name}")
            result = train_potential(select_subset(train, subset), test, level=level, cutoff=cutoff, seed=seed,
                                     n_species=n_species, species=species, cfg=cfg, workdir=work, output=work / "potential.almtp",
                                     resume=True, max_batch_atoms=max_batch_atoms, init=init, log=log)
        tr, te = result["train"].get("all", {}), result.get("test", {}).get("all", {})
        rows.append({"subset": subset, "level": level, "cutoff": cutoff, "seed": seed, "n_basis": result.get("n_basis"),
                     "steps": result["steps"], "wall_s": round(result["wall_s"], 2), "cpu_s": round(result["cpu_s"], 2),
                     "train_energy_meV": tr.get("energy"), "train_forces": tr.get("forces"), "train_stress_GPa": tr.get("stress"),
                     "test_energy_meV": te.get("energy"), "test_forces": te.get("forces"), "test_stress_GPa": te.get("stress")})
        write_table(rows, out / "results.csv")
    plot_sweep(rows, out)
    log(f"sweep: {len(rows)} runs -> {out / 'results.csv'}")
    return rows


def write_table(rows, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def plot_sweep(rows, out: Path) -> None:
    """Training RMSE (energy, forces) vs level for each cutoff, and vs cutoff for each level (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def mean(sel, key):
        vals = [r[key] for r in sel if r[key] is not None]
        return float(np.mean(vals)) if vals else np.nan

    for x_key, line_key, fname in (("level", "cutoff", "rmse_vs_level.png"), ("cutoff", "level", "rmse_vs_cutoff.png")):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
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
        plt.close(fig)
