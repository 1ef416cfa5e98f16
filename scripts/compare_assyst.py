"""Head to head with ``assyst``, the reference implementation of the method (issue 14, item 6).

Same element, same oracle (mtpjax's Zhou EAM, through :func:`mtpjax.oracles.get_calculator` for assyst's ASE
relaxations), the same space groups, atom counts and seed, the same number of perturbed copies per relaxed minimum;
each generator runs its own stages. Both sets are written as extxyz, described stage by stage (the statistics of
Figs 1-3 of the paper), and a level-16 MTP is fitted to each with the same settings and verified against the oracle
with the quick suite.

    python scripts/compare_assyst.py all --out runs/compare_assyst            # everything below, in order
    python scripts/compare_assyst.py generate --out /tmp/cmp                  # both generators only (timing)
    python scripts/compare_assyst.py assyst --out runs/compare_assyst/assyst  # assyst's set alone
    python scripts/compare_assyst.py stats --out runs/compare_assyst          # tables + figure of existing sets
    python scripts/compare_assyst.py fit --out runs/compare_assyst            # fit + verify both sets
    python scripts/compare_assyst.py fit --seed 1 --out runs/compare_assyst   # another split and start (fit_*_s1)

The numbers (space groups, atoms, seed, copies) come from ``configs/compare_assyst.toml``, mtpjax's own
``mtpjax generate`` config. assyst's stages (its SimpleUnary notebook, "the published settings"):

    RANDSPG  assyst.crystals.sample over Formulas.range(El, 1..n) x space groups (one structure per compatible pair,
             pyxtal's own volume and "metallic" tolerance), then AspectFilter(6)
    VOLMIN   VolumeRelax(max_steps=100, force_tolerance=1e-3), LBFGS   (unconverged structures kept)
    FULLMIN  FullRelax(max_steps=100, force_tolerance=1e-3), LBFGS     (cell + positions together)
    RATTLE   k x [Rattle(0.25 Å) + Stretch(hydro=0.05, shear=0.005)]
    STRETCH  2k x [RandomChoice(Stretch(hydro=0.8, shear=0.05), Stretch(hydro=0.05, shear=0.2), chance=0.7)]
             (k = [deform] copies, so RATTLE matches mtpjax's RATTLE and STRETCH matches TRIAX + SHEAR in number)
    every stage: DistanceFilter (radius = min_distance / 2) and VolumeFilter(300 Å³/atom), then labelled by the
    oracle one structure at a time (as the notebook does).

OpenBLAS is limited to one thread (before numpy is imported) for both generators: on a loaded 2-core machine its
threads made scipy's 3x3 ``logm``/``expm_frechet`` in ASE's FrechetCellFilter ~20x slower (measured: 10 FullRelax
runs 50 s -> 2.6 s).
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tomllib  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "compare_assyst.toml"
MIN_DISTANCE = 1.916  # Å: 0.6 x d_nn of the Zhou Mg hcp (3.194 Å), mtpjax's RANDSPG/deform filter (docs/generate.md)
MAX_VOLUME = 300.0  # Å³/atom, the notebook's VolumeFilter
ASSYST_STAGES = ("RANDSPG", "VOLMIN", "FULLMIN", "RATTLE", "STRETCH")
MTPJAX_STAGES = ("RANDSPG", "VOLMIN", "CELLMIN", "INTMIN", "TRIAX", "SHEAR", "RATTLE")
NN_CUTOFF = 8.0  # Å, search radius of the nearest-neighbour distance
LEVEL, CUTOFF, TESTS = 16, 5.5, ("eos", "strain", "elastic", "phonons", "vacancy", "planar")


# ------------------------------------------------------------------------------------------------------------------
# statistics (Figs 1-3 of the paper)

def structure_row(atoms, symprec: float = 1e-3) -> dict:
    """One structure's numbers: atoms, volume per atom (Å³), energy per atom (eV; NaN without a label), shortest
    interatomic distance (Å, periodic images included; inf if none within :data:`NN_CUTOFF`), the largest force
    component (eV/Å; NaN without forces) and spglib's space group at ``symprec`` (Å)."""
    from mtpjax.generate.structures import detect_spacegroup, min_distance

    n = len(atoms)
    energy = fmax = np.nan
    if atoms.calc is not None:
        energy = float(atoms.get_potential_energy()) / n
        try:
            fmax = float(np.abs(atoms.get_forces()).max())
        except Exception:  # a label without forces
            fmax = np.nan
    return {"n_atoms": n, "volume": float(atoms.get_volume()) / n, "energy": energy,
            "d_min": min_distance(atoms, NN_CUTOFF), "fmax": fmax, "spacegroup": detect_spacegroup(atoms, symprec)}


