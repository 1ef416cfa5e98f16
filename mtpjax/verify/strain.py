"""Homogeneous strains of hcp, fcc, dhcp and bcc up to ±60 %.

Each phase at Ω0 (the volume per atom of the oracle's relaxed ground state, ``ground_state`` hcp, fcc or bcc,
default the oracle's lowest prototype (:func:`mtpjax.verify.prototypes.ground_state`); ideal c/a, conventional orientation of the
primitive cells of :func:`mtpjax.verify.prototypes.prototype`) is deformed by x -> x (I + ε) for the three normal
strains (ε_ii = s) and the three shears (ε_ij = ε_ji = s/2, i.e. engineering shear s) with s on ``points``
values in [−``max_strain``, +``max_strain``] (default ±0.6). Internal coordinates are not relaxed. The same
structures are evaluated with both potentials.

Metrics: energy RMSE (meV/atom) per phase and strain component, per phase, and overall; the curves.
Figure: E(s) per phase and component (axes fit the oracle's curves; the potential's points beyond them are drawn
as ▲/▼ on the edge).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..relax import PHASES, equilibrium, prototype
from ..units import VOIGT_ORDER, VOIGT_PAIRS, voigt_to_strain
from .prototypes import element_of, error_row, evaluate_safe, finite_or_none, limits, plot_clipped, rmse, strained
from .prototypes import ground_state as ground_state_of

#: Strain components (Voigt order) and their index pairs.
COMPONENTS = dict(zip(VOIGT_ORDER, VOIGT_PAIRS))


def strain_tensor(component: str, s: float) -> np.ndarray:
    """ε (3x3, dimensionless) of a normal (ε_ii = s) or engineering shear (γ_ij = s: ε_ij = ε_ji = s/2) strain."""
    return voigt_to_strain(s * np.eye(6)[VOIGT_ORDER.index(component)])


def _figure(outdir, table, values):
    from ..plotting import subplots

    fig, axes = subplots(2, len(PHASES), figsize=(3.2 * len(PHASES), 6), sharex=True)
    for col, p in enumerate(PHASES):
        for rowi, comps in enumerate((("xx", "yy", "zz"), ("yz", "xz", "xy"))):
            ax = axes[rowi, col]
            lim = limits(*[table[(p, c)][1] for c in comps])
            for k, c in enumerate(comps):
                em, eo = table[(p, c)]
                ax.plot(values, eo, "-", color=f"C{k}", label=f"{c} oracle")
                plot_clipped(ax, values, em, lim, ls="none", marker="o", ms=2.5, mfc="none", color=f"C{k}",
                             label=f"{c} potential")
            ax.set_ylim(*lim)
            ax.set_title(f"{p} {'normal' if rowi == 0 else 'shear'}")
            if col == 0:
                ax.set_ylabel("E (eV/atom)")
            if rowi == 1:
                ax.set_xlabel("strain s")
            ax.legend(fontsize=6)
    fig.tight_layout()
    path = Path(outdir) / "strain.png"
    fig.savefig(path, dpi=110)
    return path


def run(potential, oracle, outdir: Path, *, element: str | None = None, max_strain: float = 0.6, points: int = 25,
        quick: bool = False, figures: bool = True, ground_state: str | None = None) -> dict:
    """Energies of strained phases, ``potential`` against ``oracle``.

    Options: ``element``; ``max_strain`` (default 0.6); ``points`` per component (default 25; 13 with ``quick``);
    ``figures``; ``ground_state`` (hcp, fcc, bcc; default: the oracle's lowest prototype). Metrics: ``omega0``
    (Å³/atom, of the oracle's ground state), ``ground_state``, ``rmse_meV`` {phase: {component: ..., "all": ...}, "all": ...},
    ``curves``, ``time_s``.
    """
    from ..evaluate import Evaluator

    t0 = time.perf_counter()
    element = element_of(potential, oracle, element)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if quick:
        points = min(points, 13)
    failures = []
    g = ground_state_of(oracle, element, ground_state)
    h = equilibrium(oracle, [g], element)[g]
    if not h.ok:
        failures.append({"structure": f"oracle: {g} equilibrium", "reason": f"{h.reason}: {h.message}"})
    omega0 = h.atoms.get_volume() / len(h.atoms)
    values = np.linspace(-max_strain, max_strain, points)
    structures, meta = [], []
    for p in PHASES:
        base = prototype(p, element, omega0)
        for c in COMPONENTS:
            for s in values:
                a = strained(base, strain_tensor(c, s))
                a.info["name"] = f"{p} {c} {s:+.3f}"
                structures.append(a)
                meta.append((p, c))
    energies = {}
    for who, pot in (("potential", potential), ("oracle", oracle)):
        res, fails = evaluate_safe(Evaluator(pot), structures)
        failures += [{"structure": f"{who}: {f['structure']}", "reason": f["reason"]} for f in fails]
        energies[who] = np.array([np.nan if r is None else r.energy / len(a) for r, a in zip(res, structures)])
    meta = np.array(meta)
    table, rm, rows = {}, {}, []
    for p in PHASES:
        rm[p] = {}
        for c in COMPONENTS:
            sel = (meta[:, 0] == p) & (meta[:, 1] == c)
            table[(p, c)] = (energies["potential"][sel], energies["oracle"][sel])
            e = rmse(*table[(p, c)])
            rm[p][c] = None if e is None else 1000 * e
            rows.append(error_row("strain", f"energy RMSE {p} {c}", "meV/atom", rm[p][c]))
        sel = meta[:, 0] == p
        e = rmse(energies["potential"][sel], energies["oracle"][sel])
        rm[p]["all"] = None if e is None else 1000 * e
        rows.append(error_row("strain", f"energy RMSE {p} (all components)", "meV/atom", rm[p]["all"]))
    e = rmse(energies["potential"], energies["oracle"])
    rm["all"] = None if e is None else 1000 * e
    rows.append(error_row("strain", "energy RMSE (all phases and components)", "meV/atom", rm["all"]))
    curves = {p: {c: {"potential": [finite_or_none(x) for x in table[(p, c)][0]],
                      "oracle": [finite_or_none(x) for x in table[(p, c)][1]]} for c in COMPONENTS} for p in PHASES}
    metrics = {"omega0": omega0, "ground_state": g, "max_strain": max_strain, "rmse_meV": rm, "strains": values.tolist(), "curves": curves}
    figs = [_figure(outdir, table, values)] if figures else []
    metrics["time_s"] = time.perf_counter() - t0
    return {"metrics": metrics, "figures": [str(f) for f in figs], "rows": rows, "failures": failures}
