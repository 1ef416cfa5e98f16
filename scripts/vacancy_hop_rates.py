"""Vacancy hop rates from direct NVT MD (Nosé–Hoover) at several temperatures, an Arrhenius fit per model, and the
NEB (climbing-string) barriers of the same cells beside them: the Sun 2006 Mg EAM (oracle) against an MTP fitted to
it, through the same code (mtpjax.migration.hop_rates, arrhenius_fit, string_barrier).

    python scripts/vacancy_hop_rates.py --mtp ../shared/bench/fit/mlip3_l16_rc6p5.almtp
        [--runs eam eam-small mtp] [--save results.json] [--merge a.json b.json ...] [--out docs/benchmarks/hop_rates.md]

Runs (each model on its own 0 K relaxed lattice; thermal expansion not applied):

- ``eam``: Sun EAM, hcp 4x4x3 minus one (95 atoms), 750-950 K;
- ``eam-small``: Sun EAM in the MTP's cell, hcp 4x4x2 minus one (63 atoms), at the MTP's temperatures;
- ``mtp``: the MTP (``--mtp``), 4x4x2 minus one (63 atoms), 850-950 K (the level-16 MTP costs ~10x the EAM per
  atom-step).

2 fs steps, Nosé–Hoover thermostat (100 fs), positions sampled every 100 fs, a hop counted once the vacancy has stayed
3 samples on a new site, the first 2 ps not counted. ``--save`` writes the runs' results (JSON) and ``--merge`` writes
the report from saved results, so that runs can go in separate processes. Writes the markdown table and
``arrhenius.png`` (ln rate against 1/T, Figure objects, no pyplot) next to it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import mtpjax  # noqa: F401  (float64 before jax)

import numpy as np

from mtpjax import migration as M
from mtpjax.io.files import atomic_path, atomic_write, machine
from mtpjax.oracles import make_potential
from mtpjax.plotting import subplots

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EAM = SHARED / "data" / "potentials" / "Mg_mm.eam.fs"
#: NEB barriers (eV) of docs/benchmarks/migration.md (hcp 4x4x3 minus one, 95 atoms, ASE CI-NEB, 7 images).
NEB_4X4X3 = {"eam": {"basal": 0.62609, "nonbasal": 0.62933}, "mtp": {"basal": 0.68492, "nonbasal": 0.71445}}
TIMESTEP, SAMPLE_EVERY, PERSIST, EQUILIBRATION = 2.0, 50, 3, 2000.0
#: Temperatures whose samples have exactly one empty site less often than this are left out of the fits (the lattice
#: is not intact: basal planes sliding or melting, so the count is no vacancy hop count).
MIN_DETERMINED = 0.95
#: name: (model, hcp repeats, {temperature K: steps})
RUNS = {
    "eam": ("eam", (4, 4, 3), {750.0: 140000, 800.0: 100000, 850.0: 70000, 900.0: 50000, 950.0: 40000}),
    "eam-small": ("eam", (4, 4, 2), {850.0: 45000, 900.0: 30000, 950.0: 20000}),
    "mtp": ("mtp", (4, 4, 2), {850.0: 45000, 900.0: 30000, 950.0: 20000}),
}
QUICK = {"eam": {950.0: 6000, 900.0: 6000}, "eam-small": {950.0: 3000, 900.0: 3000}, "mtp": {950.0: 2000, 900.0: 2000}}


def lattice(pot) -> tuple[float, float]:
    """(a, c) in Å of the potential's relaxed hcp lattice."""
    return M.lattice_parameters(M.relaxed_bulk(pot, "Mg", "hcp", 3.19, 5.2), "hcp")


def string_barriers(pot, perfect) -> dict:
    """{hop: barrier eV} of the climbing string (5 images) in ``perfect`` less site 0, end points relaxed."""
    out = {}
    for hop in M.HCP_HOPS:
        i, f, _ = M.relaxed_hop(pot, perfect, 0, hop)
        out[hop] = M.string_barrier(pot, i, f, n_images=5).barrier
    return out


