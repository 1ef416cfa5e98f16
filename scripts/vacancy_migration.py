"""Vacancy migration barriers (mtpjax.migration): ASE's climbing-image NEB and the JAX climbing string, for the
Sun 2006 Mg EAM (hcp basal and non-basal hops) and an MTP against it, and Lennard-Jones argon (2.5 sigma, unshifted
and shifted) against the reference of ../shared/README.md (255 atoms, 9-image CI-NEB: 6.34 and 5.90 eps).

    python scripts/vacancy_migration.py [--mtp ../shared/bench/fit/mlip3_l16_rc6p5.almtp] [--hcp 4 4 3]
        [--images 7] [--skip-lj] [--out docs/benchmarks/migration.md]

Each model runs through the same code (mtpjax.migration.barriers): its own relaxed lattice, end points relaxed at
fixed cell (mtpjax.relax, fmax 1e-3 eV/Å), 7 intermediate images (9 with the end points). Writes the table (markdown) and
``migration_paths.png`` (energy along the path, Figure objects, no pyplot) next to it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import mtpjax  # noqa: F401  (float64 before jax)

import numpy as np

from mtpjax import migration as M
from mtpjax.io.files import atomic_path, atomic_write
from mtpjax.oracles import make_potential
from mtpjax.oracles.lj import ARGON, LennardJones
from mtpjax.plotting import subplots

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EAM = SHARED / "data" / "potentials" / "Mg_mm.eam.fs"
LJ_REFERENCE = {False: 6.34, True: 5.90}  # eps, ../shared/README.md


def figure(rows, path: Path):
    """Energy (eV, relative to the initial state) against the normalised arc length, one panel per case."""
    cases = list(dict.fromkeys(r["case"] for r in rows))
    fig, axes = subplots(1, len(cases), figsize=(4 * len(cases), 3.2), squeeze=False)
    for ax, case in zip(axes[0], cases):
        for r in rows:
            if r["case"] != case:
                continue
            p = r["path"]
            s = p.arc_length()
            ax.plot(s / s[-1], p.energies - p.energies[0], "o-" if "neb" in p.method else "s--", ms=3,
                    label=f"{r['model']} {p.method}")
        ax.set_title(case, fontsize=9)
        ax.set_xlabel("reaction coordinate")
        ax.set_ylabel("E - E_initial (eV)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")


def write(rows, args, out: Path, seconds: float, argv=None):
    """The markdown table and the path figure."""
    lines = ["# Vacancy migration barriers", "", "Command (wall time %.0f s on this 2-core CPU, shared):" % seconds, "",
             "    " + " ".join(["python", "scripts/vacancy_migration.py"] + list(sys.argv[1:] if argv is None else argv)), "",
             "End points relaxed at fixed cell (mtpjax.relax, FIRE, fmax 1e-3 eV/Å) on each model's own relaxed lattice; "
             f"{args.images} intermediate images; oracle = Sun 2006 EAM (`Mg_mm.eam.fs`) for Mg, LJ for Ar "
             f"(eps = {ARGON['epsilon']} eV, sigma = {ARGON['sigma']} Å, cutoff 2.5 sigma = 8.5 Å). "
             "`potential` rows: the MTP given with --mtp. Methods: ASE climbing-image NEB, JAX climbing string.", "",
             "| case | model | method | N | a (Å) | c (Å) | barrier (eV) | reverse (eV) | barrier (eps) | reference (eps) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lj_case = "Ar" in r["case"]
        ref = LJ_REFERENCE["unshifted" not in r["case"]] if lj_case else None
        eps = f"{r['barrier_eV'] / ARGON['epsilon']:.3f}" if lj_case else ""
        c = "" if r["c"] is None else f"{r['c']:.4f}"
        lines.append(f"| {r['case']} | {r['model']} | {r['method']} | {r['n_atoms']} | {r['a']:.4f} | {c} | "
                     f"{r['barrier_eV']:.5f} | {r['reverse_eV']:.5f} | {eps} | {'' if ref is None else ref} |")
    fig_path = out.with_name("migration_paths.png")
    figure(rows, fig_path)
    lines += ["", f"![NEB and string paths]({fig_path.name})", ""]
    atomic_write(out, "\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mtp", default=None, help="an MTP file (.almtp/.mtpjax) of Mg, compared with the EAM")
    ap.add_argument("--hcp", type=int, nargs=3, default=(4, 4, 3), help="hcp supercell repeats of the 2-atom cell")
    ap.add_argument("--images", type=int, default=7, help="intermediate images")
    ap.add_argument("--skip-lj", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "migration.md"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()
    eam = make_potential(str(EAM))
    mtp = make_potential(args.mtp, species=["Mg"]) if args.mtp else None
    hcp = [M.HopCase(f"hcp Mg {hop} {'x'.join(map(str, args.hcp))}", "hcp", "Mg", tuple(args.hcp), 3.19, 5.2, hop)
           for hop in M.HCP_HOPS]
    lj = [M.HopCase(f"fcc Ar LJ 2.5σ {'shifted' if shift else 'unshifted'} 4x4x4", "fcc", "Ar", (4, 4, 4), 5.27)
          for shift in (False, True)]
    todo = [(None, eam, c) for c in hcp]
    if not args.skip_lj:
        todo += [(None, LennardJones(shift="shifted" in c.name and "unshifted" not in c.name), c) for c in lj]
    if mtp is not None:
        todo += [(mtp, None, c) for c in hcp]
    rows = []
    for pot, oracle, case in todo:  # one model and case at a time: the table is rewritten after each
        new = M.barriers(pot, oracle, [case], n_images=args.images)
        rows += new
        write(rows, args, out, time.perf_counter() - t0, argv)
        for r in new:
            print(r["case"], r["model"], r["method"], f"{r['barrier_eV']:.5f} eV", f"{time.perf_counter() - t0:.0f} s",
                  flush=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
