"""Descriptor-space coverage of ENTROPY against RANDSPG at equal numbers of atoms (docs/experiments/entropy.md).

Two ``mtpjax generate`` runs of ``configs/generate_tiny.toml``: subset RANDSPG over space groups 1-230 (1-30 with
--quick) at 1-4 atoms per cell (OUT/randspg), then subset ENTROPY at 1-4 atoms per cell with its copies per atom
count set so that its atoms match the RANDSPG structures kept (OUT/entropy). Both sets are then described by the stage's own descriptor (the untrained level-10
MTP's basis functions, cutoff 1.7 d_nn, scaled by :func:`mtpjax.generate.entropy.calibration_scales`) and compared:

- S (:func:`mtpjax.generate.entropy.entropy`) of each set, and of random subsamples of equal atoms;
- nearest-neighbour distances δ_i in descriptor space, within each set, and from each atom to the other set;
- a 2D projection (principal components of the union);
- energies per atom above the oracle's hcp ground state (labels of the run).

    nice -n 10 .venv/bin/python scripts/entropy_coverage.py [--quick] [--out runs/entropy_coverage]

Writes OUT/randspg, OUT/entropy (the generate runs), OUT/coverage.json and docs/experiments/entropy_coverage(_quick).png.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    import ase.io

    from mtpjax.generate import entropy as E
    from mtpjax.generate import pipeline
    from mtpjax.generate.config import config_from_dict
    from mtpjax.io.tomlfile import read_toml
    from mtpjax.plotting import subplots

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="space groups 1-30, 60 Adam steps")
    ap.add_argument("--out", default=None, help="run folder (default runs/entropy_coverage[_quick])")
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args(argv)
    tag = "_quick" if a.quick else ""
    out = Path(a.out or ROOT / "runs" / f"entropy_coverage{tag}")

    base = read_toml(ROOT / "configs" / "generate_tiny.toml")
    rs = {**base["randspg"], "space_groups": [1, 30 if a.quick else 230], "n_atoms": [1, 4], "copies": 1}
    ex = {**base.get("executor", {}), "kind": "jax"}
    t0 = time.perf_counter()
    m0 = pipeline.run(config_from_dict({**base, "randspg": rs, "subsets": ["RANDSPG"], "executor": ex}), out / "randspg",
                      resume=a.resume, progress=False)
    wall0 = time.perf_counter() - t0
    copies = max(1, round(m0["subsets"]["RANDSPG"]["atoms"] / sum(range(1, 5))))
    ent = {"n_atoms": [1, 4], "copies": copies, "steps": 60 if a.quick else 200}
    cfg = config_from_dict({**base, "subsets": ["ENTROPY"], "entropy": ent, "executor": ex})
    t0 = time.perf_counter()
    m = pipeline.run(cfg, out / "entropy", resume=a.resume, progress=False)
    wall = time.perf_counter() - t0

    ref = m["reference"]
    e_cfg = cfg.entropy
    mtp = E.descriptor_mtp(e_cfg.descriptor_level, e_cfg.descriptor_cutoff * ref["nn_distance"], m["min_distance"],
                           ref["omega0"], seed=cfg.seed)
    scales = E.calibration_scales(mtp, ref["omega0"], ref["nn_distance"], cfg.seed)
    sets = {s: ase.io.read(out / s.lower() / f"{s}.extxyz", ":") for s in ("RANDSPG", "ENTROPY")}
    q = {s: E.descriptors(mtp, v, scales) for s, v in sets.items()}
    rng = np.random.default_rng(0)
    n_eq = min(len(x) for x in q.values())

    def nn(x, y=None):
        """ln of the nearest-neighbour distance of each row of x, within x (y None) or to y."""
        if y is None:
            return np.asarray(E.log_nn_distances(x))
        d2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        return 0.5 * np.log(d2.min(1))

    res = {"wall_s_randspg_run": round(wall0, 1), "wall_s_entropy_run": round(wall, 1), "timings_randspg": m0["timings"],
           "timings_entropy": m["timings"], "entropy_stats": m["subsets"]["ENTROPY"],
           "randspg_stats": {k: m0["subsets"]["RANDSPG"][k] for k in ("structures", "atoms", "attempted", "rejected")},
           "sets": {}}
    for s, x in q.items():
        sub = [float(E.entropy(x[rng.choice(len(x), n_eq, replace=False)])) for _ in range(5)]
        e = np.array([b.get_potential_energy() / len(b) for b in sets[s]]) - ref["energy"]
        other = q["ENTROPY" if s == "RANDSPG" else "RANDSPG"]
        res["sets"][s] = {"structures": len(sets[s]), "atoms": len(x), "S": float(E.entropy(x)),
                          f"S_{n_eq}_atoms_mean": float(np.mean(sub)), f"S_{n_eq}_atoms_std": float(np.std(sub)),
                          "median_ln_nn_within": float(np.median(nn(x))), "median_ln_nn_to_other_set": float(np.median(nn(x, other))),
                          "energy_above_ground_eV_per_atom": {"median": float(np.median(e)), "max": float(e.max()),
                                                              "min": float(e.min())}}
    union = np.concatenate(list(q.values()))
    res["S_union"] = float(E.entropy(union))
    (out / "coverage.json").write_text(json.dumps(res, indent=1))

    fig, (ax1, ax2) = subplots(1, 2, figsize=(11, 4.2))
    bins = np.linspace(min(nn(x).min() for x in q.values()), max(nn(x).max() for x in q.values()), 40)
    for s, x in q.items():
        ax1.hist(nn(x) / math.log(10), bins=bins / math.log(10), histtype="step", lw=1.8,
                 label=f"{s}: {len(x)} atoms, S = {res['sets'][s]['S']:.2f}")
    ax1.set_xlabel(r"log$_{10}$ nearest-neighbour distance $\delta_i$ in descriptor space (within the set)")
    ax1.set_ylabel("atoms")
    ax1.legend(fontsize=8)
    mean = union.mean(0)
    _, _, vt = np.linalg.svd(union - mean, full_matrices=False)
    for s, x in q.items():
        p = (x - mean) @ vt[:2].T
        ax2.scatter(p[:, 0], p[:, 1], s=6, alpha=0.6, label=s)
    ax2.set_xlabel("principal component 1")
    ax2.set_ylabel("principal component 2")
    ax2.legend(fontsize=8)
    fig.suptitle(f"Mg (Zhou EAM), 1-4 atoms per cell: descriptors = level-{e_cfg.descriptor_level} MTP basis, "
                 f"cutoff {e_cfg.descriptor_cutoff} d_nn", fontsize=9)
    fig.tight_layout()
    png = ROOT / "docs" / "experiments" / f"entropy_coverage{tag}.png"
    fig.savefig(png, dpi=110)
    print(json.dumps(res["sets"], indent=1), "\nS_union", res["S_union"], "\nwall", wall0, wall, "\n->", png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
