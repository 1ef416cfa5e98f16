"""The paper's Fig. 13 for hcp Mg, an MTP against its oracle: E(T) at p = 0 up to melting (heating in steps, melting
detected from the energy jump and the order parameter), a(T) and c(T), E(p) at 300 K from -3 to 12 GPa, and the
melting temperature from two-phase (solid-liquid coexistence) runs; the two-phase method checked on the Sun 2006 EAM
(published melting point 914 K).

    python scripts/fig13_melting.py [--quick] [--mtp POT] [--eam EAM] [--work DIR]
                                    [--stages twophase heat heat_primitive pressure pressure_primitive]

Everything runs through :mod:`mtpjax.md.melting` (MTK NPT of :func:`mtpjax.md.run_md`, dt 2 fs), the oracle and the
MTP through the same code. The heating curve (stage ``heat``) runs an orthohexagonal hcp supercell (``--heat-repeat``,
4-atom cells a × √3a × c) with the barostat on the three cell lengths only (``--heat-couple aniso``, LAMMPS's
``fix npt aniso``), so that a and c come from the cell lengths up to melting; stage ``heat_primitive`` is the earlier
heating curve, the primitive cell repeated (``--hcp-repeat``) under the full-cell barostat, where a and c come from
bond vectors only (and fail once the crystal changes its supercell). The pressure scan (stage ``pressure``) runs the
same orthohexagonal cell under the same barostat; ``pressure_primitive`` is the earlier scan of the primitive cell
under the full-cell barostat. Each stage's result is cached as JSON in ``--work`` (a rerun skips what is
there; ``--fresh`` ignores it), then ``docs/benchmarks/melting.md`` and ``docs/benchmarks/fig13.png`` are written from
the cache.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import mtpjax  # noqa: F401  (float64 before jax)

import numpy as np
from ase.build import bulk

from mtpjax.io.files import atomic_path, atomic_write, machine, read_json, versions, write_json
from mtpjax.md import melting as M
from mtpjax.oracles import make_potential

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MTP = SHARED / "bench" / "fit" / "mlip3_l16_rc6p5.almtp"
EAM = SHARED / "data" / "potentials" / "Mg_mm.eam.fs"
PUBLISHED_TM = 914.0  # K, Sun et al. 2006 (J. Phys.: Condens. Matter 18, 1353 (2006)) for this EAM's coexistence runs


def potentials(args):
    pots = {}
    if "eam" in args.which:
        pots["eam"] = make_potential(str(args.eam))
    if "mtp" in args.which:
        pots["mtp"] = mtpjax.load_mtp(str(args.mtp), species=["Mg"])
    return pots


def cached(work: Path, name: str, fresh: bool, fn):
    path = work / f"{name}.json"
    if path.exists() and not fresh:
        print(f"[{name}] cached: {path}", flush=True)
        return read_json(path)
    t0 = time.perf_counter()
    out = fn()
    out["wall_s_total"] = time.perf_counter() - t0
    write_json(path, out)
    print(f"[{name}] done in {out['wall_s_total']:.0f} s", flush=True)
    return out


def start_cell(args, cell):
    """(atoms, repeat, cell_repeat, barostat coupling): the orthohexagonal supercell (``--heat-repeat``) under
    ``--heat-couple``, or the primitive cell repeated (``--hcp-repeat``) under the full-cell barostat."""
    if cell == "ortho":
        rep = tuple(args.heat_repeat)
        return M.orthogonal_hcp("Mg", 3.21, 5.21, rep), rep, rep, args.heat_couple
    rep = tuple(args.hcp_repeat)
    return bulk("Mg", "hcp", a=3.21, c=5.21).repeat(rep), rep, None, "full"


def heat(pot, args, cell="ortho"):
    atoms, rep, cell_repeat, couple = start_cell(args, cell)
    rows = M.heating_curve(pot, atoms, args.temperatures, steps_per_T=args.steps_per_T, progress=args.progress,
                           cell_repeat=cell_repeat, npt_couple=couple,
                           callback=lambda r: print(f"  T {r.temperature:6.0f} K  E {r.energy:.4f} eV/atom  "
                                                    f"V {r.volume:.3f}  a {r.a_cell:.4f} ({r.a_cell_y:.4f})  c {r.c_cell:.4f}"
                                                    f"  bonds: a {r.a:.4f}  c {r.c:.4f}  q6 {r.q6:.3f}  "
                                                    f"solid {r.solid:.2f}  {r.wall_s:.0f} s", flush=True))
    det = M.detect_melting(rows)
    return {"atoms": len(atoms), "repeat": list(rep), "cell": cell, "couple": couple,
            "steps_per_T": args.steps_per_T, "rows": [r.as_dict() for r in rows],
            "melting": None if det is None else {"T_solid": det[1], "T_melted": det[2], "jump_eV": det[3]}}


def pressure(pot, args, cell="ortho"):
    atoms, rep, cell_repeat, couple = start_cell(args, cell)
    rows = M.pressure_scan(pot, atoms, args.pressures, temperature=300.0, steps=args.steps_per_p,
                           progress=args.progress, cell_repeat=cell_repeat, npt_couple=couple,
                           callback=lambda r: print(f"  p {r.pressure:5.1f} GPa  <p> {r.p_mean:6.2f}  E {r.energy:.4f}  "
                                                    f"V {r.volume:.3f}  a {r.a:.4f}  c {r.c:.4f}  {r.wall_s:.0f} s", flush=True))
    return {"atoms": len(atoms), "repeat": list(rep), "cell": cell, "couple": couple, "steps": args.steps_per_p,
            "rows": [r.as_dict() for r in rows]}


def twophase(pot, args, temps, repeat, steps, guess):
    crystal = M.orthogonal_hcp("Mg", 3.25, 5.31, repeat)
    t0 = time.perf_counter()
    start, info = M.prepare_two_phase(pot, crystal, temperature=guess, melt_temperature=args.melt_temperature,
                                      equil_steps=args.equil_steps,
                                      melt_steps=args.melt_steps, quench_steps=args.quench_steps, progress=args.progress)
    info["prepare_wall_s"] = time.perf_counter() - t0
    info["atoms"], info["atoms_crystal"], info["repeat"] = len(start), len(crystal), list(repeat)
    info["solid_fraction_start"] = M.solid_fraction(start)
    print(f"  start: {len(start)} atoms (crystal {len(crystal)}), solid fraction {info['solid_fraction_start']:.2f}, "
          f"{info['prepare_wall_s']:.0f} s", flush=True)
    runs = []
    for T in temps:
        r = M.two_phase_run(pot, start, T, steps=steps, start_temperature=guess, frame_every=args.frame_every,
                            progress=args.progress)
        print(f"  T {T:6.0f} K  solid {r.solid[0]:.2f} -> {r.solid[-1]:.2f}  rate {r.solid_rate:+.4f}/ps  "
              f"dE/dt {r.energy_rate:+.2e} eV/atom/ps  {r.outcome}  {r.wall_s:.0f} s", flush=True)
        runs.append(r)
    try:
        tm = M.coexistence_melting_point(runs)
    except M.MeltingError as err:
        tm = {"error": str(err)}
    return {"guess": guess, "steps": steps, "start": info, "runs": [r.as_dict() for r in runs], "melting_point": tm}


# ----------------------------------------------------------------------------------------------------- report

def _num(r, k):
    return float("nan") if r.get(k) is None else float(r[k])  # JSON keeps NaN as null


def bond_lattice(r):
    """(a, c) of a row from bond vectors, NaN where they do not give its volume (not one hcp crystal: see
    M.hcp_consistent)."""
    a, c = _num(r, "a"), _num(r, "c")
    return (a, c) if M.hcp_consistent(a, c, r["volume"]) else (float("nan"), float("nan"))


def cell_lattice(r):
    """(a_x = Lx / nx, a_y = Ly / (√3 ny), c = Lz / nz) of a row of an orthohexagonal cell, NaN where it has none or
    where a_x and a_y are more than M.HEXAGONAL_TOLERANCE apart (see M.cell_lattice_parameters)."""
    a_x, a_y, c = _num(r, "a_cell"), _num(r, "a_cell_y"), _num(r, "c_cell")
    ok = np.isfinite(a_x * a_y * c) and abs(a_x / a_y - 1) <= M.HEXAGONAL_TOLERANCE
    return (a_x, a_y, c) if ok else (float("nan"),) * 3


def lattice(r):
    """(a, c) of a row: from the orthohexagonal cell's lengths where the row has them (a from the basal area,
    a = sqrt(a_x a_y) = sqrt(Lx Ly / (√3 nx ny)); c = Lz / nz), else from bond vectors (:func:`bond_lattice`)."""
    if "a_cell" in r:
        a_x, a_y, c = cell_lattice(r)
        return float(np.sqrt(a_x * a_y)), c
    return bond_lattice(r)


LABEL = {"eam": "Sun 2006 EAM (oracle)", "mtp": "MTP level 16"}
COLOR = {"eam": "C0", "mtp": "C3"}


def melting_of(heat):
    """The heating curve's melting (recomputed from the rows, so a cached stage follows the present rule)."""
    det = M.detect_melting([M.StateRow(**r) for r in heat["rows"]])
    return None if det is None else {"T_solid": det[1], "T_melted": det[2], "jump_eV": det[3]}