def _summary(x) -> dict:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if not len(x):
        return {"mean": np.nan, "std": np.nan, "min": np.nan, "median": np.nan, "max": np.nan}
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "median": float(np.median(x)),
            "max": float(x.max())}


def stage_statistics(rows: list[dict]) -> dict:
    """Statistics of one stage from :func:`structure_row` rows: structures, atoms (total, and structures per atom
    count), volume / energy per atom, shortest distance and largest force component (mean, std (population), min,
    median, max), distinct space groups, the share of P1 (%), and structures per crystal system."""
    from mtpjax.generate.plots import crystal_system

    sg = [r["spacegroup"] for r in rows]
    systems: dict[str, int] = {}
    for g in sg:
        name = crystal_system(g) if g > 0 else "none"
        systems[name] = systems.get(name, 0) + 1
    counts: dict[int, int] = {}
    for r in rows:
        counts[r["n_atoms"]] = counts.get(r["n_atoms"], 0) + 1
    return {"structures": len(rows), "atoms": int(sum(r["n_atoms"] for r in rows)),
            "n_atoms": dict(sorted(counts.items())),
            "volume": _summary([r["volume"] for r in rows]), "energy": _summary([r["energy"] for r in rows]),
            "d_min": _summary([r["d_min"] for r in rows]), "fmax": _summary([r["fmax"] for r in rows]),
            "spacegroups": len(set(sg)), "p1_percent": 100.0 * sg.count(1) / len(sg) if sg else np.nan,
            "systems": systems}


def statistics_table(stats: dict[str, dict]) -> str:
    """A markdown table, one line per stage of ``{stage: stage_statistics(...)}``."""
    head = ("| stage | structures | atoms | V/atom mean ± std [min, max] (Å³) | E/atom mean ± std [min, max] (eV) "
            "| d_min median [min, max] (Å) | space groups | P1 % |")
    lines = [head, "|" + "---|" * 8]
    for name, s in stats.items():
        v, e, d = s["volume"], s["energy"], s["d_min"]
        lines.append(f"| {name} | {s['structures']} | {s['atoms']} "
                     f"| {v['mean']:.2f} ± {v['std']:.2f} [{v['min']:.2f}, {v['max']:.2f}] "
                     f"| {e['mean']:.3f} ± {e['std']:.3f} [{e['min']:.3f}, {e['max']:.3f}] "
                     f"| {d['median']:.3f} [{d['min']:.3f}, {d['max']:.3f}] "
                     f"| {s['spacegroups']} | {s['p1_percent']:.0f} |")
    return "\n".join(lines) + "\n"


def read_stages(folder, stages) -> dict:
    """``{stage: [ase.Atoms]}`` from ``folder/<STAGE>.extxyz`` (missing files give empty stages)."""
    from ase.io import read

    folder = Path(folder)
    return {s: (read(folder / f"{s}.extxyz", ":") if (folder / f"{s}.extxyz").exists() else []) for s in stages}


# ------------------------------------------------------------------------------------------------------------------
# assyst's set

def load_numbers(config=CONFIG) -> dict:
    """The shared numbers from mtpjax's generate config: element, seed, space groups, atoms, copies."""
    with open(config, "rb") as f:
        c = tomllib.load(f)
    r, d = c.get("randspg", {}), c.get("deform", {})
    return {"element": c.get("element", "Mg"), "seed": int(c.get("seed", 0)),
            "space_groups": tuple(r.get("space_groups", (1, 230))), "n_atoms": tuple(r.get("n_atoms", (1, 10))),
            "copies": int(d.get("copies", 5))}


