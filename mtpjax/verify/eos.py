"""Energy–volume curves of hcp, fcc, dhcp and bcc (paper Figs 6, 7).

Ω0 is the volume per atom of the oracle's fully relaxed ground state (``ground_state``: hcp, fcc or bcc; default
the oracle's lowest prototype, :func:`mtpjax.verify.prototypes.ground_state`; hcp for Mg). Each phase is taken in a fixed shape — the ideal
one (``shape='ideal'``: c/a = √(8/3) for hcp and dhcp, cubic fcc and bcc) or the oracle's relaxed one
(``shape='relaxed'``: its relaxed c/a of hcp and dhcp at Ω0) — and scaled isotropically to volumes
V/Ω0 in [1 − r, 1 + r] for each range r in ``ranges`` (default ±10 % and ±80 %). The *same* structures are
evaluated with both potentials (no relaxation: internal coordinates of these phases are fixed by symmetry).

Points below r_min: a potential with a minimum radius r_min (an MTP's ``min_dist``, Å: its radial basis starts
there and does not model shorter distances) is not compared at volumes where two atoms are closer than r_min
(:func:`below_rmin`, from the host neighbour list). Those points are left out of the RMSEs and counted
(``excluded_below_rmin``); the RMSEs over every point stay in the metrics (``rmse_all_points_meV``). A potential
without r_min (an oracle) keeps every point.

Metrics: per range and phase the energy RMSE (meV/atom) and the RMSE of E(phase) − E(ground state) (meV/atom;
the curves of Fig 7); per potential the BM-fit minimum (V0 Å³/atom, E0 eV/atom, B GPa) of each phase within ±10 %.
Figures: E(V) per range, and E − E_ground vs V per range (axes fit the oracle's curves; the potential's points beyond
them are drawn as ▲/▼ on the edge; points below r_min as ×).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import StructureError
from ..relax import PHASES, equilibrium, hex_parameters, prototype
from .elastic import birch_murnaghan
from .prototypes import element_of, error_row, evaluate_safe, finite_or_none, limits, plot_clipped, rmse, row
from .prototypes import ground_state as ground_state_of


#: Quantity of the row that counts a range's points below r_min (its ``mtp`` column holds the count).
EXCLUDED_ROW = "points below r_min (excluded from the RMSEs)"


def potential_rmin(potential) -> float | None:
    """The potential's minimum radius r_min in Å (an MTP's ``min_dist``); None for a potential without one (an
    oracle) or with r_min ≤ 0."""
    r = getattr(potential, "min_dist", None)
    if r is None:
        return None
    try:
        r = float(r)
    except (TypeError, ValueError):
        return None
    return r if np.isfinite(r) and r > 0 else None


def below_rmin(structures, r_min: float | None) -> np.ndarray:
    """Whether each ase.Atoms of ``structures`` has two atoms closer than ``r_min`` Å (periodic images included;
    :func:`mtpjax.neighbors.pairs` with cutoff r_min, so only the close pairs are listed). All False when ``r_min``
    is None. Overlapping atoms (the neighbour list refuses them) count as below."""
    from ..neighbors import pairs

    out = np.zeros(len(structures), dtype=bool)
    if r_min is None:
        return out
    for k, a in enumerate(structures):
        try:
            i, _, _ = pairs(a.positions, a.cell.array, a.pbc, r_min, name=a.info.get("name") or f"structure {k}")
        except StructureError:
            out[k] = True
            continue
        out[k] = len(i) > 0
    return out


def rmse_meV(a, b, keep=None) -> float | None:
    """RMSE (meV/atom) of energies ``a`` − ``b`` (eV/atom) over the entries where ``keep`` (bool mask; default all)
    is True and both are finite; None when there are none."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if keep is not None:
        keep = np.asarray(keep, bool)
        a, b = a[keep], b[keep]
    e = rmse(a, b)
    return None if e is None else 1000 * e


def excluded_row(test: str, where: str, n: int) -> dict:
    """The row that counts points below r_min left out of the RMSEs (``mtp`` column: the count)."""
    return {"test": test, "quantity": f"{EXCLUDED_ROW} {where}".rstrip(), "unit": "points", "mtp": int(n),
            "oracle": None, "error": None, "relative": False}


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