def run(name: str, pot, quick: bool = False, command=(), seed: int = 0, plan=None, barriers: bool = True) -> dict:
    """One run set: lattice, string barriers in the same cell (with ``barriers``), hop rates per temperature (``plan``
    {T: steps} instead of the default), Arrhenius fit."""
    model, size, default = RUNS[name]
    plan = QUICK[name] if quick else (plan or default)
    t0 = time.perf_counter()
    a, c = lattice(pot)
    perfect = M.supercell("Mg", "hcp", a, c, size)
    barriers = string_barriers(pot, perfect) if barriers else None
    print(f"{name}: a {a:.4f} c {c:.4f} Å, string barriers {barriers}, {time.perf_counter() - t0:.0f} s", flush=True)

    def report(r):
        print(f"{name} {r.temperature:.0f} K: {r.hops} hops {r.kinds} in {r.time_ps:.0f} ps, rate {r.rate:.3g} ± "
              f"{r.rate_err:.2g} /s, determined {r.determined:.3f}, <T> {r.mean_temperature:.0f} K, {r.wall_s:.0f} s",
              flush=True)

    temps = sorted(plan)
    rates = M.hop_rates(pot, perfect, temps, [plan[t] for t in temps], timestep=TIMESTEP, sample_every=SAMPLE_EVERY,
                        equilibration=EQUILIBRATION, persist=PERSIST, seed=seed, report=report)
    rows = [{"T": r.temperature, "mean_T": r.mean_temperature, "steps": r.steps, "time_ps": r.time_ps, "hops": r.hops,
             "basal": r.kinds.get("basal", 0), "nonbasal": r.kinds.get("nonbasal", 0), "other": r.kinds.get("other", 0),
             "rate": r.rate, "rate_err": r.rate_err, "determined": r.determined, "wall_s": r.wall_s} for r in rates]
    out = {"name": name, "command": " ".join(["python", "scripts/vacancy_hop_rates.py"] + list(command)), "model": model,
           "size": list(size), "n_atoms": rates[0].n_atoms, "a": a, "c": c,
           "string_barriers": barriers, "rows": rows, "wall_s": time.perf_counter() - t0, "seeds": [seed]}
    return with_fit(out)


def with_fit(res: dict) -> dict:
    """``res`` with its Arrhenius fit (None when fewer than two temperatures have hops), on the temperatures whose
    lattice stayed intact (:data:`MIN_DETERMINED`)."""
    rows = [r for r in res["rows"] if _intact(r)]
    try:
        fit = M.arrhenius_fit([r["T"] for r in rows], [r["rate"] for r in rows], [r["hops"] for r in rows])
        res["fit"] = {"Ea": fit.activation_energy, "Ea_err": fit.activation_energy_err, "prefactor": fit.prefactor,
                      "ln_prefactor_err": fit.ln_prefactor_err, "chi2": fit.chi2, "dof": fit.dof}
    except M.MigrationError as err:
        res["fit"] = None
        print(f"{res['name']}: no fit ({err})")
    return res


def _intact(row) -> bool:
    return row["determined"] >= MIN_DETERMINED


def combine(results) -> list[dict]:
    """Run sets of the same name (independent runs, other seeds) pooled: per temperature the runs whose lattice stayed
    intact (:data:`MIN_DETERMINED`) add their steps, counted times, hops and wall times (<T> and 'determined'
    time-weighted, rate = hops / total time); a run whose lattice did not stay intact stays a row of its own, shown
    but not fitted. Fits redone."""
    pooled = {}
    for res in results:
        if res["name"] not in pooled:
            pooled[res["name"]] = {**json.loads(json.dumps(res)), "rows": [], "seeds": []}
        p = pooled[res["name"]]
        if abs(p["a"] - res["a"]) > 1e-6 or abs(p["c"] - res["c"]) > 1e-6:
            raise SystemExit(f"{res['name']}: runs on different lattices cannot be pooled")
        if p is not res and p["seeds"]:
            p["string_barriers"] = p["string_barriers"] or res["string_barriers"]
            p["wall_s"] += res["wall_s"]
            p["command"] = "; ".join(dict.fromkeys(p["command"].split("; ") + [res["command"]]))
        p["seeds"] = p["seeds"] + res.get("seeds", [0])
        rows = p["rows"]
        for r in res["rows"]:
            r = {**r, "runs": r.get("runs", 1)}
            q = next((q for q in rows if q["T"] == r["T"] and _intact(q) and _intact(r)), None)
            if q is None:
                rows.append(r)
                continue
            t = q["time_ps"] + r["time_ps"]
            for key in ("mean_T", "determined"):
                q[key] = (q[key] * q["time_ps"] + r[key] * r["time_ps"]) / t
            for key in ("steps", "hops", "basal", "nonbasal", "other", "wall_s", "runs"):
                q[key] += r[key]
            q["time_ps"] = t
            q["rate"], q["rate_err"] = q["hops"] / (t * 1e-12), np.sqrt(q["hops"]) / (t * 1e-12)
        rows.sort(key=lambda r: (r["T"], not _intact(r)))
    return [with_fit(p) for p in pooled.values()]


