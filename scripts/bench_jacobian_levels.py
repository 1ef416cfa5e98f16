#!/usr/bin/env python
"""CPU cost of one Levenberg-Marquardt Jacobian pass (the normal equations J^T J, J^T r of all residuals) at levels
16, 20 and 24, on the first 100 cells of ../shared/bench/fit (cutoff 6.5 Å), compilation separately.

    MTPJAX_CACHE_DIR=0 taskset -c 0 python scripts/bench_jacobian_levels.py
"""
import time
from pathlib import Path
import jax, jax.numpy as jnp, numpy as np
from mtpjax import fit as F
from mtpjax.fit.jacobian import normal_equations, image_group
from mtpjax.basis import generate_basis
from mtpjax.data import load_records, pack_records
recs = load_records(str(Path(__file__).resolve().parents[2] / "shared" / "bench" / "fit" / "train.extxyz"), log=None)[:100]
batches, _ = pack_records(recs, 6.5)
lb = jax.tree.map(jnp.asarray, batches[0])
print("atoms", int((np.asarray(lb.batch.species) >= 0).sum()), "group", image_group(lb), lb.batch.nbrs.index.shape)
for level in (16, 20, 24):
    mtp = F.initial_mtp(generate_basis(level), 1, 1.6, 6.5, batches, seed=0)
    mtp = F.with_trainable(mtp, (mtp.radial_coeffs, mtp.species_coeffs, jnp.ones_like(mtp.moment_coeffs) * 1e-3))
    f = jax.jit(lambda m, b, g: normal_equations(m, b, F.LossConfig(), g), static_argnums=2)
    t = time.process_time(); jax.block_until_ready(f(mtp, lb, image_group(lb))); tc = time.process_time() - t
    t = time.process_time(); jax.block_until_ready(f(mtp, lb, image_group(lb))); tr = time.process_time() - t
    print(level, "n_basic", mtp.plan.n_basic, "n_B", mtp.plan.n_scalars, "radial", mtp.radial_coeffs.shape, "compile+run", round(tc, 1), "run", round(tr, 2), flush=True)