def _label(structures, calc, stage: str) -> list:
    """Each structure evaluated by ``calc`` (energy, forces, stress as a SinglePointCalculator), tagged ``stage``."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for k, s in enumerate(structures):
        a = s.copy()
        a.calc = calc
        e, f, st = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, free_energy=e, forces=f, stress=st)
        keep = {key: a.info[key] for key in ("perturbation", "relax_converged", "requested spacegroup") if key in a.info}
        a.info = {**keep, "subset": stage, "config_type": stage, "id": f"{stage}/{k}"}
        if "requested spacegroup" in a.info:
            a.info["spacegroup_requested"] = int(a.info.pop("requested spacegroup"))
        out.append(a)
    return out


def generate_assyst(out, numbers=None, min_distance: float = MIN_DISTANCE, log=print) -> dict:
    """Run assyst's stages (module docstring) with the Zhou oracle and write ``out/<STAGE>.extxyz``,
    ``EVERYTHING.extxyz`` and ``timings.json`` (seconds per step). Returns the timings."""
    from ase.io import write
    from assyst.crystals import Formulas, sample
    from assyst.filters import AspectFilter, DistanceFilter, VolumeFilter
    from assyst.perturbations import RandomChoice, Rattle, Stretch, perturb
    from assyst.relaxations import FullRelax, VolumeRelax, relax

    from mtpjax.io.files import atomic_path, write_json
    from mtpjax.oracles import get_calculator, make_oracle

    numbers = numbers or load_numbers()
    el, seed, k = numbers["element"], numbers["seed"], numbers["copies"]
    (g0, g1), (n0, n1) = numbers["space_groups"], numbers["n_atoms"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t: dict[str, float] = {}
    t_all = time.perf_counter()
    calc = get_calculator(make_oracle({"type": "zhou", "element": el}))
    keep = DistanceFilter({el: min_distance / 2})
    vol = VolumeFilter(MAX_VOLUME)

    def timed(name, fn):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fn()
        t[name] = time.perf_counter() - t0
        log(f"assyst {name}: {len(res)} structures, {t[name]:.1f} s")
        return res

    spg = timed("RANDSPG", lambda: list(filter(AspectFilter(6), sample(
        Formulas.range(el, n0, n1 + 1), spacegroups=range(g0, g1 + 1), min_atoms=n0, max_atoms=n1, rng=seed))))
    volmin = timed("VOLMIN", lambda: list(relax(spg, VolumeRelax(max_steps=100, force_tolerance=1e-3, calculator=calc))))
    fullmin = timed("FULLMIN", lambda: list(relax(volmin, FullRelax(max_steps=100, force_tolerance=1e-3, calculator=calc))))
    rng = np.random.default_rng([seed, 14, 6])
    rattle = (Rattle(0.25, rng=np.random.default_rng(rng.integers(2**32)))
              + Stretch(hydro=0.05, shear=0.005, rng=np.random.default_rng(rng.integers(2**32))))
    hydro = Stretch(hydro=0.80, shear=0.05, rng=np.random.default_rng(rng.integers(2**32)))
    shear = Stretch(hydro=0.05, shear=0.20, rng=np.random.default_rng(rng.integers(2**32)))
    stretch = RandomChoice(hydro, shear, 0.7, rng=np.random.default_rng(rng.integers(2**32)))
    rattled = timed("RATTLE", lambda: list(perturb(fullmin, k * [rattle], filters=[keep])))
    stretched = timed("STRETCH", lambda: list(perturb(fullmin, 2 * k * [stretch], filters=[keep])))
    raw = dict(zip(ASSYST_STAGES, (spg, volmin, fullmin, rattled, stretched)))
    kept = {s: [a for a in v if keep(a) and vol(a)] for s, v in raw.items()}
    t0 = time.perf_counter()
    labelled = {s: _label(v, calc, s) for s, v in kept.items()}
    t["label"] = time.perf_counter() - t0
    t["total_in_process"] = time.perf_counter() - t_all
    for s, v in labelled.items():
        with atomic_path(out / f"{s}.extxyz") as p:
            write(p, v, format="extxyz")
    with atomic_path(out / "EVERYTHING.extxyz") as p:
        write(p, [a for v in labelled.values() for a in v], format="extxyz")
    counts = {s: {"made": len(raw[s]), "kept": len(kept[s])} for s in raw}
    counts["VOLMIN"]["converged"] = sum(bool(a.info.get("relax_converged")) for a in volmin)
    counts["FULLMIN"]["converged"] = sum(bool(a.info.get("relax_converged")) for a in fullmin)
    counts["STRETCH"]["hydro"] = sum(str(a.info.get("perturbation", "")).startswith("stretch(hydro=0.8") for a in stretched)
    counts["STRETCH"]["shear"] = len(stretched) - counts["STRETCH"]["hydro"]
    counts["RATTLE"]["one_atom_minima_skipped"] = sum(len(a) == 1 for a in fullmin)
    write_json(out / "timings.json", {"seconds": t, "counts": counts, "numbers": numbers, "min_distance": min_distance})
    return t


# ------------------------------------------------------------------------------------------------------------------
# fit and verify (the same settings for both sets)

def fit_and_verify(data: Path, out: Path, element: str, seed: int = 0, log=print) -> dict:
    """Fit a level-16, 5.5 Å MTP with mtpjax's defaults to ``data/EVERYTHING.extxyz`` (10 % test split, as
    ``mtpjax run``; ``seed`` seeds the split and the fit) into ``out/fit``; run the quick verification suite into
    ``out/verify``. Returns both timings and the fit's RMSEs."""
    from mtpjax.data import load_records
    from mtpjax.experiment import split
    from mtpjax.fit import train_potential
    from mtpjax.oracles import make_oracle, make_potential
    from mtpjax.pipeline import FitSection
    from mtpjax.verify.suite import run_suite

    section = FitSection(level=LEVEL, cutoff=CUTOFF, seed=seed)
    records = load_records(Path(data) / "EVERYTHING.extxyz", species=[element])
    train, test = split(records, section.test_fraction, section.seed)
    t0 = time.perf_counter()
    result = train_potential(train, test, level=LEVEL, cutoff=CUTOFF, seed=seed, n_species=1, species=[element],
                             cfg=section.fit_config(), workdir=out / "fit", output=out / "fit" / "potential.almtp",
                             log=lambda m: None)
    t_fit = time.perf_counter() - t0
    log(f"fit {data}: {len(train)} train / {len(test)} test, {t_fit:.0f} s")
    t0 = time.perf_counter()
    pot = make_potential(out / "fit" / "potential.mtpjax", species=[element])
    run_suite(pot, make_oracle({"type": "zhou", "element": element}), out / "verify", tests=list(TESTS),
              element=element, progress=False, quick=True, potential_label=f"MTP level {LEVEL}, {CUTOFF:g} Å")
    t_verify = time.perf_counter() - t0
    log(f"verify {data}: {t_verify:.0f} s")
    return {"fit_s": t_fit, "verify_s": t_verify, "n_train": len(train), "n_test": len(test),
            "result": {k: result[k] for k in ("train", "test", "steps") if k in result}}


