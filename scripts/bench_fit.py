#!/usr/bin/env python
"""Fitting benchmark against MLIP-3 on ../shared/bench/fit (level 16, cutoff 6.5 Å).

    python scripts/bench_fit.py [--max-steps 1000] [--out docs/benchmarks/fit.md] [--potential FITTED.almtp]

Runs ``mtpjax fit`` as a subprocess (timing its wall and CPU time, user+sys over all threads), then
scores the fitted potential and MLIP-3's own fitted potential the same way: RMSE of energy per atom
(meV/atom) and force components (eV/Å) over all cells and over the cells whose shortest interatomic
distance (periodic images included) is at least 2.0 Å (the metric of the benchmark's README).
``--potential`` scores an existing fit instead of running one.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO.parent / "shared" / "bench" / "fit"


def min_distance(atoms) -> float:
    from mtpjax.neighbors import pairs

    i, j, s = pairs(atoms.positions, atoms.cell.array, atoms.pbc, 3.0)
    if len(i) == 0:
        return np.inf
    d = atoms.positions[j] - atoms.positions[i] + s @ atoms.cell.array
    return float(np.linalg.norm(d, axis=1).min())


def score(potential, atoms_list) -> dict:
    from mtpjax.calculator import MTPCalculator

    ev = MTPCalculator.from_file(potential, species=["Mg"]).evaluator
    res = ev.many([(a.positions, a.cell.array, a.pbc, np.zeros(len(a), int)) for a in atoms_list])
    out = {}
    for name, keep in (("all", [True] * len(atoms_list)), ("dmin>=2.0", [min_distance(a) >= 2.0 for a in atoms_list])):
        idx = [k for k, ok in enumerate(keep) if ok]
        de = [(res[k].energy - atoms_list[k].get_potential_energy()) / len(atoms_list[k]) * 1000 for k in idx]
        df = np.concatenate([(res[k].forces - atoms_list[k].get_forces()).ravel() for k in idx])
        out[name] = {"cells": len(idx), "energy_meV_per_atom": float(np.sqrt(np.mean(np.square(de)))),
                     "forces_eV_per_A": float(np.sqrt(np.mean(df**2)))}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-steps", type=int, default=None, help="passed to mtpjax fit (default: the optimiser's own)")
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks" / "fit.md"))
    p.add_argument("--workdir", default="/tmp/mtpjax-bench-fit")
    p.add_argument("--potential", default=None, help="score this fitted potential instead of fitting")
    p.add_argument("--fit-log", default=None, help="with --potential: the fit's result.json (for its timings)")
    p.add_argument("--cores", default="0", help="taskset CPU list for the fit (default 0: one core, as MLIP's run); '' = unpinned")
    p.add_argument("fit_args", nargs="*", help="further options for mtpjax fit (after --)")
    args = p.parse_args(argv)
    from ase.io import read

    train, test = read(BENCH / "train.extxyz", ":"), read(BENCH / "test.extxyz", ":")
    cmd = None
    if args.potential is None:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
        pot = work / "l16_rc6p5.almtp"
        cmd = [str(Path(sys.executable).with_name("mtpjax")), "fit", str(BENCH / "train.extxyz"), "--level", "16",
               "--cutoff", "6.5", "-o", str(pot), "-q"] + args.fit_args
        if args.max_steps is not None:
            cmd += ["--max-steps", str(args.max_steps)]
        if args.cores and shutil.which("taskset"):  # single-threaded like MLIP's run: no thread-pool spinning
            cmd = ["taskset", "-c", args.cores] + cmd
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        result = json.loads((work / "l16_rc6p5.fit" / "result.json").read_text())
    else:
        pot = Path(args.potential)
        result = json.loads(Path(args.fit_log).read_text()) if args.fit_log else {}
        wall, cpu = result.get("wall_s"), result.get("cpu_s")
    ours = {"train": score(pot, train), "test": score(pot, test)}
    mlip = {"train": score(BENCH / "mlip3_l16_rc6p5.almtp", train), "test": score(BENCH / "mlip3_l16_rc6p5.almtp", test)}
    lines = [
        "# Fitting benchmark: mtpjax against MLIP-3 on the same data (level 16, cutoff 6.5 Å)",
        "",
        f"- Command: `python scripts/bench_fit.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        + (f" (fit: `{' '.join(Path(c).name if c.endswith('mtpjax') else c for c in cmd)}`)" if cmd else ""),
        f"- Date: {datetime.datetime.now().isoformat(timespec='seconds')}; machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; python {platform.python_version()}",
        "- Data: `../shared/bench/fit` (train 400 cells, test 100 cells; labels from the Sun 2006 EAM).",
        "- Metric: RMSE of energy per atom and of force components; `dmin>=2.0` = the cells whose shortest distance",
        "  (periodic images included) is at least 2.0 Å, the metric of the benchmark's README.",
        f"- mtpjax: {result.get('steps', '?')} {result.get('optimizer', '')} steps; wall {wall:.0f} s, CPU (user+sys, all threads) {cpu:.0f} s, "
        "compilation included." if wall else "- mtpjax: timings not recorded.",
        f"- mtpjax's first step (compilation and the first linear solve) took {result['first_step_s']:.1f} s of wall time, "
        f"the others {result['per_step_s'] * 1000:.0f} ms each on average (compilation ≈ {result['compile_s']:.1f} s)."
        if "first_step_s" in result else "- mtpjax: compile time not recorded (a fit from before it was).",
        "- MLIP-3 (from the benchmark's README): 2848 s CPU (user), single-threaded, 75 + 1000 BFGS iterations.",
        "",
        "| potential | set | cells | E RMSE (meV/atom) | F RMSE (eV/Å) |",
        "|---|---|---|---|---|",
    ]
    for name, res in (("mtpjax", ours), ("MLIP-3", mlip)):
        for split in ("train", "test"):
            for subset, e in res[split].items():
                lines.append(f"| {name} | {split} ({subset}) | {e['cells']} | {e['energy_meV_per_atom']:.2f} | {e['forces_eV_per_A']:.4f} |")
    if cpu:
        lines += ["", f"CPU time ratio mtpjax / MLIP-3: {cpu / 2848:.2f} (target ≤ 0.10)."]
    from mtpjax.io.files import atomic_write

    atomic_write(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
