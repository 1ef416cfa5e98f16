#!/usr/bin/env python
"""Optimiser x seed benchmark of ``mtpjax fit`` against MLIP-3 on ../shared/bench/fit (level 16, cutoff 6.5 Å).

    python scripts/bench_fit_optimizers.py [--optimizers lm lbfgs bfgs] [--seeds 0 1 2] [--jobs 2]
        [--workdir /tmp/mtpjax-bench-opt] [--json docs/benchmarks/fit_optimizers.json]
        [--figure docs/benchmarks/fit_loss_cpu.png] [-- EXTRA FIT OPTIONS]

Each fit is what a user types (``mtpjax fit TRAIN --level 16 --cutoff 6.5 --seed S --optimizer O``, every other
option at its default), run as a fresh process pinned to one core (``taskset``), ``--jobs`` of them at a time on
distinct cores. CPU time is the child's own user + sys time (``os.wait4``), import and compilation included (the
persistent compilation cache is off, ``MTPJAX_CACHE_DIR=0``, unless the environment sets it: a user's first run). Each
fitted potential, and MLIP-3's (``mlip3_l16_rc6p5.almtp``), is scored the same way (``bench_fit.score``: all cells, and
the README's metric, cells with d_min >= 2 Å). Writes a JSON file with every run (RMSEs, CPU, wall, steps, the loss
history against CPU seconds), a figure of loss against CPU seconds, and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fit import BENCH, REPO, score  # noqa: E402

MLIP_CPU_S = 2848.0  # MLIP-3's CPU seconds on this benchmark (its README)


def run_fit(opt: str, seed: int, core: int | None, work: Path, extra: list[str]) -> subprocess.Popen:
    work.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).with_name("mtpjax")), "fit", str(BENCH / "train.extxyz"), "--level", "16", "--cutoff", "6.5",
           "--seed", str(seed), "--optimizer", opt, "-o", str(work / "pot.almtp"), "-q"] + extra
    if core is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(core)] + cmd
    log = open(work / "fit.log", "w")
    env = {**os.environ, "MTPJAX_CACHE_DIR": os.environ.get("MTPJAX_CACHE_DIR", "0")}  # a first run: everything compiles
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    p.cmd, p.t0, p.work, p.key = cmd, time.perf_counter(), work, (opt, seed)
    return p


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--optimizers", nargs="+", default=["lm", "lbfgs", "bfgs"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="fits at a time, each pinned to its own core (default 2)")
    p.add_argument("--workdir", default="/tmp/mtpjax-bench-opt")
    p.add_argument("--json", default=str(REPO / "docs" / "benchmarks" / "fit_optimizers.json"))
    p.add_argument("--figure", default=str(REPO / "docs" / "benchmarks" / "fit_loss_cpu.png"))
    p.add_argument("--reuse", action="store_true", help="score runs whose result.json exists instead of fitting again")
    p.add_argument("--merge", nargs="+", default=None,
                   help="no fitting: merge the runs of these JSON files (from earlier invocations) into --json and --figure")
    p.add_argument("extra", nargs="*", help="further mtpjax fit options (after --)")
    args = p.parse_args(argv)
    from mtpjax.io import files
    from mtpjax.io.files import write_json

    if args.merge:
        docs = [json.loads(Path(f).read_text()) for f in args.merge]
        rows = [r for d in docs for r in d["runs"]]
        meta = {"merged": [d["meta"] for d in docs], "command": "python scripts/bench_fit_optimizers.py "
                + " ".join(argv if argv is not None else sys.argv[1:])}
        write_json(args.json, {"meta": meta, "runs": rows, "mlip3": docs[0]["mlip3"]}, indent=1)
        plot(rows, Path(args.figure))
        print(table(rows, docs[0]["mlip3"]))
        return 0
    from ase.io import read

    train, test = read(BENCH / "train.extxyz", ":"), read(BENCH / "test.extxyz", ":")
    work = Path(args.workdir)
    todo = [(o, s) for o in args.optimizers for s in args.seeds]
    runs, running, free = {}, [], list(range(max(args.jobs, 1)))
    while todo or running:
        while todo and free:
            opt, seed = todo.pop(0)
            w = work / f"{opt}_s{seed}"
            if args.reuse and (w / "pot.fit" / "result.json").exists():
                runs[(opt, seed)] = {"cpu_s": None, "wall_s": None, "cmd": None}
                continue
            core = free.pop(0)
            proc = run_fit(opt, seed, core if args.jobs > 1 or shutil.which("taskset") else None, w, args.extra)
            proc.core = core
            running.append(proc)
            print(f"started {opt} seed {seed} on core {core}", flush=True)
        if not running:
            continue
        pid, status, usage = os.wait4(-1, 0)
        proc = next(x for x in running if x.pid == pid)
        running.remove(proc)
        free.append(proc.core)
        wall = time.perf_counter() - proc.t0
        if status != 0:
            print(f"{proc.key}: fit failed (status {status}); see {proc.work / 'fit.log'}", flush=True)
            continue
        runs[proc.key] = {"cpu_s": usage.ru_utime + usage.ru_stime, "wall_s": wall,
                          "cmd": " ".join(Path(c).name if c.endswith("mtpjax") else c for c in proc.cmd)}
        print(f"finished {proc.key}: {runs[proc.key]['cpu_s']:.0f} s CPU, {wall:.0f} s wall", flush=True)
    rows = []
    for (opt, seed), info in sorted(runs.items()):
        w = work / f"{opt}_s{seed}"
        result = json.loads((w / "pot.fit" / "result.json").read_text())
        hist = []
        for line in (w / "pot.fit" / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if "history" in rec and "train" not in rec:
                hist = rec["history"]
        rows.append({"optimizer": opt, "seed": seed, **info, "steps": result["steps"], "fit_cpu_s": result["cpu_s"],
                     "first_step_s": result.get("first_step_s"), "stopped": result.get("stopped"),
                     "train": score(w / "pot.almtp", train), "test": score(w / "pot.almtp", test),
                     "loss": [v for _, v in hist], "step_cpu_s": result.get("step_cpu_s")})
    mlip = {"optimizer": "MLIP-3 (BFGS)", "seed": None, "cpu_s": MLIP_CPU_S,
            "train": score(BENCH / "mlip3_l16_rc6p5.almtp", train), "test": score(BENCH / "mlip3_l16_rc6p5.almtp", test)}
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": files.machine(),
            "command": "python scripts/bench_fit_optimizers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "jobs": args.jobs}
    write_json(args.json, {"meta": meta, "runs": rows, "mlip3": mlip}, indent=1)
    plot(rows, Path(args.figure))
    print(table(rows, mlip))
    return 0


def table(rows, mlip) -> str:
    key = "dmin>=2.0"
    out = ["| optimizer | seed | steps | CPU (s) | vs MLIP-3 | train E (meV/atom) | train F (eV/Å) | test E (meV/atom) | test F (eV/Å) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows + [mlip]:
        cpu = r.get("cpu_s")
        out.append(f"| {r['optimizer']} | {'' if r['seed'] is None else r['seed']} | {r.get('steps', '')} | "
                   f"{'' if cpu is None else f'{cpu:.0f}'} | {'' if cpu is None else f'{cpu / MLIP_CPU_S:.3f}'} | "
                   f"{r['train'][key]['energy_meV_per_atom']:.2f} | {r['train'][key]['forces_eV_per_A']:.4f} | "
                   f"{r['test'][key]['energy_meV_per_atom']:.2f} | {r['test'][key]['forces_eV_per_A']:.4f} |")
    return "\n".join(out)


def plot(rows, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    colors = {"lm": "C0", "lbfgs": "C1", "bfgs": "C2", "adam": "C3"}
    styles = ["-", "--", ":", "-."]
    for r in rows:
        if not r.get("step_cpu_s") or not r.get("loss"):
            continue
        n = min(len(r["loss"]), len(r["step_cpu_s"]))
        ax.semilogy(r["step_cpu_s"][:n], r["loss"][:n], styles[r["seed"] % 4], color=colors.get(r["optimizer"], "k"),
                    label=f"{r['optimizer']}, seed {r['seed']}")
    ax.set_xlabel("CPU seconds since the fit began (one core; packing and compilation included, reading not)")
    ax.set_ylabel("training loss (MLIP's objective)")
    ax.set_title("level 16, cutoff 6.5 Å, ../shared/bench/fit")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