# ------------------------------------------------------------------------------------------------------------------
# figure

def plot_statistics(groups: dict[str, dict[str, list[dict]]], path) -> Path:
    """Histograms (rows: groups of stages such as RANDSPG, the relaxed minima, EVERYTHING; columns: volume per atom,
    energy per atom, shortest distance, crystal system), one colour per generator. ``groups``:
    ``{row title: {generator: rows}}``. Written as PNG with :func:`mtpjax.io.files.atomic_path`."""
    from mtpjax.generate.plots import crystal_system
    from mtpjax.io.files import atomic_path
    from mtpjax.plotting import subplots

    systems = ["triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic"]
    cols = [("volume", "V/atom (Å³)"), ("energy", "E/atom (eV)"), ("d_min", "shortest distance (Å)"),
            ("system", "crystal system (structures)")]
    fig, axes = subplots(len(groups), len(cols), figsize=(4.0 * len(cols), 2.8 * len(groups)), squeeze=False)
    colours = ["C0", "C3"]
    for i, (title, by_gen) in enumerate(groups.items()):
        for j, (key, label) in enumerate(cols):
            ax = axes[i][j]
            if key == "system":
                width = 0.8 / len(by_gen)
                for c, (gen, rows) in enumerate(by_gen.items()):
                    n = [sum(crystal_system(r["spacegroup"]) == s for r in rows if r["spacegroup"] > 0) for s in systems]
                    ax.bar(np.arange(len(systems)) + c * width, n, width, color=colours[c % 2], label=gen)
                ax.set_xticks(np.arange(len(systems)) + 0.4 - width / 2, [s[:5] for s in systems], fontsize=7)
            else:
                vals = {g: np.array([r[key] for r in rows], float) for g, rows in by_gen.items()}
                allv = np.concatenate([v[np.isfinite(v)] for v in vals.values()] or [np.zeros(1)])
                lo, hi = np.percentile(allv, [0.5, 99.5]) if len(allv) else (0, 1)
                bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
                for c, (gen, v) in enumerate(vals.items()):
                    v = v[np.isfinite(v)]
                    ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, histtype="step", color=colours[c % 2],
                            label=f"{gen} ({len(v)})", density=True)
            ax.set_xlabel(label)
            if j == 0:
                ax.set_ylabel(f"{title}\n(density)")
            if j == 0 or (j == len(cols) - 1 and i == 0):
                ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as p:
        fig.savefig(p, dpi=110, format="png")
    return path


