#!/usr/bin/env python
"""Paper-scale fit: the EVERYTHING set of configs/generate_mg.toml (~25,000 structures, ~135,000 atoms), level 16,
cutoff 6.5 Å, with mtpjax's defaults.

    python scripts/bench_fit_paper.py [--data DIR] [--workdir /tmp/mtpjax-paper] [--level 16] [--cutoff 6.5]
        [--max-steps N] [--json docs/benchmarks/fit_paper.json] [-- EXTRA FIT OPTIONS]

1. The training set: ``DIR/EVERYTHING.extxyz`` when it exists, else ``mtpjax generate --config
   configs/generate_mg.toml --out DIR`` first (about 8 minutes on 2 cores).
2. ``mtpjax fit DIR/EVERYTHING.extxyz --level L --cutoff R`` as a fresh process (all cores; what a user types),
   timing its wall and CPU time (``os.wait4``) and peak resident memory; ``--max-steps`` limits the iterations (to
   measure the cost of one iteration at this scale without the whole fit).
3. Writes a JSON record: the command, wall, CPU, peak memory, steps, first-step (compilation) time, per-step time,
   the loss against CPU seconds (also plotted, beside the JSON as .png; ``subset``: the iterations on the random subset Levenberg-Marquardt starts with on
   data this large, with their loss and CPU seconds), and the training RMSE per subset.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/tmp/mtpjax-paper-data")
    p.add_argument("--workdir", default="/tmp/mtpjax-paper")
    p.add_argument("--level", type=int, default=16)
    p.add_argument("--cutoff", type=float, default=6.5)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--json", default=str(REPO / "docs" / "benchmarks" / "fit_paper.json"))
    p.add_argument("extra", nargs="*")
    args = p.parse_args(argv)
    from mtpjax.io import files
    from mtpjax.io.files import write_json
    exe = Path(sys.executable).with_name("mtpjax")
    data = Path(args.data)
    train = data / "EVERYTHING.extxyz"
    gen = None
    if not train.exists():
        t0 = time.perf_counter()
        subprocess.run([str(exe), "generate", "--config", str(REPO / "configs" / "generate_mg.toml"), "--out", str(data),
                        "--resume"], check=True)
        gen = time.perf_counter() - t0
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"l{args.level}_rc{args.cutoff:g}.almtp"
    cmd = [str(exe), "fit", str(train), "--level", str(args.level), "--cutoff", str(args.cutoff), "-o", str(out), "-q"]
    if args.max_steps:
        cmd += ["--max-steps", str(args.max_steps)]
    cmd += args.extra
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        print(f"fit failed (status {status})", file=sys.stderr)
        return 1
    result = json.loads((work / f"{out.stem}.fit" / "result.json").read_text())
    hist = []
    for line in (work / f"{out.stem}.fit" / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "history" in rec and "train" not in rec:
            hist = rec["history"]
    record = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": files.machine(),
              "command": "python scripts/bench_fit_paper.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "fit_command": " ".join(Path(c).name if c.endswith("mtpjax") else c for c in cmd),
              "generate_wall_s": gen, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
              "peak_rss_gib": usage.ru_maxrss / 2**20, "steps": result["steps"], "stopped": result.get("stopped"),
              "first_step_s": result.get("first_step_s"), "per_step_s": result.get("per_step_s"),
              "loss": [v for _, v in hist], "step_cpu_s": result.get("step_cpu_s"), "subset": result.get("subset"),
              "train_rmse": result["train"],
              "n_structures": result.get("n_train")}

    write_json(args.json, record, indent=1)
    plot(record, Path(args.json).with_suffix(".png"))
    print(json.dumps({k: v for k, v in record.items() if k not in ("loss", "step_cpu_s")}, indent=1))
    return 0


def plot(record: dict, path: Path) -> None:
    """The loss against CPU seconds: the iterations on the random subset (its loss) and on all the data."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    sub = record.get("subset")
    if sub:
        ax.semilogy(sub["step_cpu_s"], [v for _, v in sub["history"]], "o-", ms=3,
                    label=f"random subset ({sub['atoms']} atoms)")
    ax.semilogy(record["step_cpu_s"], record["loss"], "s-", ms=4, label=f"all data ({record['n_structures']} structures)")
    ax.set_xlabel("CPU seconds (start, reading, packing and compilation included)")
    ax.set_ylabel("loss")
    ax.set_title(f"paper-scale fit: {record['fit_command'].split(' -o ')[0].replace('mtpjax fit ', '').split('/')[-1]}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
