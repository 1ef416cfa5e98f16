#!/usr/bin/env python
"""CPU time of one loss value + gradient: the fast gradient (mtpjax.fit.gradient) against plain autodiff.

    python scripts/bench_fit_gradient.py [--level 16] [--cutoff 6.5] [--repeats 10] [--out docs/benchmarks/fit_gradient.md]

Data: ``../shared/bench/fit/train.extxyz`` (400 cells, 1758 atoms), packed into one batch as ``mtpjax fit`` does; the
MTP is the fit's starting point after its first linear solve. Both are timed in the same process, alternating, as
CPU time (user+sys of all threads, ``time.process_time``) per call after compilation; the median is reported. The
two gradients are compared as a check.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO.parent / "shared" / "bench" / "fit"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--level", type=int, default=16)
    p.add_argument("--cutoff", type=float, default=6.5)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default=None, help="markdown file for the result (default: print only)")
    args = p.parse_args(argv)

    import dataclasses

    import jax
    import jax.numpy as jnp

    from mtpjax import fit as F
    from mtpjax.basis import generate_basis
    from mtpjax.data import load_records, pack_records

    records = load_records(BENCH / "train.extxyz")
    batches, _ = pack_records(records, args.cutoff, max_batch_atoms=100000)
    batches = [jax.tree.map(jnp.asarray, lb) for lb in batches]
    n = len(records)
    mtp = F.initial_mtp(generate_basis(args.level), 1, F.default_rmin(batches, args.cutoff), args.cutoff, batches)
    mtp = F.linear_solve(mtp, batches, F.LossConfig(), n)
    theta = (mtp.radial_coeffs, mtp.species_coeffs, mtp.moment_coeffs)
    fns = {}
    for name, fast in (("plain autodiff", False), ("fast gradient", True)):
        cfg = dataclasses.replace(F.LossConfig(), fast_gradient=fast)
        fns[name] = jax.jit(jax.value_and_grad(lambda t, cfg=cfg: F.loss(F.with_trainable(mtp, t), batches, cfg, n)))
    results = {k: f(theta) for k, f in fns.items()}
    jax.block_until_ready(results)
    (v0, g0), (v1, g1) = results.values()
    flat0, flat1 = (jnp.concatenate([x.ravel() for x in g]) for g in (g0, g1))
    rel = float(jnp.max(jnp.abs(flat0 - flat1)) / jnp.max(jnp.abs(flat0)))
    cpu = {k: [] for k in fns}
    for _ in range(args.repeats):
        for k, f in fns.items():
            c0 = time.process_time()
            jax.block_until_ready(f(theta))
            cpu[k].append(time.process_time() - c0)
    med = {k: float(np.median(v)) for k, v in cpu.items()}
    n_atoms = int(batches[0].batch.positions.shape[0])
    lines = [
        "# Loss gradient: the fast gradient against plain autodiff",
        "",
        f"- Command: `python scripts/bench_fit_gradient.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- Date: {datetime.datetime.now().isoformat(timespec='seconds')}; machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; python {platform.python_version()}, jax {jax.__version__}, backend {jax.default_backend()}",
        f"- Data: `../shared/bench/fit/train.extxyz`, {n} cells packed into {n_atoms} atom slots; level {args.level}, "
        f"cutoff {args.cutoff} Å, {int(batches[0].batch.nbrs.index.shape[1])} neighbour slots per atom.",
        f"- CPU time (user+sys, all threads) per loss value + gradient, median of {args.repeats}, timed alternately in one process.",
        "",
        "| gradient | CPU per call (s) | relative to plain |",
        "|---|---|---|",
    ] + [f"| {k} | {v:.3f} | {v / med['plain autodiff']:.2f} |" for k, v in med.items()] + [
        "",
        f"Loss values: {float(v0):.15g} (plain), {float(v1):.15g} (fast); largest difference of the gradients relative "
        f"to the gradient's largest entry: {rel:.1e}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        from mtpjax.io.files import atomic_write

        atomic_write(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
