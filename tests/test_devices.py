"""Data-parallel fitting over several devices gives the single-device result (CPU devices forced by XLA_FLAGS)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from conftest import SHARED, need

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from mtpjax import fit as F
    from mtpjax.basis import generate_basis
    from mtpjax.data import load_records, pack_for_devices, unstack

    records = load_records(sys.argv[1])[:16]
    stacked, subsets = pack_for_devices(records, 5.0, 2)
    mtp0 = F.initial_mtp(generate_basis(8), 1, 2.0, 5.0, unstack(stacked), seed=3)
    # one exact linear solve at the start: later re-solves amplify 1e-16 differences of summation order through
    # ill-conditioned normal equations (to ~1e-7), on any number of devices
    cfg = F.FitConfig(method="lbfgs", max_steps=5, linear_solve_at=(0,))
    quiet = lambda m: None
    sharded = F.shard_over_devices(stacked)
    two, h2 = F.fit(mtp0, [sharded], cfg, log=quiet)
    one, h1 = F.fit(mtp0, [stacked], cfg, log=quiet)
    ref, h0 = F.fit(mtp0, unstack(stacked), cfg, log=quiet)
    diff = lambda a, b: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(F.trainable(a), F.trainable(b)))
    print(json.dumps({"devices": jax.device_count(), "placed_on": len(sharded.weight.sharding.device_set),
                      "two_vs_one": diff(two, one), "two_vs_list": diff(two, ref),
                      "loss": [h2[-1][1], h1[-1][1], h0[-1][1]], "first": h2[0][1]}))
    """
)


def test_two_devices_match_one(tmp_path):
    train = need(SHARED / "bench" / "fit" / "train.extxyz")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(train)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["devices"] == 2 and r["placed_on"] == 2
    assert r["loss"][0] < r["first"]  # it did optimise
    assert r["two_vs_one"] < 1e-10
    assert r["two_vs_list"] < 1e-10