def figure(results, path: Path):
    """ln(rate) against 1000/T with Poisson error bars and the fitted lines, one series per run set, and dotted lines
    with the slope of the string barrier (mean of basal and non-basal) through the weighted centre of the points."""
    fig, ax = subplots(1, 1, figsize=(6.0, 4.4))
    styles = {"eam": ("C0", "o"), "eam-small": ("C2", "s"), "mtp": ("C3", "^")}
    for res in results:
        color, marker = styles.get(res["name"], ("k", "x"))
        rows = [r for r in res["rows"] if r["hops"] > 0 and _intact(r)]
        x = np.array([1000.0 / r["T"] for r in rows])
        y = np.log([r["rate"] for r in rows])
        err = np.array([1.0 / np.sqrt(r["hops"]) for r in rows])
        label = f"{res['model'].upper()} {'x'.join(map(str, res['size']))} ({res['n_atoms']} atoms)"
        fit = res.get("fit")
        if fit:
            label += f": Ea {fit['Ea']:.2f} ± {fit['Ea_err']:.2f} eV"
            xx = np.linspace(x.min() - 0.02, x.max() + 0.02, 20)
            ax.plot(xx, np.log(fit["prefactor"]) - fit["Ea"] / (M.KB_EV * 1000.0 / xx), "-", color=color, lw=1)
            if res["string_barriers"]:  # the NEB slope through the weighted centre of the points
                e = float(np.mean(list(res["string_barriers"].values())))
                w = 1.0 / err**2
                xm, ym = np.sum(w * x) / np.sum(w), np.sum(w * y) / np.sum(w)
                ax.plot(xx, ym - e / (M.KB_EV * 1000.0) * (xx - xm), ":", color=color, lw=1,
                        label=f"slope of the string barrier, {e:.3f} eV")
        ax.errorbar(x, y, yerr=err, fmt=marker, color=color, ms=4, capsize=2, label=label)
    ax.set_xlabel("1000 / T (1/K)")
    ax.set_ylabel("ln(hop rate / s⁻¹)")
    ax.set_title("Vacancy hop rate in hcp Mg, NVT MD", fontsize=9)
    ax.legend(fontsize=6.5)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")


