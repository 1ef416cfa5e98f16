"""ENTROPY against RANDSPG-family training sets at equal numbers of atoms: verification matrix and descriptor
coverage, for Mg and Al with the Zhou 2004 EAM as the oracle (issue 16, item 4; docs/experiments/entropy_head_to_head.md).

For each element three training sets of the same number of atoms N (the ENTROPY set's):

- ``ENTROPY``: the ENTROPY stage of ``mtpjax generate`` (``configs/generate_tiny.toml`` with ``subsets = ["ENTROPY"]``,
  1-4 atoms per cell, 91 copies per atom count, 200 Adam steps; the settings of ``scripts/entropy_coverage.py``).
  Mg reuses ``runs/entropy_coverage/entropy`` when it is there; otherwise (and for Al) it is generated into OUT.
- the RANDSPG family, subsampled (seeded) to N atoms: Mg: ``RANDSPG`` over space groups 1-230 at 1-4 atoms
  (``runs/entropy_coverage/randspg``, unrelaxed, labelled by the oracle); Al: ``EVERYTHING`` of the Al quickstart
  (``runs/quickstart_al/generate``: RANDSPG over groups 168-230 with its relaxations and deformations).
- ``UNION``: N/2 atoms of each of the two (seeded subsamples), N atoms in all.
- with ``--energy-weights W ...``, one more set per W, ``ENTROPY-E<W>``: the same ENTROPY generation with
  ``energy_weight = W`` (1/eV; Subramanyam & Perez's E - kS with k = 1/W eV, the oracle's energy per atom), generated
  into OUT/<El>/entropy_e<W> and subsampled (seeded) to N atoms.

Each set is fitted with the quickstart's [fit] table (``configs/quickstart.toml`` / ``quickstart_al.toml``: level 16,
cutoff 5.5 Å from the oracle's range, Levenberg-Marquardt, 200 steps, seed 0, 10% of the structures held out) by
:func:`mtpjax.fit.train_potential`, and verified against the oracle by :func:`mtpjax.experiment.verify_run` (the
suite's quick mode; tests: ``--tests``). The rows are put side by side by ``experiments/c_error_matrix.py``'s
:func:`assemble_matrix` / :func:`matrix_figure`. Coverage: the ENTROPY stage's own descriptor (untrained level-10 MTP
basis, cutoff 1.7 d_nn, :func:`mtpjax.generate.entropy.calibration_scales`) of every set: S, nearest-neighbour
distances within each set, a PCA projection of the union, and the distance from the atoms of ideal hcp/fcc/bcc
crystals at 0.6-1.4 V0 to the nearest training atom.

    nice -n 10 .venv/bin/python scripts/entropy_head_to_head.py --fit-seeds 0 1 [--out /tmp/entropy_h2h] [--elements Mg Al] \
        [--energy-weights 1]

Writes OUT/<El>/{entropy,sets,fits,verify}, OUT/results.json and, in docs/experiments/,
entropy_head_to_head[_TAG]_{matrix.csv,sets.csv,summary.csv,matrix_Mg.png,matrix_Al.png,coverage.png} (``--tag``). Resumable: generation from its
checkpoints, finished fits (result.json) and verifications (done.json) are reused.
Units: eV, Å, GPa, meV/atom, J/m².
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from mtpjax.experiment import name_token

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "experiments"
PREFIX = "entropy_head_to_head"
TESTS = ("eos", "strain", "elastic", "vacancy", "planar")
SETS = ("ENTROPY", "RANDSPG-family", "UNION")


def energy_set_name(w: float) -> str:
    """The set generated with ``energy_weight = w`` (1/eV)."""
    return f"ENTROPY-E{w:g}"


def set_names(energy_weights=()) -> tuple:
    """The sets compared: :data:`SETS`, then one E - kS set per energy weight."""
    return SETS + tuple(energy_set_name(w) for w in energy_weights)


CASES = {
    "Mg": {"config": ROOT / "configs" / "quickstart.toml",
           "entropy": ROOT / "runs" / "entropy_coverage" / "entropy",
           "family": ROOT / "runs" / "entropy_coverage" / "randspg" / "RANDSPG.extxyz",
           "family_name": "RANDSPG (groups 1-230, 1-4 atoms)"},
    "Al": {"config": ROOT / "configs" / "quickstart_al.toml",
           "entropy": None,
           "family": ROOT / "runs" / "quickstart_al" / "generate" / "EVERYTHING.extxyz",
           "family_name": "quickstart EVERYTHING (RANDSPG groups 168-230 + relaxations + deformations)"},
}


def column_name(name: str, fit_seed: int) -> str:
    """The matrix column of a set fitted with ``fit_seed`` (seed 0: the set's name)."""
    return name if fit_seed == 0 else f"{name} s{fit_seed}"


def summarise(matrix, fit_seeds, sets=SETS) -> list:
    """Per fit seed and per test (and ``all`` tests): the rows with a finite error in every set, the rows where each
    set has the smallest |error|, and the median over rows of |error(set)| / |error(ENTROPY)| (> 1: ENTROPY better)."""
    out = []
    tests = list(dict.fromkeys(m["test"] for m in matrix)) + ["all"]
    for fs in fit_seeds:
        for t in tests:
            rows = [m for m in matrix if t in ("all", m["test"])]
            mags = {n: np.abs(np.array([m[column_name(n, fs)] for m in rows], dtype=float)) for n in sets}
            ok = np.all([np.isfinite(v) for v in mags.values()], axis=0)
            line = {"fit_seed": fs, "test": t, "rows": int(ok.sum())}
            best = np.argmin(np.stack([mags[n][ok] for n in sets]), axis=0) if ok.any() else np.array([], int)
            for i, n in enumerate(sets):
                line[f"best_{n}"] = int((best == i).sum())
            for n in sets[1:]:
                with np.errstate(divide="ignore", invalid="ignore"):
                    r = mags[n][ok] / mags["ENTROPY"][ok]
                r = r[np.isfinite(r)]
                line[f"median_ratio_{n}_to_ENTROPY"] = float(np.median(r)) if r.size else math.nan
            out.append(line)
    return out


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def subsample_to_atoms(structures, n_atoms: int, seed: int) -> list:
    """Structures drawn in a seeded random order, each kept while the running total stays <= ``n_atoms``; stops
    once the total equals ``n_atoms``. Returns them in their original order."""
    order = np.random.default_rng(seed).permutation(len(structures))
    keep, total = [], 0
    for i in order:
        n = len(structures[i])
        if total + n <= n_atoms:
            keep.append(int(i))
            total += n
        if total == n_atoms:
            break
    return [structures[i] for i in sorted(keep)]


def entropy_generate_config(element: str, energy_weight: float = 0.0):
    """The ENTROPY-only generate config of scripts/entropy_coverage.py (generate_tiny.toml, 1-4 atoms, 91 copies);
    ``energy_weight`` (1/eV) > 0: E - kS with k = 1/energy_weight eV."""
    from mtpjax.generate.config import config_from_dict
    from mtpjax.io.tomlfile import read_toml

    base = read_toml(ROOT / "configs" / "generate_tiny.toml")
    ex = {**base.get("executor", {}), "kind": "jax"}
    return config_from_dict({**base, "element": element, "subsets": ["ENTROPY"],
                             "entropy": {"n_atoms": [1, 4], "copies": 91, "steps": 200,
                                         "energy_weight": float(energy_weight)}, "executor": ex})


def energy_above_ground(structures, e_ref: float) -> dict:
    """Median, max and min of the labelled energy per atom minus ``e_ref`` (eV/atom) over ``structures``."""
    e = np.array([a.get_potential_energy() / len(a) for a in structures]) - e_ref
    return {"median": float(np.median(e)), "max": float(e.max()), "min": float(e.min())}


def build_sets(el: str, case: dict, out: Path, seed: int, energy_weights=()) -> dict:
    """The training sets of ``el`` (:func:`set_names`) written to OUT/<el>/sets/<SET>.extxyz; returns their info."""
    import ase.io

    from mtpjax.generate import pipeline

    d = out / el
    info = {}
    src = case["entropy"]
    if src is None or not (Path(src) / "ENTROPY.extxyz").exists():
        src = d / "entropy"
        t0 = time.perf_counter()
        pipeline.run(entropy_generate_config(el), src, resume=True, progress=False)
        info["entropy_generate_wall_s"] = round(time.perf_counter() - t0, 1)
    manifest = json.loads((Path(src) / "manifest.json").read_text())
    info["entropy_source"] = str(src)
    info["entropy_timings"] = manifest["timings"]
    ent = ase.io.read(Path(src) / "ENTROPY.extxyz", ":")
    fam_all = ase.io.read(case["family"], ":")
    n = sum(len(a) for a in ent)
    fam = subsample_to_atoms(fam_all, n, seed)
    union = subsample_to_atoms(ent, n // 2, seed + 1) + subsample_to_atoms(fam_all, n - n // 2, seed + 2)
    sets = {"ENTROPY": ent, "RANDSPG-family": fam, "UNION": union}
    info["energy_weighted"] = {}
    for w in energy_weights:
        src_w = d / f"entropy_e{w:g}"
        t0 = time.perf_counter()
        m_w = pipeline.run(entropy_generate_config(el, w), src_w, resume=True, progress=False)
        all_w = ase.io.read(src_w / "ENTROPY.extxyz", ":")
        sets[energy_set_name(w)] = subsample_to_atoms(all_w, n, seed + 3)
        info["energy_weighted"][energy_set_name(w)] = {
            "energy_weight_per_eV": w, "source": str(src_w),
            "generate_wall_s": round(time.perf_counter() - t0, 1),  # a resumed run: only the time to read it back
            "generated": {"structures": len(all_w), "atoms": int(sum(len(a) for a in all_w))},
            "energy_above_ground_eV_per_atom": energy_above_ground(all_w, m_w["reference"]["energy"])}
    info["entropy_energy_above_ground_eV_per_atom"] = energy_above_ground(ent, manifest["reference"]["energy"])
    (d / "sets").mkdir(parents=True, exist_ok=True)
    for name, structs in sets.items():
        ase.io.write(d / "sets" / f"{name}.extxyz", structs, format="extxyz")
    info["sets"] = {k: {"structures": len(v), "atoms": int(sum(len(a) for a in v))} for k, v in sets.items()}
    info["family_source"] = {"file": str(case["family"]), "structures": len(fam_all),
                             "atoms": int(sum(len(a) for a in fam_all)), "name": case["family_name"]}
    info["manifest"] = {"reference": manifest["reference"], "min_distance": manifest["min_distance"],
                        "seed": manifest["seed"]}
    return info, sets


def fit_set(cfg, set_file: Path, fit_dir: Path) -> dict:
    """The quickstart's [fit] of one set (train_potential with the run config's settings); reused when done."""
    from mtpjax.data import load_records
    from mtpjax.fit import train_potential
    from mtpjax.pipeline import split_records

    res_file = fit_dir / "result.json"
    if res_file.exists() and (fit_dir / "potential.mtpjax").exists():
        return json.loads(res_file.read_text())
    f = cfg.fit
    species = list(cfg.generate.species)
    records = load_records(set_file, species=species, n_species=len(species))
    train, test = split_records(records, f)
    fit_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = train_potential(train, test, level=f.level, cutoff=f.cutoff, rmin=f.options.rmin, seed=f.seed,
                          n_species=len(species), species=species, cfg=f.fit_config(), workdir=fit_dir,
                          output=fit_dir / "potential.almtp", resume=True, max_batch_atoms=f.options.max_batch_atoms,
                          init=f.options.init, log=lambda m: None)
    res = json.loads(res_file.read_text()) if res_file.exists() else res
    res["script_wall_s"] = round(time.perf_counter() - t0, 1)
    res_file.write_text(json.dumps(res, indent=1, default=str))
    return res


def coverage(el: str, info: dict, sets: dict, seed: int) -> dict:
    """The ENTROPY stage's descriptors of each set and of ideal hcp/fcc/bcc probes at 0.6-1.4 V0."""
    from ase.build import bulk

    from mtpjax.generate import entropy as E

    cfg = entropy_generate_config(el).entropy  # the descriptor does not depend on energy_weight
    ref, dmin = info["manifest"]["reference"], info["manifest"]["min_distance"]
    mtp = E.descriptor_mtp(cfg.descriptor_level, cfg.descriptor_cutoff * ref["nn_distance"], dmin, ref["omega0"],
                           seed=info["manifest"]["seed"])
    scales = E.calibration_scales(mtp, ref["omega0"], ref["nn_distance"], info["manifest"]["seed"])
    q = {k: np.asarray(E.descriptors(mtp, v, scales)) for k, v in sets.items()}
    v0 = ref["omega0"]
    factors = np.round(np.linspace(0.6, 1.4, 9), 2)
    probes = {}
    for lat in ("hcp", "fcc", "bcc"):
        for fv in factors:
            if lat == "hcp":  # V/atom = (sqrt(3)/4) a^2 c, ideal c/a
                a0 = (4 * fv * v0 / (math.sqrt(3) * math.sqrt(8 / 3))) ** (1 / 3)
                at = bulk(el, "hcp", a=a0, c=math.sqrt(8 / 3) * a0)
            elif lat == "fcc":
                at = bulk(el, "fcc", a=(4 * fv * v0) ** (1 / 3), cubic=True)
            else:
                at = bulk(el, "bcc", a=(2 * fv * v0) ** (1 / 3), cubic=True)
            assert abs(at.get_volume() / len(at) / (fv * v0) - 1) < 1e-9, (lat, at.get_volume() / len(at), fv * v0)
            probes[(lat, float(fv))] = np.asarray(E.descriptors(mtp, [at], scales))

    def nn_to(x, y):
        d2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        return np.sqrt(d2.min(1))

    res = {"S": {k: float(E.entropy(x)) for k, x in q.items()},
           "nn_within": {k: np.exp(np.asarray(E.log_nn_distances(x))) for k, x in q.items()},
           "probe_distance": {k: {f"{lat} {fv:g}": float(nn_to(p, x).max()) for (lat, fv), p in probes.items()}
                              for k, x in q.items()},
           "q": q, "factors": factors.tolist()}
    return res


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT / "experiments"))
    from c_error_matrix import assemble_matrix, matrix_figure

    from mtpjax import experiment as X
    from mtpjax.oracles import make_oracle
    from mtpjax.pipeline import load_config, verify_oracle_spec
    from mtpjax.plotting import subplots

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/entropy_h2h", help="run folder (default /tmp/entropy_h2h)")
    ap.add_argument("--elements", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--tests", nargs="+", default=list(TESTS), help=f"verification tests (default {' '.join(TESTS)})")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subsamples")
    ap.add_argument("--fit-seeds", type=int, nargs="+", default=[0],
                    help="fit seeds (initial coefficients and the 10%% test split); one matrix column per set and seed "
                         "(default 0, the quickstart's)")
    ap.add_argument("--energy-weights", type=float, nargs="+", default=[], metavar="W",
                    help="also an ENTROPY set generated with energy_weight W (1/eV: E - kS, k = 1/W eV) per W")
    ap.add_argument("--tag", default=None, type=name_token,
                    help="write docs/experiments/entropy_head_to_head_<TAG>_*.{csv,png} instead of the untagged files "
                         "(another run beside the committed one)")
    ap.add_argument("--stage", choices=("all", "fit", "sets"), default="all",
                    help="stop after the sets, or after the fits (default: all)")
    a = ap.parse_args(argv)
    if any(w <= 0 for w in a.energy_weights):
        ap.error(f"--energy-weights must be > 0 (got {a.energy_weights}); the pure-entropy set is always in")
    names = set_names(a.energy_weights)
    prefix = f"{PREFIX}_{a.tag}" if a.tag else PREFIX
    out = Path(a.out)
    results, matrices, cov = {}, {}, {}
    for el in a.elements:
        case = CASES[el]
        cfg = load_config(case["config"])
        t0 = time.perf_counter()
        info, sets = build_sets(el, case, out, a.seed, a.energy_weights)
        info["sets_wall_s"] = round(time.perf_counter() - t0, 1)
        log(f"{el}: sets {info['sets']} ({info['sets_wall_s']} s)")
        results[el] = info
        if a.stage == "sets":
            continue
        info["fit_settings"] = {"level": cfg.fit.level, "cutoff": cfg.fit.cutoff, "optimizer": cfg.fit.optimizer,
                                "max_steps": cfg.fit.max_steps, "seed": cfg.fit.seed,
                                "test_fraction": cfg.fit.test_fraction}
        info["fits"] = {}
        columns = [(name, fs) for fs in a.fit_seeds for name in names]
        for name, fs in columns:
            col = column_name(name, fs)
            t0 = time.perf_counter()
            cfg_s = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, seed=fs))
            r = fit_set(cfg_s, out / el / "sets" / f"{name}.extxyz", out / el / "fits" / col)
            info["fits"][col] = {"train_rmse": r["train"]["all"], "test_rmse": (r.get("test") or {}).get("all"),
                                  "n_train": r["n_train"], "n_test": r["n_test"], "steps": r["steps"],
                                  "stopped": r.get("stopped"), "fit_wall_s": r["wall_s"],
                                  "script_wall_s": r.get("script_wall_s", round(time.perf_counter() - t0, 1))}
            log(f"{el} {col}: fit {info['fits'][col]}")
        if a.stage == "fit":
            continue
        spec = verify_oracle_spec(cfg)
        oracle = make_oracle(spec)
        rows = {}
        info["verify_wall_s"] = {}
        for name, fs in columns:
            col = column_name(name, fs)
            t0 = time.perf_counter()
            rows[col] = X.verify_run(out / el / "fits" / col, oracle, spec, out / el / "verify" / col,
                                     tests=list(a.tests), quick=True, options={}, element=el,
                                     label=f"{el} {col}", log=log)
            info["verify_wall_s"][col] = round(time.perf_counter() - t0, 1)
        cols = [column_name(n, fs) for n, fs in columns]
        matrices[el] = assemble_matrix(rows)
        info["summary"] = summarise(matrices[el], a.fit_seeds, names)
        fig = matrix_figure(matrices[el], cols,
                            f"{el} (Zhou EAM): level-{cfg.fit.level} MTP, {cfg.fit.cutoff:g} Å, trained on "
                            f"{info['sets']['ENTROPY']['atoms']} atoms each; quick verification")
        X.save_figure(fig, DOCS / f"{prefix}_matrix_{el}.png", dpi=75)
        t0 = time.perf_counter()
        cov[el] = coverage(el, info, sets, a.seed)
        info["coverage"] = {"S": cov[el]["S"],
                            "median_nn_within": {k: float(np.median(v)) for k, v in cov[el]["nn_within"].items()},
                            "probe_distance": cov[el]["probe_distance"], "wall_s": round(time.perf_counter() - t0, 1)}
        log(f"{el}: coverage {info['coverage']['S']} {info['coverage']['median_nn_within']}")

    if matrices:
        long = []
        for el, m in matrices.items():
            long += [{"element": el, **row} for row in m]
        cols = [column_name(n, fs) for fs in a.fit_seeds for n in names]
        X.write_csv(DOCS / f"{prefix}_matrix.csv", long, ["element", "test", "quantity", "unit", "kind", *cols])
        X.write_csv(DOCS / f"{prefix}_summary.csv",
                    [{"element": el, **r} for el, info in results.items() for r in info.get("summary", [])])
        srows = []
        for el, info in results.items():
            for name, fs in [(n, fs) for fs in a.fit_seeds for n in names]:
                col = column_name(name, fs)
                fit = info.get("fits", {}).get(col, {})
                c = info.get("coverage", {})
                srows.append({"element": el, "set": name, "fit_seed": fs, "structures": info["sets"][name]["structures"],
                              "atoms": info["sets"][name]["atoms"], "n_train": fit.get("n_train"),
                              "n_test": fit.get("n_test"), "S": c.get("S", {}).get(name),
                              "median_nn_within": c.get("median_nn_within", {}).get(name),
                              "train_energy_meV_atom": fit.get("train_rmse", {}).get("energy"),
                              "train_forces_eV_A": fit.get("train_rmse", {}).get("forces"),
                              "train_stress_GPa": fit.get("train_rmse", {}).get("stress"),
                              "test_energy_meV_atom": (fit.get("test_rmse") or {}).get("energy"),
                              "test_forces_eV_A": (fit.get("test_rmse") or {}).get("forces"),
                              "fit_steps": fit.get("steps"), "fit_wall_s": fit.get("fit_wall_s"),
                              "verify_wall_s": info.get("verify_wall_s", {}).get(col)})
        X.write_csv(DOCS / f"{prefix}_sets.csv", srows)
    if cov:
        els = list(cov)
        fig, axes = subplots(len(els), 3, figsize=(15, 4.2 * len(els)), squeeze=False)
        for i, el in enumerate(els):
            c = cov[el]
            allnn = np.concatenate([np.log10(v[np.isfinite(v) & (v > 0)]) for v in c["nn_within"].values()])
            bins = np.linspace(allnn.min(), allnn.max(), 40)
            for name in names:
                v = c["nn_within"][name]
                kw = {"color": X.colour("tab10", names.index(name))}
                axes[i, 0].hist(np.log10(v[np.isfinite(v) & (v > 0)]), bins=bins, histtype="step", lw=1.8, **kw,
                                label=f"{name}: S = {c['S'][name]:.2f}, median {np.median(v):.3f}")
            axes[i, 0].set_xlabel(r"log$_{10}$ nearest-neighbour distance $\delta_i$ within the set (descriptor units)")
            axes[i, 0].set_ylabel("atoms")
            axes[i, 0].legend(fontsize=7)
            axes[i, 0].set_title(f"{el}: nearest-neighbour distances", fontsize=9)
            union = np.concatenate([c["q"][k] for k in ("ENTROPY", "RANDSPG-family")])
            mean = union.mean(0)
            _, _, vt = np.linalg.svd(union - mean, full_matrices=False)
            for name in ("RANDSPG-family", "ENTROPY", *names[len(SETS):]):  # the E - kS sets in the same projection
                p = (c["q"][name] - mean) @ vt[:2].T
                axes[i, 1].scatter(p[:, 0], p[:, 1], s=5, alpha=0.5, label=name, color=X.colour("tab10", names.index(name)))
            axes[i, 1].set_xlabel("principal component 1")
            axes[i, 1].set_ylabel("principal component 2")
            axes[i, 1].legend(fontsize=7)
            axes[i, 1].set_title(f"{el}: PCA of ENTROPY ∪ RANDSPG-family descriptors", fontsize=9)
            for name in names:
                for lat, ls in (("hcp", "-"), ("fcc", "--"), ("bcc", ":")):
                    y = [c["probe_distance"][name][f"{lat} {fv:g}"] for fv in c["factors"]]
                    axes[i, 2].plot(c["factors"], y, ls, color=X.colour("tab10", names.index(name)),
                                    label=f"{name} {lat}")
            axes[i, 2].set_yscale("log")
            axes[i, 2].set_xlabel("volume per atom / Ω0 of an ideal crystal")
            axes[i, 2].set_ylabel("distance to the nearest training atom (descriptor units)")
            axes[i, 2].legend(fontsize=6, ncol=3)
            axes[i, 2].set_title(f"{el}: ideal hcp / fcc / bcc against each training set", fontsize=9)
        fig.tight_layout()
        X.save_figure(fig, DOCS / f"{prefix}_coverage.png", dpi=100)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    log(f"wrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
