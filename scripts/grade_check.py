"""The paper's check of Section III F at quick size: the extrapolation grade during MD of defects, liquid and other
phases, for an MTP fitted to EVERYTHING against one fitted to 10 % of it (MTP against the oracle's training data).

1. Data: ``mtpjax generate`` with the ``[generate]`` tables of ``configs/quickstart.toml`` (Zhou EAM Mg).
2. Fits: level 16, 5.5 Å (the quickstart's), to EVERYTHING and to a seeded random 10 % of its structures, with
   ``mtpjax fit`` and every other option at its default.
3. Active sets: MaxVol in neighbourhood mode (one row per atom, as MLIP grades atoms in LAMMPS) over each fit's own
   training set.
4. MD (``mtpjax.md.run_md`` with ``active_set``; NVT Langevin or NPT MTK, 1 fs), both potentials, the grade every 10
   steps: the liquid at 2500 K and 5 GPa; an hcp vacancy at 100, 400 and 700 K; the Σ7 [0001] grain boundary at
   600 K; fcc and dhcp at 300 K. A run that becomes unstable is reported as such, with its grades up to then.

    python scripts/grade_check.py [--work /tmp/grade_check] [--steps 2000] [--out docs/benchmarks/grade_check.md]

At full size: ``--data DIR`` takes a generated set (``mtpjax generate --config configs/generate_mg.toml --out DIR``)
instead of the quickstart's, ``--level``/``--cutoff`` set both fits, and ``--everything-potential POT`` reuses a fit to
DIR/EVERYTHING.extxyz made elsewhere (its active set is still built here)::

    python scripts/grade_check.py --data /tmp/mtpjax-paper-data --cutoff 6.5 --work /tmp/grade_check_full \
        --out docs/benchmarks/grade_check_full.md
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import mtpjax  # noqa: F401  (float64 before jax)

import jax
import numpy as np

from mtpjax.active import build_active_set, save_active_set
from mtpjax.io import read_structures, write_structures
from mtpjax.io.files import atomic_write, machine, versions
from mtpjax.md import MDInstability, run_md
from mtpjax.oracles import make_potential
from mtpjax.plotting import subplots
from mtpjax.relax import equilibrium, prototype
from mtpjax.verify.planar import sigma7_grain

ROOT = Path(__file__).resolve().parents[1]
MTPJAX = [sys.executable, "-m", "mtpjax.cli"]


def sh(cmd, log):
    t0 = time.perf_counter()
    print("$", " ".join(map(str, cmd)), file=sys.stderr, flush=True)
    subprocess.run([str(c) for c in cmd], check=True)
    log.append((" ".join(map(str, cmd[2:])), time.perf_counter() - t0))


def typed(atoms_list):
    for a in atoms_list:
        a.arrays["mlip_type"] = np.zeros(len(a), dtype=np.int64)
    return atoms_list


def simulations(oracle):
    eq = equilibrium(oracle, ["hcp"], "Mg")["hcp"].atoms
    v = eq.get_volume() / len(eq)
    a, c = eq.cell.lengths()[0], eq.cell.lengths()[2]
    hcp = eq.repeat((4, 4, 3))
    vac = hcp.copy()
    del vac[0]
    fcc = prototype("fcc", "Mg", v, cubic=True).repeat((3, 3, 3))
    dhcp = prototype("dhcp", "Mg", v).repeat((4, 4, 2))
    gb = sigma7_grain("Mg", a, c)
    sims = {"liquid 2500 K, 5 GPa (NPT)": (hcp, "npt_mtk", 2500.0, 5.0)}
    for t in (100.0, 400.0, 700.0):
        sims[f"hcp vacancy {t:.0f} K"] = (vac, "nvt_langevin", t, 0.0)
    sims["Σ7 [0001] grain boundary 600 K"] = (gb, "nvt_langevin", 600.0, 0.0)
    sims["fcc 300 K"] = (fcc, "nvt_langevin", 300.0, 0.0)
    sims["dhcp 300 K"] = (dhcp, "nvt_langevin", 300.0, 0.0)
    return sims


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/grade_check")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--data", default=None, help="a generated set's folder (default: the quickstart's, made in --work)")
    p.add_argument("--level", type=int, default=16)
    p.add_argument("--cutoff", type=float, default=5.5, help="Å")
    p.add_argument("--everything-potential", default=None, help="an MTP already fitted to the set's EVERYTHING")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "grade_check.md"))
    a = p.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    steps_log, t_start = [], time.perf_counter()
    data = Path(a.data) if a.data else work / "data"
    if a.data and not (data / "EVERYTHING.extxyz").exists():
        raise SystemExit(f"{data}: no EVERYTHING.extxyz (make it with mtpjax generate)")
    if not (data / "EVERYTHING.extxyz").exists():  # the quickstart's [generate] tables as a generate config
        text = (ROOT / "configs" / "quickstart.toml").read_text().split("[generate]", 1)[1].split("\n[fit]", 1)[0]
        (work / "generate.toml").write_text(text.replace("[generate.", "["))
        sh(MTPJAX + ["generate", "--config", work / "generate.toml", "--out", data, "-q"], steps_log)
    everything = read_structures(data / "EVERYTHING.extxyz")
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(everything), max(1, round(a.fraction * len(everything))), replace=False))
    subset = [everything[k] for k in pick]
    write_structures(subset, work / "subset.extxyz", format="extxyz")
    sets = {"EVERYTHING": (data / "EVERYTHING.extxyz", everything),
            f"{100 * a.fraction:.0f} % of EVERYTHING": (work / "subset.extxyz", subset)}
    pots = {}
    for name, (path, structures) in sets.items():
        out = work / (path.stem + ".almtp")
        if name == "EVERYTHING" and a.everything_potential:
            out = work / Path(a.everything_potential).name
            if not out.exists():
                atomic_write(out, Path(a.everything_potential).read_bytes())
        if not out.exists():
            sh(MTPJAX + ["fit", path, "--level", str(a.level), "--cutoff", f"{a.cutoff:g}", "--output", out, "-q"],
               steps_log)
        pot = make_potential(str(out), species=["Mg"])
        t0 = time.perf_counter()
        active = build_active_set(pot, typed(structures), mode="nbh")
        save_active_set(out, active, pot)
        steps_log.append((f"active set of {out.name} (nbh mode, {len(structures)} structures)", time.perf_counter() - t0))
        pots[name] = (pot, active, len(structures), sum(len(s) for s in structures))
    oracle = make_potential("zhou:Mg")
    sims = simulations(oracle)
    table, curves = {}, {}
    for sim, (atoms, ensemble, temp, pres) in sims.items():
        for name, (pot, active, *_rest) in pots.items():
            t0 = time.perf_counter()
            note = ""
            try:
                r = run_md(pot, atoms, ensemble=ensemble, steps=a.steps, timestep=1.0, temperature=temp, pressure=pres,
                           log_every=100, grade_every=10, active_set=active, gamma_break=1e300, species=["Mg"], seed=1,
                           barostat_time=500.0)
            except MDInstability as err:
                r, note = err.result, f"unstable after step {err.step}"
            g = r.column("grade")
            table[(sim, name)] = (float(np.nanmax(g)), note, time.perf_counter() - t0)
            curves[(sim, name)] = (r.column("time_fs") / 1000.0, g)
            print(sim, name, f"max γ {np.nanmax(g):.4g} {note}", file=sys.stderr, flush=True)
    fig, axes = subplots(1, len(pots), figsize=(11, 4.2), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), pots):
        for sim in sims:
            t, g = curves[(sim, name)]
            ax.semilogy(t, g, label=sim)
        ax.axhline(1.001, color="k", ls=":", lw=0.8)
        ax.axhline(2.1, color="k", ls="--", lw=0.8)
        ax.set_title(f"fitted to {name}")
        ax.set_xlabel("time (ps)")
    np.atleast_1d(axes)[0].set_ylabel("largest grade γ per 100 fs (nbh mode)")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.tight_layout()
    png = Path(a.out).with_suffix(".png")
    fig.savefig(png, dpi=110)
    names = list(pots)
    size = "full size" if a.data else "quick size"
    lines = [f"# Extrapolation grade in MD: EVERYTHING against 10 % of it (paper Section III F, {size})", "",
             f"Command: `python scripts/grade_check.py {' '.join(sys.argv[1:] if argv is None else argv)}` "
             f"({time.perf_counter() - t_start:.0f} s wall)", "",
             f"Machine: {machine()}; JAX device: {jax.devices()[0]}; load average at the end "
             f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} (shared).", "",
             f"Versions: {', '.join(f'{k} {v}' for k, v in versions(('jax', 'jaxlib', 'jax-md', 'ase')).items())}.", "",
             (f"Data: `{data}/EVERYTHING.extxyz` (Zhou EAM Mg). " if a.data else
              "Data: the quickstart's EVERYTHING (`configs/quickstart.toml`, Zhou EAM Mg, space groups 168–230, 1–4 atoms). ")
             + f"Fits: level {a.level}, {a.cutoff:g} Å, `mtpjax fit` defaults"
             + (f" (EVERYTHING: `{Path(a.everything_potential).name}`, fitted beforehand)" if a.everything_potential else "")
             + ". Active sets: neighbourhood mode over each fit's own "
             f"training set. MD: {a.steps} steps of 1 fs, the grade every 10 steps.", "",
             "| training set | structures | atoms |", "|---|---:|---:|"]
    lines += [f"| {n} | {pots[n][2]} | {pots[n][3]} |" for n in names]
    lines += ["", "Largest grade γ per simulation (γ ≤ 1.001: no extrapolation; MLIP writes out above 2.1, stops above 10):", "",
              "| simulation | atoms | " + " | ".join(f"max γ, {n}" for n in names) + " |",
              "|---|---:|" + "---:|" * len(names)]
    for sim, (atoms, *_rest) in sims.items():
        cells = []
        for n in names:
            g, note, _ = table[(sim, n)]
            cells.append(f"{g:.4g}" + (f" ({note})" if note else ""))
        lines.append(f"| {sim} | {len(atoms)} | " + " | ".join(cells) + " |")
    lines += ["", f"![grades]({png.name})", "", "Wall time of each stage:", "", "| stage | s |", "|---|---:|"]
    lines += [f"| `{cmd}` | {t:.0f} |" for cmd, t in steps_log]
    lines += [f"| MD, {sim}, {n} | {table[(sim, n)][2]:.0f} |" for sim in sims for n in names]
    atomic_write(a.out, "\n".join(lines) + "\n")
    print(f"-> {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