def write(results, out: Path, command: str):
    """The markdown report and the figure."""
    runs = "; ".join(f"{r['name']} {r['wall_s']:.0f} s" for r in results)
    commands = list(dict.fromkeys([c for r in results for c in r.get("command", command).split("; ")] + [command]))
    lines = ["# Vacancy hop rates from direct MD: Arrhenius fit against NEB barriers", "",
             f"Commands (wall time per run set: {runs}), on {machine()} (2 cores shared with other jobs: wall times are "
             "loaded-machine times):", ""] + ["    " + c for c in commands] + ["",
             f"Nosé–Hoover NVT (jax-md, chain of 5, 100 fs), {TIMESTEP:g} fs steps, each model on its own 0 K relaxed "
             "lattice (thermal expansion not applied), the vacancy cell relaxed first; Maxwell–Boltzmann start at T, the "
             f"first {EQUILIBRATION / 1000:g} ps not counted. Positions sampled every {SAMPLE_EVERY * TIMESTEP:g} fs are "
             "mapped onto the perfect lattice (nearest site, minimum image); the empty site is the vacancy; a hop counts "
             f"once the vacancy has stayed {PERSIST} samples on a new site (`mtpjax.migration.hop_rates`). Rate error: "
             "Poisson, √hops / time. Arrhenius fit: weighted least squares of ln rate on 1/kT with σ = 1/√hops "
             "(`arrhenius_fit`; errors 1σ from the weights, χ² given). 'determined': the fraction of samples with "
             f"exactly one empty site; a run below {MIN_DETERMINED} is not pooled nor fitted (the lattice was not intact). "
             "'other': a move of the vacancy farther than a nearest neighbour between committed samples (two hops "
             "within 300 fs), counted as one hop. Barriers: the climbing string (5 images) in the same cell as the MD, and the "
             "ASE CI-NEB of `migration.md` (4x4x3, 95 atoms).", ""]
    lines += ["| model | cell | N | T (K) | runs | <T> (K) | steps | counted time (ps) | hops | basal | non-basal | other | "
              "rate (1/s) | determined | wall (s) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        cell = "x".join(map(str, res["size"]))
        for r in res["rows"]:
            lines.append(f"| {res['model'].upper()} | {cell} | {res['n_atoms']} | {r['T']:.0f} | {r.get('runs', 1)} | "
                         f"{r['mean_T']:.1f} | "
                         f"{r['steps']} | {r['time_ps']:.0f} | {r['hops']} | {r['basal']} | {r['nonbasal']} | "
                         f"{r['other']} | {r['rate']:.3g} ± {r['rate_err']:.2g} | {r['determined']:.3f}"
                         f"{'' if _intact(r) else ' (not fitted)'} | "
                         f"{r['wall_s']:.0f} |")
    lines += ["", "| model | cell | N | processes pooled | a, c (Å) | fitted Ea (eV) | prefactor (1/s) | χ² / dof | string barrier basal / "
              "non-basal, same cell (eV) | CI-NEB 4x4x3 basal / non-basal (eV) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        fit, b, ref = res.get("fit"), res["string_barriers"] or {"basal": np.nan, "nonbasal": np.nan}, NEB_4X4X3[res["model"]]
        ea = f"{fit['Ea']:.3f} ± {fit['Ea_err']:.3f}" if fit else "—"
        nu = f"{fit['prefactor']:.2g} (ln ± {fit['ln_prefactor_err']:.2f})" if fit else "—"
        chi = f"{fit['chi2']:.2f} / {fit['dof']}" if fit else "—"
        lines.append(f"| {res['model'].upper()} | {'x'.join(map(str, res['size']))} | {res['n_atoms']} | "
                     f"{len(res.get('seeds', [0]))} | {res['a']:.4f}, {res['c']:.4f} | {ea} | {nu} | {chi} | "
                     f"{b['basal']:.4f} / {b['nonbasal']:.4f} | "
                     f"{ref['basal']:.4f} / {ref['nonbasal']:.4f} |")
    fig_path = out.with_name("arrhenius.png")
    figure(results, fig_path)
    lines += ["", f"![Arrhenius plot]({fig_path.name})", ""]
    atomic_write(out, "\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mtp", default=None, help="an MTP file (.almtp/.mtpjax) of Mg (needed for the mtp run)")
    ap.add_argument("--runs", nargs="*", default=None, choices=list(RUNS), help="run sets (default: all, mtp with --mtp)")
    ap.add_argument("--save", default=None, help="write the runs' results (JSON) here")
    ap.add_argument("--merge", nargs="*", default=[], help="saved results (JSON) to report with (or instead of) runs")
    ap.add_argument("--quick", action="store_true", help="a few ps per temperature (a smoke test of the script)")
    ap.add_argument("--seed", type=int, default=0, help="first seed of the Maxwell-Boltzmann draws (one per temperature)")
    ap.add_argument("--plan", nargs="*", default=None, help="T:steps pairs replacing the run sets' temperatures")
    ap.add_argument("--no-barriers", action="store_true", help="skip the string barriers (when pooling with runs "
                    "that have them)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "hop_rates.md"))
    args = ap.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    t0 = time.perf_counter()
    names = args.runs if args.runs is not None else [n for n in RUNS if n != "mtp" or args.mtp]
    if args.merge and args.runs is None:
        names = []
    results = []
    for path in args.merge:
        results += json.loads(Path(path).read_text())
    eam = make_potential(str(EAM))
    for name in names:
        if RUNS[name][0] == "mtp" and not args.mtp:
            ap.error("the mtp run needs --mtp")
        pot = make_potential(args.mtp, species=["Mg"]) if RUNS[name][0] == "mtp" else eam
        plan = {float(t): int(n) for t, n in (x.split(":") for x in args.plan)} if args.plan else None
        results.append(run(name, pot, args.quick, argv, seed=args.seed, plan=plan, barriers=not args.no_barriers))
        if args.save:
            atomic_write(args.save, json.dumps(results, indent=1))
    order = {n: k for k, n in enumerate(RUNS)}
    results = combine(results)
    results.sort(key=lambda r: order.get(r["name"], 99))
    if results:
        write(results, Path(args.out), " ".join(["python", "scripts/vacancy_hop_rates.py"] + list(argv)))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
