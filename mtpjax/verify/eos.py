"""Energy–volume curves of hcp, fcc, dhcp and bcc (paper Figs 6, 7).

Ω0 is the volume per atom of the oracle's fully relaxed ground state (``ground_state``: hcp, fcc or bcc; default
the oracle's lowest prototype, :func:`mtpjax.verify.prototypes.ground_state`; hcp for Mg). Each phase is taken in a fixed shape — the ideal
one (``shape='ideal'``: c/a = √(8/3) for hcp and dhcp, cubic fcc and bcc) or the oracle's relaxed one
(``shape='relaxed'``: its relaxed c/a of hcp and dhcp at Ω0) — and scaled isotropically to volumes
V/Ω0 in [1 − r, 1 + r] for each range r in ``ranges`` (default ±10 % and ±80 %). The *same* structures are
evaluated with both potentials (no relaxation: internal coordinates of these phases are fixed by symmetry).

Metrics: per range and phase the energy RMSE (meV/atom) and the RMSE of E(phase) − E(ground state) (meV/atom;
the curves of Fig 7); per potential the BM-fit minimum (V0 Å³/atom, E0 eV/atom, B GPa) of each phase within ±10 %.
Figures: E(V) per range, and E − E_ground vs V per range (axes fit the oracle's curves; the potential's points beyond
them are drawn as ▲/▼ on the edge).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..relax import PHASES, equilibrium, hex_parameters, prototype
from .elastic import birch_murnaghan
from .prototypes import element_of, error_row, evaluate_safe, finite_or_none, limits, plot_clipped, rmse, row
from .prototypes import ground_state as ground_state_of


def _structures(element, omega0, ranges, points, c_over_a: dict):
    out, meta = [], []
    for r in ranges:
        for v in omega0 * np.linspace(1.0 - r, 1.0 + r, points):
            for p in PHASES:
                a = prototype(p, element, v, c_over_a.get(p))
                a.info["name"] = f"{p} V={v:.4f}"
                out.append(a)
                meta.append((r, p, v))
    return out, meta


def _figures(outdir: Path, ranges, table, omega0, g: str = "hcp") -> list:
    from ..plotting import subplots

    figs = []
    colours = dict(zip(PHASES, ("C0", "C1", "C2", "C3")))
    for r in ranges:
        tag = f"{round(r * 100)}"
        fig, ax = subplots(figsize=(5.5, 4))
        lim = limits(*[table[(r, p)][2] for p in PHASES])
        for p in PHASES:
            v, em, eo = table[(r, p)]
            ax.plot(v / omega0, eo, "-", color=colours[p], label=f"{p} oracle")
            plot_clipped(ax, v / omega0, em, lim, ls="none", marker="o", ms=3, color=colours[p], mfc="none",
                         label=f"{p} potential")
        ax.set_ylim(*lim)
        ax.set_xlabel("V / Ω0")
        ax.set_ylabel("E (eV/atom)")
        ax.set_title(f"E–V, ±{tag} % (Ω0 = {omega0:.3f} Å³)")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = outdir / f"eos_{tag}.png"
        fig.savefig(path, dpi=120)
        figs.append(path)
        fig, ax = subplots(figsize=(5.5, 4))
        others = [p for p in PHASES if p != g]
        v, hm, ho = table[(r, g)]
        lim = limits(0.0, *[1000 * (table[(r, p)][2] - ho) for p in others])
        for p in others:
            _, em, eo = table[(r, p)]
            ax.plot(v / omega0, 1000 * (eo - ho), "-", color=colours[p], label=f"{p} − {g} oracle")
            plot_clipped(ax, v / omega0, 1000 * (em - hm), lim, ls="none", marker="o", ms=3, mfc="none", color=colours[p],
                         label=f"{p} − {g} potential")
        ax.set_ylim(*lim)
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_xlabel("V / Ω0")
        ax.set_ylabel(f"E − E({g}) (meV/atom)")
        ax.set_title(f"phase energies, ±{tag} %")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = outdir / f"eos_diff_{tag}.png"
        fig.savefig(path, dpi=120)
        figs.append(path)
    return figs


def run(potential, oracle, outdir: Path, *, element: str | None = None, ranges=(0.1, 0.8), points: int = 21,
        shape: str = "ideal", quick: bool = False, figures: bool = True, ground_state: str | None = None) -> dict:
    """E–V curves of ``potential`` against ``oracle``.

    Options: ``element``; ``ranges`` (relative volume half-ranges, default (0.1, 0.8)); ``points`` per range and
    phase (default 21; 11 with ``quick``); ``shape`` (``ideal`` | ``relaxed``, see the module docstring); ``figures``;
    ``ground_state`` (hcp, fcc, bcc; default: the oracle's lowest prototype).
    Metrics: ``omega0`` (Å³/atom, the oracle's ground state), ``ground_state``, ``c_over_a`` used, ``rmse_meV``
    {range: {phase: ...}}, ``rmse_diff_meV`` {range: {phase: RMSE of E(phase) − E(ground state)}}, ``minimum``
    {potential|oracle: {phase: {V0, E0, B_GPa}}}, ``time_s``.
    """
    from ..evaluate import Evaluator

    t0 = time.perf_counter()
    element = element_of(potential, oracle, element)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if quick:
        points = min(points, 11)
    failures = []
    g = ground_state_of(oracle, element, ground_state)
    kinds = list(dict.fromkeys([g, "hcp", "dhcp"] if shape == "relaxed" else [g]))
    eq = equilibrium(oracle, kinds, element)
    h = eq[g]
    if not h.ok:
        failures.append({"structure": f"oracle: {g} equilibrium", "reason": f"{h.reason}: {h.message}"})
    omega0 = h.atoms.get_volume() / len(h.atoms)
    c_over_a = {}
    if shape == "relaxed":
        c_over_a = {k: hex_parameters(eq[k].atoms)["c_over_a"] for k in ("hcp", "dhcp")}
    elif shape != "ideal":
        raise ValueError(f"shape must be 'ideal' or 'relaxed', got {shape!r}")
    ranges = tuple(float(r) for r in ranges)
    structures, meta = _structures(element, omega0, ranges, points, c_over_a)
    energies = {}
    for who, pot in (("potential", potential), ("oracle", oracle)):
        res, fails = evaluate_safe(Evaluator(pot), structures)
        failures += [{"structure": f"{who}: {f['structure']}", "reason": f["reason"]} for f in fails]
        energies[who] = np.array([np.nan if r is None else r.energy / len(a) for r, a in zip(res, structures)])
    table = {}
    for r in ranges:
        for p in PHASES:
            idx = [k for k, (rr, pp, _) in enumerate(meta) if rr == r and pp == p]
            table[(r, p)] = (np.array([meta[k][2] for k in idx]), energies["potential"][idx], energies["oracle"][idx])
    rm, rd, rows = {}, {}, []
    for r in ranges:
        key = f"{round(r * 100)}%"
        rm[key], rd[key] = {}, {}
        for p in PHASES:
            v, em, eo = table[(r, p)]
            e = rmse(em, eo)
            rm[key][p] = None if e is None else 1000 * e
            rows.append(error_row("eos", f"energy RMSE {p} ±{key}", "meV/atom", rm[key][p]))
            if p != g:
                _, hm, ho = table[(r, g)]
                d = rmse(em - hm, eo - ho)
                rd[key][p] = None if d is None else 1000 * d
                rows.append(error_row("eos", f"RMSE of E({p}) − E({g}) ±{key}", "meV/atom", rd[key][p]))
        e = rmse(np.concatenate([table[(r, p)][1] for p in PHASES]), np.concatenate([table[(r, p)][2] for p in PHASES]))
        rm[key]["all"] = None if e is None else 1000 * e
        rows.append(error_row("eos", f"energy RMSE all phases ±{key}", "meV/atom", rm[key]["all"]))
    minimum = {}
    r10 = min(ranges, key=lambda x: abs(x - 0.1))
    for who, col in (("potential", 1), ("oracle", 2)):
        minimum[who] = {}
        for p in PHASES:
            t = table[(r10, p)]
            ok = np.isfinite(t[col])
            fit = birch_murnaghan(t[0][ok], t[col][ok]) if ok.sum() >= 5 else {"V0": None, "E0": None, "B_GPa": None}
            minimum[who][p] = {k: finite_or_none(fit.get(k)) for k in ("V0", "E0", "B_GPa")}
    for p in PHASES:
        for k, q, unit in (("V0", "volume at the minimum", "Å³/atom"),
                           ("B_GPa", "bulk modulus (BM fit, fixed shape)", "GPa")):
            rows.append(row("eos", f"{p} {q}", unit, minimum["potential"][p][k], minimum["oracle"][p][k]))
    curves = {f"{round(r * 100)}%": {p: {"V": table[(r, p)][0].tolist(),
                                         "potential": [finite_or_none(x) for x in table[(r, p)][1]],
                                         "oracle": [finite_or_none(x) for x in table[(r, p)][2]]} for p in PHASES}
              for r in ranges}
    metrics = {"omega0": omega0, "ground_state": g, "c_over_a": c_over_a or "ideal", "rmse_meV": rm, "rmse_diff_meV": rd,
               "minimum": minimum, "curves": curves}
    figs = _figures(outdir, ranges, table, omega0, g) if figures else []
    metrics["time_s"] = time.perf_counter() - t0
    return {"metrics": metrics, "figures": [str(f) for f in figs], "rows": rows, "failures": failures}
