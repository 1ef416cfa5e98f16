"""Vacancy formation energies in hcp, fcc, dhcp and bcc (paper Figs 10, 11).

For each potential separately (the same code for both): the primitive cell of each phase is fully relaxed; a
``size`` supercell (default 3×3×3; fcc and bcc of the conventional cube with ``cubic``, else of the primitive
cell) loses one atom; positions and the cell are relaxed (``cell``: ``volume`` — hydrostatic, the default;
``full``; ``fixed``) and

    E_f = E(N−1, relaxed) − (N−1)·e_bulk        (eV)

with e_bulk the relaxed bulk energy per atom. Also the unrelaxed E_f, the formation volume
(V(N−1) − (N−1)·v_bulk) / v_bulk (``formation_volume``, in atomic volumes; 1 with a fixed cell) and the largest atomic
displacement during the relaxation (Å, relative to the homogeneous cell deformation). ``hcp443=True`` adds the
4×4×3 hcp cell (96 sites) of the reference table.

Metrics per structure and potential: ``Ef_eV``, ``Ef_unrelaxed_eV``, ``max_displacement_A``,
``formation_volume``, ``n_sites``; errors potential − oracle.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..relax import equilibrium, prototype, relax
from .prototypes import element_of, finite_or_none, row, supercell

PHASES = ("hcp", "fcc", "dhcp", "bcc")


def cases(phases, size, cubic: bool, hcp443: bool) -> list[tuple[str, str, tuple]]:
    """(name, phase, repetitions) of the vacancy cells."""
    size = tuple(np.broadcast_to(np.asarray(size, int), (3,)))
    out = [(f"{p} {'x'.join(map(str, size))}", p, size) for p in phases]
    if hcp443:
        out.append(("hcp 4x4x3", "hcp", (4, 4, 3)))
    return out


def vacancy_cells(base, phase: str, element: str, reps, cubic: bool = True, site: int = 0):
    """(perfect supercell, the same with atom ``site`` removed) of ``phase`` from its relaxed primitive cell ``base``:
    ``reps`` repetitions (of the conventional cube for fcc and bcc with ``cubic``, at ``base``'s volume per atom)."""
    if cubic and phase in ("fcc", "bcc"):
        base = prototype(phase, element, base.get_volume() / len(base), cubic=True)
    perfect = supercell(base, reps)
    vac = perfect.copy()
    del vac[site]
    return perfect, vac


def formation_energies(potential, element: str, phases=PHASES, size=3, cubic: bool = True, hcp443: bool = False,
                       cell: str = "volume", fmax: float = 1e-3, smax: float = 1e-3, max_steps: int = 3000,
                       site: int = 0) -> tuple[dict, list, dict]:
    """({case: properties}, failures, relaxation records) of one potential; see the module docstring."""
    todo = cases(phases, size, cubic, hcp443)
    needed = sorted({p for _, p, _ in todo}, key=PHASES.index)
    eq = equilibrium(potential, needed, element)
    failures, records, out = [], {}, {}
    cells, meta = [], []
    for name, phase, reps in todo:
        e = eq[phase]
        records[f"equilibrium_{phase}"] = e.summary()
        if not e.ok:
            failures.append({"structure": f"{phase} equilibrium", "reason": f"{e.reason}: {e.message}"})
            continue
        perfect, vac = vacancy_cells(e.atoms, phase, element, reps, cubic, site)
        vac.info["name"] = f"{name} vacancy"
        cells.append(vac)
        meta.append((name, phase, len(perfect), e.energy_per_atom, e.atoms.get_volume() / len(e.atoms)))
    if not cells:
        return out, failures, records
    res = relax(potential, cells, cell=cell, fmax=fmax, smax=smax, max_steps=max_steps)
    for (name, phase, n, e_bulk, v_bulk), r in zip(meta, res):
        records[name] = r.summary()
        p = {"n_sites": n, "Ef_unrelaxed_eV": finite_or_none(r.initial_energy - (n - 1) * e_bulk)}
        if r.ok:
            p["Ef_eV"] = r.energy - (n - 1) * e_bulk
            p["max_displacement_A"] = r.max_displacement
            p["formation_volume"] = float((r.atoms.get_volume() - (n - 1) * v_bulk) / v_bulk)
        else:
            failures.append({"structure": f"{name} vacancy", "reason": f"{r.reason}: {r.message}"})
            p["Ef_eV"] = p["max_displacement_A"] = p["formation_volume"] = None
        out[name] = p
    return out, failures, records


def _figure(names, pm, po, path: Path):
    from ..plotting import subplots

    fig, axes = subplots(1, 2, figsize=(9, 3.5))
    x = np.arange(len(names))
    for ax, key, label in ((axes[0], "Ef_eV", "vacancy formation energy (eV)"),
                           (axes[1], "max_displacement_A", "max displacement in relaxation (Å)")):
        vm = [finite_or_none(pm.get(n, {}).get(key)) for n in names]
        vo = [finite_or_none(po.get(n, {}).get(key)) for n in names]
        ax.bar(x - 0.2, [np.nan if v is None else v for v in vm], 0.4, label="potential")
        ax.bar(x + 0.2, [np.nan if v is None else v for v in vo], 0.4, label="oracle")
        ax.set_xticks(x, names, rotation=20)
        ax.set_ylabel(label)
    for ax in axes:
        ax.set_ylim(top=ax.get_ylim()[1] * 1.25)
    axes[0].legend(ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


QUANTITIES = [("Ef_eV", "vacancy formation energy", "eV"),
              ("Ef_unrelaxed_eV", "unrelaxed vacancy formation energy", "eV"),
              ("max_displacement_A", "max displacement in relaxation", "Å"),
              ("formation_volume", "vacancy formation volume", "Ω")]


def run(potential, oracle, outdir: Path, *, element: str | None = None, phases=PHASES, size=3, cubic: bool = True,
        hcp443: bool = False, cell: str = "volume", fmax: float = 1e-3, smax: float = 1e-3, max_steps: int = 3000,
        quick: bool = False, figures: bool = True, ground_state: str | None = None) -> dict:
    """Vacancy formation energies (eV) of ``potential`` and ``oracle``.

    Options: ``element``, ``phases`` (subset of hcp fcc dhcp bcc), ``size`` (supercell repetitions, default 3),
    ``cubic`` (fcc/bcc from the conventional cube), ``hcp443`` (add the 96-site hcp cell), ``cell`` (volume | full |
    fixed), ``fmax`` (eV/Å), ``smax`` (GPa), ``max_steps``, ``quick`` (2×2×2 cells), ``figures``, ``ground_state``
    (hcp, fcc or bcc, as the suite detects it: its cell comes first; the others follow as in :data:`PHASES`).
    Metrics: {"potential": {case: {...}}, "oracle": {...}, "error": {case: {...}}, "relaxations": ..., "time_s"}.
    """
    t0 = time.perf_counter()
    element = element_of(potential, oracle, element)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if quick:
        size = 2
    if ground_state:
        phases = sorted(phases, key=lambda p: (p != ground_state, PHASES.index(p) if p in PHASES else len(PHASES)))
    got, failures = {}, []
    for who, pot in (("potential", potential), ("oracle", oracle)):
        props, fails, rec = formation_energies(pot, element, phases, size, cubic, hcp443, cell, fmax, smax, max_steps)
        got[who] = (props, rec)
        failures += [{"structure": f"{who}: {f['structure']}", "reason": f["reason"]} for f in fails]
    pm, po = got["potential"][0], got["oracle"][0]
    names = [n for n, _, _ in cases(phases, size, cubic, hcp443)]
    rows, err = [], {}
    for n in names:
        a, b = pm.get(n, {}), po.get(n, {})
        err[n] = {}
        for key, q, unit in QUANTITIES:
            r = row("vacancy", f"{q} ({n})", unit, a.get(key), b.get(key))
            rows.append(r)
            err[n][key] = r["error"]
    metrics = {"potential": pm, "oracle": po, "error": err,
               "relaxations": {"potential": got["potential"][1], "oracle": got["oracle"][1]}}
    if ground_state:
        metrics["ground_state"] = ground_state
    figs = [_figure(names, pm, po, outdir / "vacancy.png")] if figures else []
    metrics["time_s"] = time.perf_counter() - t0
    return {"metrics": metrics, "figures": [str(f) for f in figs], "rows": rows, "failures": failures}
