"""Benchmark: the paper-scale Mg EVERYTHING pipeline (all space groups 1-230 x 1-10 atoms) with the Zhou 2004 EAM.

    .venv/bin/python scripts/bench_generate.py [--config configs/generate_mg.toml] [--out /tmp/mtpjax-bench-generate]
                                               [--doc docs/benchmarks/generate.md]

Runs :func:`mtpjax.generate.run` from scratch (the output folder is emptied first; JAX's persistent compilation
cache is not used, so compilation is included) and writes a markdown report with the command, the machine, the
time per stage and the counts per subset.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/generate_mg.toml")
    p.add_argument("--out", default="/tmp/mtpjax-bench-generate")
    p.add_argument("--doc", default="docs/benchmarks/generate.md")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    from mtpjax.generate import load_config, run
    from mtpjax.io import files

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    cfg = load_config(args.config)
    load0 = os.getloadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    m = run(cfg, out, progress=not args.no_progress)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    load1 = os.getloadavg()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    v = m["versions"]
    size = sum(f.stat().st_size for f in out.glob("*.extxyz")) / 2**20
    summary = (out / "summary.md").read_text().split("\n", 2)[2]
    doc = f"""# Benchmark: the paper-scale Mg training-set pipeline

Command (from the repository root; the output folder is emptied first, compilation included):

    .venv/bin/python scripts/bench_generate.py --config {args.config} --out {args.out}

- machine: {files.machine()}; load average before/after: {load0[0]:.2f} / {load1[0]:.2f} (other jobs share these cores)
- software: mtpjax {v['mtpjax']} (commit {commit}), jax {v['jax']}, pyxtal {v['pyxtal']}, spglib {v['spglib']}, ase {v['ase']}, numpy {v['numpy']}, Python {v['python']}
- oracle: {m['oracle'].get('name', m['oracle'])} (cutoff {float(m['oracle'].get('cutoff', 'nan')):.3f} Å); executors: relax/label {m['executor']['relax_label']}, pyxtal {m['executor']['randspg']}
- total: **{wall:.0f} s wall** ({wall / 60:.1f} min; main process CPU {cpu:.0f} s), {m['subsets']['EVERYTHING']['structures']} labelled structures
  ({m['subsets']['EVERYTHING']['atoms']} atoms) in EVERYTHING, {size:.0f} MiB of extxyz

{summary}
## Notes

- Wall times depend on what else runs on the machine (the load averages above). pyxtal (RANDSPG) runs in
  `randspg.workers` processes and is usually the largest stage; relaxation times include compiling a few shapes.
"""
    from mtpjax.io.files import atomic_write

    atomic_write(args.doc, doc)
    print(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
