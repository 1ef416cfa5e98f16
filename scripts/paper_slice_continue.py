"""Levenberg-Marquardt on all of a training set, started from a given potential: is a fit converged, and is its
minimum the best one?

    # the same fit, continued with a 10x tighter stop
    nice -n 10 .venv/bin/python scripts/paper_slice_continue.py \
        --potential /tmp/paper_slice/L16_rc6.5/fits/runs/all_L16_rc6.5_s0/potential.mtpjax \
        --data /tmp/mtpjax-paper-data/EVERYTHING.extxyz --lm-ftol 1e-3 --max-steps 25 \
        --out /tmp/paper_slice2/continue_L16_rc6.5/potential.mtpjax
    # EVERYTHING fitted from another start: the RANDSPG fit of the same level and cutoff
    nice -n 10 .venv/bin/python scripts/paper_slice_continue.py \
        --potential /tmp/paper_slice/L16_rc6.5/fits/runs/RANDSPG_L16_rc6.5_s0/potential.mtpjax \
        --data /tmp/mtpjax-paper-data/EVERYTHING.extxyz --lm-ftol 1e-2 --max-steps 20 \
        --out /tmp/paper_slice2/from_randspg_L16_rc6.5/potential.mtpjax

``mtpjax fit`` stops LM when the loss fell by less than ``lm_ftol`` = 1 % over the last 5 iterations. A paper-scale
fit stopped so after 7 iterations on all the data (docs/study/paper_scale.md). This runs LM (``mtpjax fit``'s
defaults: the same loss and weights, no subset phase) from ``--potential`` on ``--data`` for at most
``--max-steps`` iterations with the given ``--lm-ftol``, and writes the new potential and, beside it,
what ``mtpjax fit`` writes (result.json: training RMSEs per subset after, and before as ``train_before``;
metrics.jsonl: the loss history; loss.png). From the fit itself with a tighter stop: if
the loss and errors barely move, the fit had converged. From another potential: a lower final loss means the
first fit's minimum was not the best one within reach.

Units: meV/atom, eV/Å, GPa (RMSEs); the loss as ``mtpjax fit`` prints it.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from mtpjax.data import load_records, pack_records
from mtpjax.fit import finish_run, fit
from mtpjax.fit.config import FitConfig
from mtpjax.fit.loss import errors
from mtpjax.model import load_mtp


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--potential", required=True, help="the fitted potential (.mtpjax) to start from")
    ap.add_argument("--data", required=True, help="its training data (the same file mtpjax fit was given)")
    ap.add_argument("--lm-ftol", type=float, default=1e-3)
    ap.add_argument("--max-steps", type=int, default=25)
    ap.add_argument("--out", required=True, help="the continued potential (.mtpjax); result.json beside it")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    mtp = load_mtp(args.potential)
    records = load_records(args.data)
    batches, subsets = pack_records(records, float(mtp.cutoff), max_batch_atoms=100_000)
    before = errors(mtp, batches, subsets)
    cfg = FitConfig(lm_ftol=args.lm_ftol, max_steps=args.max_steps)
    t0, c0 = time.perf_counter(), time.process_time()
    # the learning loop's warm-started refit (mtpjax.active.learn): mtpjax.fit.fit, then finish_run's outputs
    new, history = fit(mtp, batches, cfg, workdir=out.parent, log=print,
                       progress=lambda k, v: print(f"step {k}: loss {float(v):.9g}", flush=True))
    settings = {"start": str(args.potential), "data": str(args.data), "n_train": len(records), "train_before": before}
    result = finish_run(new, history, batches, subsets, None, cfg, out, out.parent, t0, c0, settings)
    print(f"{len(history)} steps in {result['wall_s']:.0f} s; loss {history[0][1]:.9g} -> {history[-1][1]:.9g}")
    for k in before:
        b, a = before[k], result["train"][k]
        print(f"{k:10s} energy {b['energy']:.3f} -> {a['energy']:.3f} meV/atom, forces {b['forces']:.4f} -> "
              f"{a['forces']:.4f} eV/Å, stress {b['stress']:.3f} -> {a['stress']:.3f} GPa")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