# ------------------------------------------------------------------------------------------------------------------
# command line

def _rows(stages: dict) -> dict:
    return {s: [structure_row(a) for a in v] for s, v in stages.items()}


def do_stats(out: Path, figure: Path | None, log=print) -> dict:
    """Per-stage statistics of both sets under ``out`` (``out/stats.json``, ``out/stats.md``) and the figure."""
    from mtpjax.io.files import atomic_write, write_json

    a_rows = _rows(read_stages(out / "assyst", ASSYST_STAGES))
    m_rows = _rows(read_stages(out / "mtpjax", MTPJAX_STAGES))
    a_rows["EVERYTHING"] = [r for v in a_rows.values() for r in v]
    m_rows["EVERYTHING"] = [r for v in m_rows.values() for r in v]
    a_stats = {s: stage_statistics(v) for s, v in a_rows.items() if v}
    m_stats = {s: stage_statistics(v) for s, v in m_rows.items() if v}
    write_json(out / "stats.json", {"assyst": a_stats, "mtpjax": m_stats})
    text = "### assyst\n\n" + statistics_table(a_stats) + "\n### mtpjax\n\n" + statistics_table(m_stats)
    atomic_write(out / "stats.md", text)
    if figure is not None:
        groups = {"RANDSPG": {"assyst": a_rows["RANDSPG"], "mtpjax": m_rows["RANDSPG"]},
                  "minima": {"assyst FULLMIN": a_rows["FULLMIN"], "mtpjax INTMIN": m_rows["INTMIN"]},
                  "EVERYTHING": {"assyst": a_rows["EVERYTHING"], "mtpjax": m_rows["EVERYTHING"]}}
        plot_statistics(groups, figure)
    log(text)
    return {"assyst": a_stats, "mtpjax": m_stats}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["all", "generate", "assyst", "stats", "fit"])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "compare_assyst")
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "study" / "assyst_statistics.png")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fits' test split and start (default 0)")
    args = ap.parse_args(argv)
    numbers = load_numbers(args.config)
    if args.command == "assyst":
        generate_assyst(args.out, numbers)
        return 0
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    if args.command in ("all", "generate"):  # fresh processes, end to end (imports, compilation, files)
        exe = Path(sys.executable).parent / "mtpjax"
        cmds = {"mtpjax": [str(exe), "generate", "--config", str(args.config), "--out", str(out / "mtpjax")],
                "assyst": [sys.executable, str(Path(__file__).resolve()), "assyst", "--config", str(args.config),
                           "--out", str(out / "assyst")]}
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if name == "assyst" else None)
            times[name] = time.perf_counter() - t0
            print(f"{name} generate (fresh process): {times[name]:.1f} s", flush=True)
        from mtpjax.io.files import write_json

        write_json(out / "generate_wall.json", {**times, "load_average": os.getloadavg()})
    if args.command in ("all", "stats"):
        do_stats(out, args.figure)
    if args.command in ("all", "fit"):
        from mtpjax.io.files import write_json
        from mtpjax.verify.report import compare_markdown

        tag = "" if args.seed == 0 else f"_s{args.seed}"
        res = {g: fit_and_verify(out / g, out / f"fit_{g}{tag}", numbers["element"], seed=args.seed)
               for g in ("assyst", "mtpjax")}
        write_json(out / f"fit_verify{tag}.json", res)
        table = compare_markdown([out / f"fit_assyst{tag}" / "verify", out / f"fit_mtpjax{tag}" / "verify"],
                                 names=["assyst set", "mtpjax set"])
        from mtpjax.io.files import atomic_write

        atomic_write(out / f"verify_compare{tag}.md", table)
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