def figure(data, path):
    from mtpjax.plotting import subplots

    fig, ax = subplots(2, 3, figsize=(14, 8.5))
    ax = ax.ravel()
    for key, d in data.items():
        kw = dict(color=COLOR[key], label=LABEL[key])
        if "heat" in d:
            rows = d["heat"]["rows"]
            T = [r["temperature"] for r in rows]
            ax[0].plot(T, [r["energy"] for r in rows], "o-", **kw)
            ax[1].plot(T, [lattice(r)[0] for r in rows], "o-", **kw)
            ax[2].plot(T, [lattice(r)[1] for r in rows], "o-", **kw)
            if any("a_cell" in r for r in rows):  # the bond-vector cross-check
                ax[1].plot(T, [bond_lattice(r)[0] for r in rows], "x", color=COLOR[key], label=f"{key.upper()}, bond vectors")
                ax[2].plot(T, [bond_lattice(r)[1] for r in rows], "x", color=COLOR[key], label=f"{key.upper()}, bond vectors")
            ax[3].plot(T, [r["q6"] for r in rows], "o-", **kw)
            if melting_of(d["heat"]):
                for a in (ax[0], ax[3]):
                    a.axvline(melting_of(d["heat"])["T_melted"], color=COLOR[key], ls=":", lw=1)
        if "heat_primitive" in d:
            rows = d["heat_primitive"]["rows"]
            T = [r["temperature"] for r in rows]
            kw2 = dict(color=COLOR[key], alpha=0.5, label=f"{key.upper()}, primitive cell, full-cell barostat")
            ax[0].plot(T, [r["energy"] for r in rows], "s--", ms=3, **kw2)
            ax[3].plot(T, [r["q6"] for r in rows], "s--", ms=3, **kw2)
        if "pressure" in d or "pressure_primitive" in d:
            rows = d["pressure" if "pressure" in d else "pressure_primitive"]["rows"]
            ax[4].plot([r["p_mean"] for r in rows], [r["energy"] for r in rows], "o-", **kw)
        if "twophase" in d:
            for k, r in enumerate(d["twophase"]["runs"]):
                ls = "-" if key == "eam" else "--"
                ax[5].plot(r["time_ps"], r["solid"], ls, color=f"C{k}", label=f"{key.upper()} {r['temperature']:.0f} K")
    ax[0].set(xlabel="T (K)", ylabel="E_pot (eV/atom)", title="E(T), p = 0, heating in steps")
    ax[1].set(xlabel="T (K)", ylabel="a (Å)", title="a(T), p = 0 (lines: cell lengths)")
    ax[2].set(xlabel="T (K)", ylabel="c (Å)", title="c(T), p = 0 (lines: cell lengths)")
    ax[3].set(xlabel="T (K)", ylabel="mean q̄6", title="order parameter (hcp 0.484, liquid ~0.15)")
    ax[4].set(xlabel="p (GPa)", ylabel="E_pot (eV/atom)", title="E(p), 300 K")
    ax[5].set(xlabel="t (ps)", ylabel="solid fraction", title="two-phase runs (p = 0)")
    for a in ax[:5]:
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    ax[5].legend(fontsize=7, ncol=2)
    ax[5].grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def report(data, args, out: Path, walls: dict):
    v = versions()
    L = [f"# Fig. 13: hcp Mg up to melting, MTP against its oracle (`mtpjax.md.melting`)", "",
         f"Command: `{' '.join(['python', 'scripts/fig13_melting.py'] + sys.argv[1:])}`", "",
         f"Machine: {machine()}; load average at the end {', '.join(f'{x:.1f}' for x in __import__('os').getloadavg())} "
         "(a shared 2-core machine: other agents' jobs ran at the same time, so wall times are upper bounds).", "",
         "Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + ".", "",
         f"Potentials: oracle `{Path(args.eam).name}` (Sun, Mendelev et al. 2006 EAM/FS, JAX `TabulatedEAM`); MTP "
         f"`{Path(args.mtp).name}` (level 16, cutoff 6.5 Å, fitted by MLIP-3 to this EAM's labels).", "",
         "MD: MTK NPT (`npt_mtk`, thermostat 100 fs, barostat 1000 fs; the full cell, except where a section says "
         "`aniso`: the three lengths of an orthogonal cell only), dt = 2 fs, through "
         "`mtpjax.md.run_md`; order parameter: per-atom averaged Steinhardt q̄6 over the 12 nearest neighbours "
         f"(Lechner–Dellago), an atom solid when q̄6 ≥ {M.SOLID_THRESHOLD} (perfect hcp 0.484, liquid ~0.15).", ""]
    L += ["Wall time of each stage (s): " + ", ".join(f"{k} {x:.0f}" for k, x in walls.items()) + ".", ""]
    # melting temperatures
    L += ["## Melting temperatures", "", "| potential | two-phase bracket (K) | two-phase estimate (K) | heating curve: "
          "last solid / first melted (K) | E above the solid's extrapolation at melting (eV/atom) | earlier heating curve "
          "(primitive cell, full-cell barostat): last solid / first melted (K), jump (eV/atom) |", "|---|---|---:|---|---:|---|"]
    for key, d in data.items():
        tp = d.get("twophase", {}).get("melting_point", {})
        br = f"{tp['bracket'][0]:.0f} – {tp['bracket'][1]:.0f}" if "bracket" in tp else (tp.get("error", "not run") if tp else "not run")
        est = f"{tp['estimate']:.0f} (line through all runs: {tp['fit']:.0f})" if "estimate" in tp else ""
        hm = melting_of(d["heat"]) if "heat" in d else None
        hs = f"{hm['T_solid']:.0f} / {hm['T_melted']:.0f}" if hm else ("not melted" if "heat" in d else "not run")
        hp = melting_of(d["heat_primitive"]) if "heat_primitive" in d else None
        hps = f"{hp['T_solid']:.0f} / {hp['T_melted']:.0f}, {hp['jump_eV']:.3f}" if hp else ("not melted" if "heat_primitive" in d else "")
        L.append(f"| {LABEL[key]} | {br} | {est} | {hs} | {hm['jump_eV']:.3f} | {hps} |" if hm else
                 f"| {LABEL[key]} | {br} | {est} | {hs} | | {hps} |")
    L += ["", f"Published melting point of the Sun 2006 EAM: {PUBLISHED_TM:.0f} K (coexistence; experiment 923 K). "
          "The heating curve melts the periodic crystal only when superheated (no interface to nucleate from), so "
          "its melting temperature is an upper bound; the two-phase runs give the melting point.", ""]
    for key, d in data.items():
        if "twophase" in d:
            tp = d["twophase"]
            s = tp["start"]
            L += [f"## Two-phase runs: {LABEL[key]}", "",
                  f"Start: orthogonal hcp {s['repeat']} (4-atom cells, x along a, y along √3a, z along c), "
                  f"{s['atoms_crystal']} atoms, equilibrated by NPT at {tp['guess']:.0f} K; a copy melted at fixed cell "
                  f"(Langevin, 1.6 × {tp['guess']:.0f} K) and brought back to {tp['guess']:.0f} K; solid for z < L/2, liquid "
                  f"above, liquid atoms within 2.3 Å of a solid atom dropped: {s['atoms']} atoms, solid fraction "
                  f"{s['solid_fraction_start']:.2f} (basal interfaces). Then NPT (p = 0) for {tp['steps']} steps "
                  f"({tp['steps'] * 2 / 1000:.0f} ps) at each T; rates are least-squares slopes after 2 ps.", "",
                  "| T (K) | solid fraction start → end | rate (1/ps) | dE_pot/dt (meV/atom/ps) | outcome | wall (s) |",
                  "|---:|---|---:|---:|---|---:|"]
            for r in tp["runs"]:
                L.append(f"| {r['temperature']:.0f} | {r['solid'][0]:.2f} → {r['solid'][-1]:.2f} | {r['solid_rate']:+.4f} | "
                         f"{1000 * r['energy_rate']:+.3f} | {r['outcome']} | {r['wall_s']:.0f} |")
            L.append("")
    for stage in ("heat", "heat_primitive"):
        for key, d in data.items():
            if stage not in d:
                continue
            h = d[stage]
            ortho = h.get("cell") == "ortho"
            cell = (f"orthogonal hcp {h['repeat']} (4-atom cells a × √3a × c; x along a, z along c), {h['atoms']} atoms, "
                    f"MTK barostat `{h['couple']}`" + (" (the three cell lengths only, no shear)" if h["couple"] == "aniso" else "")
                    if ortho else f"hcp {h['repeat']} ({h['atoms']} atoms), full-cell MTK barostat")
            title = "Heating curve" if stage == "heat" else "Earlier heating curve (primitive cell, full-cell barostat)"
            L += [f"## {title}: {LABEL[key]}", "", f"{cell}, p = 0, "
                  f"{h['steps_per_T']} steps ({h['steps_per_T'] * 2 / 1000:.0f} ps) per temperature, each continuing from "
                  "the last; means over the second half of each."
                  + (" From the cell lengths (logged every 10 steps): a_x = Lx/nx and a_y = Ly/(√3 ny), the two in-plane "
                     "estimates of a; a = √(a_x a_y) (from the basal area, the less noisy); c = Lz/nz. Blank where less "
                     "than half of the atoms are solid or where a_x and a_y are more than "
                     f"{100 * M.HEXAGONAL_TOLERANCE:.0f} % apart (the basal plane no longer hexagonal: the crystal "
                     "rearranged in the cell). Bond-vector a and c (`hcp_lattice_parameters` of 10 frames, blank where "
                     "they miss the volume by > 1 %) as a cross-check." if ortho else ""), ""]
            if ortho:
                L += ["| T (K) | ⟨T⟩ (K) | ⟨p⟩ (GPa) | E_pot (eV/atom) | V (Å³/atom) | a (Å) | a_x (Å) | a_y (Å) | c (Å) "
                      "| c/a | a bonds (Å) | c bonds (Å) | q̄6 | solid |",
                      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            else:
                L += ["| T (K) | ⟨T⟩ (K) | ⟨p⟩ (GPa) | E_pot (eV/atom) | V (Å³/atom) | a (Å) | c (Å) | c/a | q̄6 | solid |",
                      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for r in h["rows"]:
                a, c = lattice(r)
                head = f"| {r['temperature']:.0f} | {r['T_mean']:.0f} | {r['p_mean']:+.3f} | {r['energy']:.4f} | {r['volume']:.3f} "
                if ortho:
                    ab, cb = bond_lattice(r)
                    a_x, a_y, _ = (_num(r, k) for k in ("a_cell", "a_cell_y", "c_cell"))  # shown even where rejected
                    L.append(head + f"| {a:.4f} | {a_x:.4f} | {a_y:.4f} | {c:.4f} | {c / a:.4f} | {ab:.4f} | {cb:.4f} | "
                             f"{r['q6']:.3f} | {r['solid']:.2f} |")
                else:
                    L.append(head + f"| {a:.4f} | {c:.4f} | {c / a:.4f} | {r['q6']:.3f} | {r['solid']:.2f} |")
            L.append("")
    for stage in ("pressure", "pressure_primitive"):
        for key, d in data.items():
            if stage not in d:
                continue
            p = d[stage]
            what = (f"orthohexagonal hcp {p['repeat']} ({p['atoms']} atoms), MTK barostat `{p['couple']}`"
                    + (" (the three cell lengths only, no shear; a and c from the cell lengths)" if p['couple'] == "aniso" else "")
                    if p.get("cell") == "ortho" else
                    f"primitive hcp {p['repeat']} ({p['atoms']} atoms), full-cell barostat, a and c from bond vectors")
            title = "Pressure scan at 300 K" if stage == "pressure" else "Earlier pressure scan at 300 K (primitive cell)"
            L += [f"## {title}: {LABEL[key]}", "", f"{what}, "
                  f"{p['steps']} steps per pressure, each continuing from the last.", "",
                  "| p target (GPa) | ⟨p⟩ (GPa) | E_pot (eV/atom) | V (Å³/atom) | a (Å) | c (Å) | c/a |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
            for r in p["rows"]:
                a, c = lattice(r)
                L.append(f"| {r['pressure']:.1f} | {r['p_mean']:+.3f} | {r['energy']:.4f} | {r['volume']:.3f} | "
                         f"{a:.4f} | {c:.4f} | {c / a:.4f} |")
            L.append("")
    if "mtp" in data and "eam" in data:
        L += ["## MTP against the oracle", ""]
        for stage, name in (("heat", "heating curve"), ("heat_primitive", "earlier heating curve (primitive cell, full-cell barostat)"),
                            ("pressure", "pressure scan"), ("pressure_primitive", "earlier pressure scan (primitive cell, full-cell barostat)")):
            if stage in data["mtp"] and stage in data["eam"]:
                a, b = data["mtp"][stage]["rows"], data["eam"][stage]["rows"]
                n = min(len(a), len(b))
                both_solid = [k for k in range(n) if a[k]["solid"] > 0.5 and b[k]["solid"] > 0.5]
                if both_solid:
                    de = [1000 * (a[k]["energy"] - b[k]["energy"]) for k in both_solid]
                    dv = [100 * (a[k]["volume"] / b[k]["volume"] - 1) for k in both_solid]
                    da = [lattice(a[k])[0] - lattice(b[k])[0] for k in both_solid]
                    dc = [lattice(a[k])[1] - lattice(b[k])[1] for k in both_solid]
                    L.append(f"- {name}, where both are solid ({len(both_solid)} points): E_pot MTP − EAM from "
                             f"{min(de):+.1f} to {max(de):+.1f} meV/atom; V from {min(dv):+.2f} to {max(dv):+.2f} %; a from "
                             f"{np.nanmin(da):+.4f} to {np.nanmax(da):+.4f} Å; c from {np.nanmin(dc):+.4f} to {np.nanmax(dc):+.4f} Å "
                             "(where both are one hcp crystal).")
        L.append("")
    L += ["![Fig. 13](fig13.png)", ""]
    if args.notes:
        L += ["## Notes", ""] + [Path(args.notes).read_text()]
    atomic_write(out, "\n".join(L) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eam", default=str(EAM))
    ap.add_argument("--mtp", default=str(MTP))
    ap.add_argument("--which", nargs="+", default=["eam", "mtp"], choices=["eam", "mtp"])
    ap.add_argument("--stages", nargs="+", default=["twophase", "heat", "pressure"],
                    choices=["twophase", "heat", "heat_primitive", "pressure", "pressure_primitive"])
    ap.add_argument("--mtp-twophase", action="store_true", help="also the MTP's two-phase runs (about 10x the EAM's cost)")
    ap.add_argument("--work", default="/tmp/fig13_melting", help="cache folder for each stage's JSON")
    ap.add_argument("--fresh", action="store_true", help="ignore the cache")
    ap.add_argument("--quick", action="store_true", help="a small, short run of everything (minutes)")
    ap.add_argument("--hcp-repeat", type=int, nargs=3, default=[4, 4, 4], help="primitive hcp cells: the "
                    "pressure_primitive and heat_primitive stages")
    ap.add_argument("--heat-repeat", type=int, nargs=3, default=[5, 3, 5], help="orthohexagonal 4-atom cells of the "
                    "heating curve (5 x 3 x 5 = 300 atoms, 16 x 16.7 x 26.5 Å)")
    ap.add_argument("--heat-couple", choices=["aniso", "full"], default="aniso", help="the heating curve's barostat on the "
                    "orthogonal cell: its three lengths only (aniso) or the full cell")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[300.0, 500.0, 700.0, 800.0, 900.0, 950.0, 1000.0, 1050.0, 1100.0, 1200.0])
    ap.add_argument("--steps-per-T", type=int, default=2500)
    ap.add_argument("--pressures", type=float, nargs="+", default=[-3.0, 0.0, 3.0, 6.0, 9.0, 12.0])
    ap.add_argument("--steps-per-p", type=int, default=1500)
    ap.add_argument("--twophase-repeat", type=int, nargs=3, default=[5, 3, 12])
    ap.add_argument("--twophase-temperatures", type=float, nargs="+", default=[870.0, 890.0, 910.0, 930.0, 950.0])
    ap.add_argument("--twophase-steps", type=int, default=7500)
    ap.add_argument("--twophase-guess", type=float, default=914.0)
    ap.add_argument("--mtp-twophase-repeat", type=int, nargs=3, default=[4, 3, 10])
    ap.add_argument("--mtp-twophase-temperatures", type=float, nargs="+", default=[860.0, 960.0])
    ap.add_argument("--mtp-twophase-steps", type=int, default=5000)
    ap.add_argument("--equil-steps", type=int, default=1500)
    ap.add_argument("--melt-steps", type=int, default=2500)
    ap.add_argument("--melt-temperature", type=float, help="K, melting the copy at fixed cell (default 1.6 x the guess)")
    ap.add_argument("--quench-steps", type=int, default=500)
    ap.add_argument("--frame-every", type=int, default=250)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--notes", help="a Markdown file appended to the report under 'Notes'")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "melting.md"))
    ap.add_argument("--png", default=str(ROOT / "docs" / "benchmarks" / "fig13.png"))
    args = ap.parse_args(argv)
    if args.quick:
        args.hcp_repeat, args.temperatures, args.steps_per_T = [3, 3, 3], [300.0, 900.0, 1500.0], 400
        args.heat_repeat = [3, 2, 3]
        args.pressures, args.steps_per_p = [-3.0, 12.0], 400
        args.twophase_repeat, args.twophase_temperatures, args.twophase_steps = [4, 3, 8], [800.0, 1050.0], 1500
        args.mtp_twophase_repeat, args.mtp_twophase_temperatures, args.mtp_twophase_steps = [4, 3, 8], [800.0, 1050.0], 500
        args.equil_steps, args.melt_steps, args.quench_steps, args.frame_every = 300, 1000, 200, 100
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pots = potentials(args)
    data, walls = {}, {}
    for stage in args.stages:  # the EAM first in every stage: the check of the method before the MTP's cost
        for key in ("eam", "mtp"):
            if key not in pots:
                continue
            if stage == "twophase":
                if key == "eam":
                    fn = lambda: twophase(pots[key], args, args.twophase_temperatures, args.twophase_repeat,  # noqa: E731
                                          args.twophase_steps, args.twophase_guess)
                elif args.mtp_twophase:
                    fn = lambda: twophase(pots[key], args, args.mtp_twophase_temperatures, args.mtp_twophase_repeat,  # noqa: E731
                                          args.mtp_twophase_steps, args.twophase_guess)
                else:
                    continue
            else:
                fn = {"heat": lambda: heat(pots[key], args), "heat_primitive": lambda: heat(pots[key], args, "primitive"),  # noqa: E731
                      "pressure": lambda: pressure(pots[key], args),
                      "pressure_primitive": lambda: pressure(pots[key], args, "primitive")}[stage]
            print(f"[{key} {stage}]", flush=True)
            data.setdefault(key, {})[stage] = cached(work, f"{key}_{stage}", args.fresh, fn)
            walls[f"{key} {stage}"] = data[key][stage]["wall_s_total"]
            figure(data, Path(args.png))
            report(data, args, Path(args.out), walls)
    print(f"wrote {args.out} and {args.png}")


if __name__ == "__main__":
    main()