def _mark_excluded(ax, x, y, lim, mask, colour, label):
    """The potential's points below r_min (``mask``) drawn as ×, clipped to ``lim`` like the others."""
    mask = np.asarray(mask, bool)
    if mask.any():
        plot_clipped(ax, np.asarray(x)[mask], np.asarray(y)[mask], lim, ls="none", marker="x", ms=4, color=colour,
                     label=label)
        return None
    return label


def _figures(outdir: Path, ranges, table, omega0, g: str = "hcp", below=None) -> list:
    from ..plotting import subplots

    below = below or {}
    figs = []
    colours = dict(zip(PHASES, ("C0", "C1", "C2", "C3")))
    for r in ranges:
        tag = f"{round(r * 100)}"
        fig, ax = subplots(figsize=(5.5, 4))
        lim = limits(*[table[(r, p)][2] for p in PHASES])
        xlabel = "below r_min (excluded)"
        n_out = 0
        for p in PHASES:
            v, em, eo = table[(r, p)]
            out = below.get((r, p), np.zeros(len(v), bool))
            n_out += int(out.sum())
            ax.plot(v / omega0, eo, "-", color=colours[p], label=f"{p} oracle")
            plot_clipped(ax, (v / omega0)[~out], em[~out], lim, ls="none", marker="o", ms=3, color=colours[p], mfc="none",
                         label=f"{p} potential")
            xlabel = _mark_excluded(ax, v / omega0, em, lim, out, colours[p], xlabel)
        ax.set_ylim(*lim)
        ax.set_xlabel("V / Ω0")
        ax.set_ylabel("E (eV/atom)")
        ax.set_title(f"E–V, ±{tag} % (Ω0 = {omega0:.3f} Å³)" + (f"; {n_out} below r_min excluded" if n_out else ""))
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = outdir / f"eos_{tag}.png"
        fig.savefig(path, dpi=120)
        figs.append(path)
        fig, ax = subplots(figsize=(5.5, 4))
        others = [p for p in PHASES if p != g]
        v, hm, ho = table[(r, g)]
        lim = limits(0.0, *[1000 * (table[(r, p)][2] - ho) for p in others])
        xlabel = "below r_min (excluded)"
        for p in others:
            _, em, eo = table[(r, p)]
            out = below.get((r, p), np.zeros(len(v), bool)) | below.get((r, g), np.zeros(len(v), bool))
            ax.plot(v / omega0, 1000 * (eo - ho), "-", color=colours[p], label=f"{p} − {g} oracle")
            plot_clipped(ax, (v / omega0)[~out], 1000 * (em - hm)[~out], lim, ls="none", marker="o", ms=3, mfc="none",
                         color=colours[p], label=f"{p} − {g} potential")
            xlabel = _mark_excluded(ax, v / omega0, 1000 * (em - hm), lim, out, colours[p], xlabel)
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
    {range: {phase: ..., "all": ...}}, ``rmse_diff_meV`` {range: {phase: RMSE of E(phase) − E(ground state)}} (both
    over the points at or above the potential's r_min), ``rmse_all_points_meV`` and ``rmse_diff_all_points_meV``
    (the same over every point), ``r_min`` (Å, the potential's; None without one), ``excluded_below_rmin``
    {range: {phase: n, "all": n}} (points with two atoms closer than r_min), ``excluded_diff_below_rmin``
    {range: {phase: n}} (volumes left out of the difference: the phase's or the ground state's point below r_min),
    ``minimum`` {potential|oracle: {phase: {V0, E0, B_GPa}}} (the potential's fit without points below r_min),
    ``curves`` {range: {phase: {V, potential, oracle, below_rmin}}}, ``time_s``.
    Rows: per range, with an r_min, first the count of excluded points (:data:`EXCLUDED_ROW`, unit "points"), then the
    RMSEs over the included points.
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
    r_min = potential_rmin(potential)
    out_all = below_rmin(structures, r_min)
    energies = {}
    for who, pot in (("potential", potential), ("oracle", oracle)):
        res, fails = evaluate_safe(Evaluator(pot), structures)
        failures += [{"structure": f"{who}: {f['structure']}", "reason": f["reason"]} for f in fails]
        energies[who] = np.array([np.nan if r is None else r.energy / len(a) for r, a in zip(res, structures)])
    table, below = {}, {}
    for r in ranges:
        for p in PHASES:
            idx = [k for k, (rr, pp, _) in enumerate(meta) if rr == r and pp == p]
            table[(r, p)] = (np.array([meta[k][2] for k in idx]), energies["potential"][idx], energies["oracle"][idx])
            below[(r, p)] = out_all[idx]
    rm, rd, rm_all, rd_all, excl, excl_d, rows = {}, {}, {}, {}, {}, {}, []
    for r in ranges:
        key = f"{round(r * 100)}%"
        rm[key], rd[key], rm_all[key], rd_all[key], excl[key], excl_d[key] = {}, {}, {}, {}, {}, {}
        if r_min is not None:
            rows.append(excluded_row("eos", f"±{key}", sum(int(below[(r, p)].sum()) for p in PHASES)))
        for p in PHASES:
            v, em, eo = table[(r, p)]
            keep = ~below[(r, p)]
            excl[key][p] = int((~keep).sum())
            rm[key][p] = rmse_meV(em, eo, keep)
            rm_all[key][p] = rmse_meV(em, eo)
            rows.append(error_row("eos", f"energy RMSE {p} ±{key}", "meV/atom", rm[key][p]))
            if p != g:
                _, hm, ho = table[(r, g)]
                keep_d = keep & ~below[(r, g)]
                excl_d[key][p] = int((~keep_d).sum())
                rd[key][p] = rmse_meV(em - hm, eo - ho, keep_d)
                rd_all[key][p] = rmse_meV(em - hm, eo - ho)
                rows.append(error_row("eos", f"RMSE of E({p}) − E({g}) ±{key}", "meV/atom", rd[key][p]))
        em, eo = (np.concatenate([table[(r, p)][c] for p in PHASES]) for c in (1, 2))
        out = np.concatenate([below[(r, p)] for p in PHASES])
        excl[key]["all"] = int(out.sum())
        rm[key]["all"] = rmse_meV(em, eo, ~out)
        rm_all[key]["all"] = rmse_meV(em, eo)
        rows.append(error_row("eos", f"energy RMSE all phases ±{key}", "meV/atom", rm[key]["all"]))
    minimum = {}
    r10 = min(ranges, key=lambda x: abs(x - 0.1))
    for who, col in (("potential", 1), ("oracle", 2)):
        minimum[who] = {}
        for p in PHASES:
            t = table[(r10, p)]
            ok = np.isfinite(t[col]) & (~below[(r10, p)] if who == "potential" else True)
            fit = birch_murnaghan(t[0][ok], t[col][ok]) if ok.sum() >= 5 else {"V0": None, "E0": None, "B_GPa": None}
            minimum[who][p] = {k: finite_or_none(fit.get(k)) for k in ("V0", "E0", "B_GPa")}
    for p in PHASES:
        for k, q, unit in (("V0", "volume at the minimum", "Å³/atom"),
                           ("B_GPa", "bulk modulus (BM fit, fixed shape)", "GPa")):
            rows.append(row("eos", f"{p} {q}", unit, minimum["potential"][p][k], minimum["oracle"][p][k]))
    curves = {f"{round(r * 100)}%": {p: {"V": table[(r, p)][0].tolist(),
                                         "potential": [finite_or_none(x) for x in table[(r, p)][1]],
                                         "oracle": [finite_or_none(x) for x in table[(r, p)][2]],
                                         "below_rmin": below[(r, p)].tolist()} for p in PHASES}
              for r in ranges}
    metrics = {"omega0": omega0, "ground_state": g, "c_over_a": c_over_a or "ideal", "rmse_meV": rm, "rmse_diff_meV": rd,
               "rmse_all_points_meV": rm_all, "rmse_diff_all_points_meV": rd_all, "r_min": r_min,
               "excluded_below_rmin": excl, "excluded_diff_below_rmin": excl_d, "minimum": minimum, "curves": curves}
    figs = _figures(outdir, ranges, table, omega0, g, below) if figures else []
    metrics["time_s"] = time.perf_counter() - t0
    return {"metrics": metrics, "figures": [str(f) for f in figs], "rows": rows, "failures": failures}
