"""Alloys: formation energies of ordered structures and dilute solute energies of a multi-species potential against
its oracle (issue 14).

For every pair (A, B) of the elements that both describe (in the potential's species order), and for each
potential separately (the same code for both):

- elemental references e_A, e_B (eV/atom): the potential's own lowest relaxed energy per atom over ``phases``
  (default hcp, fcc, dhcp, bcc; :func:`mtpjax.relax.equilibrium`, cell and positions to 1e-5);
- ordered structures (:data:`PROTOTYPES`): L1_2 A3B and AB3 (Cu3Au), L1_0 AB (CuAu), B2 AB (CsCl), D0_19 A3B and
  AB3 (Ni3Sn), each started at the Vegard volume x_A v_A + x_B v_B of the oracle's elemental ground-state volumes
  (the same start for both potentials) and relaxed, cell (``cell``, default full) and positions, by
  :func:`mtpjax.relax.relax`:

      ΔH_f = E/N − x_A e_A − x_B e_B                         (meV/atom)

- dilute solutes: one B on a site of a supercell of A's ground state as the oracle finds it (the oracle's relaxed
  cell repeated ``size`` times; hcp ``size × size × (size − 1)``), and one A in B's, relaxed the same way:

      E_sol(B in A) = E(A_{N−1}B) − (N − 1) e_A − e_B         (eV)

Metrics: {"elements", "reference": {potential|oracle: {element: {"phase", "energy_eV", "volume_A3"}}},
"formation": {potential|oracle: {structure: {"dHf_meV", "volume_A3", "space_group"}}}, "solution":
{potential|oracle: {case: {"Esol_eV", "n_atoms"}}}, "error": {...}, "time_s"}; rows per structure and case. A
potential with one species gets ``metrics["skipped"]`` and no rows (the test needs two or more elements).
"""
from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import numpy as np
from ase import Atoms

from ..relax import equilibrium, relax
from .prototypes import finite_or_none, row, space_group, supercell

#: The elemental phases whose lowest relaxed energy is an element's reference.
PHASES = ("hcp", "fcc", "dhcp", "bcc")
#: Ordered structures of a binary A-B: name -> (builder, Strukturbericht symbol, space group, B fraction).
PROTOTYPES = {
    "L1_2 A3B": ("l12", "L1_2", 221, 0.25),
    "L1_2 AB3": ("l12", "L1_2", 221, 0.75),
    "L1_0 AB": ("l10", "L1_0", 123, 0.5),
    "B2 AB": ("b2", "B2", 221, 0.5),
    "D0_19 A3B": ("d019", "D0_19", 194, 0.25),
    "D0_19 AB3": ("d019", "D0_19", 194, 0.75),
}
#: Quantities of the rows: (metrics key, label, unit).
QUANTITIES = (("dHf_meV", "formation energy", "meV/atom"), ("Esol_eV", "solution energy", "eV"))


# --------------------------------------------------------------------------------------------------------- structures
def ordered(kind: str, majority: str, minority: str, volume: float) -> Atoms:
    """An ordered binary at ``volume`` Å³/atom (ideal positions; c/a ideal): ``kind`` l12 (4 atoms, minority on the
    cube corner), l10 (4 atoms, (001) layers alternating, as a cube), b2 (2 atoms), d019 (8 atoms: a 2×2×1 hcp cell
    with one minority atom per basal layer, no two minority atoms nearest neighbours). For l10 and b2 the two
    elements count equally: ``majority`` takes the first sites."""
    if kind == "l12":
        a = (4.0 * volume) ** (1 / 3)
        frac = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
        return Atoms([minority] + [majority] * 3, scaled_positions=frac, cell=np.eye(3) * a, pbc=True)
    if kind == "l10":
        a = (4.0 * volume) ** (1 / 3)
        frac = [[0, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0.5], [0.5, 0, 0.5]]
        return Atoms([majority, majority, minority, minority], scaled_positions=frac, cell=np.eye(3) * a, pbc=True)
    if kind == "b2":
        a = volume ** (1 / 3)
        return Atoms([majority, minority], scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=np.eye(3) * a, pbc=True)
    if kind == "d019":
        q = math.sqrt(8.0 / 3.0)
        a = (4.0 * volume / (math.sqrt(3.0) * q)) ** (1 / 3)
        hcp = Atoms([majority] * 2, scaled_positions=[[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]],
                    cell=[[a, 0, 0], [-0.5 * a, 0.5 * math.sqrt(3.0) * a, 0], [0, 0, q * a]], pbc=True)
        out = hcp.repeat((2, 2, 1))
        lower = [k for k in range(len(out)) if out.get_scaled_positions()[k, 2] < 0.5]
        upper = [k for k in range(len(out)) if k not in lower]
        first = lower[0]  # the upper-layer site farthest from it: no minority-minority nearest neighbours
        second = max(upper, key=lambda k: out.get_distance(first, k, mic=True))
        symbols = out.get_chemical_symbols()
        symbols[first] = symbols[second] = minority
        out.set_chemical_symbols(symbols)
        return out
    raise ValueError(f"unknown ordered structure {kind!r}; known: l12, l10, b2, d019")


def ordered_structures(a: str, b: str, volumes: dict, names=None) -> dict:
    """{name: ase.Atoms} of :data:`PROTOTYPES` (``names``: a subset) for the pair (a, b), each at the Vegard volume
    of ``volumes`` ({element: Å³/atom}). Names in the result read ``L1_2 Al3Mg`` (the formula replaces A/B)."""
    out = {}
    for name in names or PROTOTYPES:
        kind, _, _, xb = PROTOTYPES[name]
        major, minor = (a, b) if xb <= 0.5 else (b, a)
        v = (1 - xb) * volumes[a] + xb * volumes[b]
        atoms = ordered(kind, major, minor, v)
        label = f"{name.split()[0]} {_formula(atoms, (a, b))}"
        atoms.info["name"] = label
        out[label] = atoms
    return out


def _formula(atoms, order) -> str:
    symbols = atoms.get_chemical_symbols()
    counts = [symbols.count(e) for e in order]
    g = math.gcd(*counts)
    return "".join(f"{e}{c // g if c // g > 1 else ''}" for e, c in zip(order, counts) if c)


def host_cell(relaxed: Atoms, phase: str, size: int) -> Atoms:
    """The relaxed primitive cell of ``phase`` repeated: ``size`` along each axis (hcp: ``size − 1`` along c, at
    least 2; dhcp: half of ``size``, at least 1)."""
    reps = {"hcp": (size, size, max(2, size - 1)), "dhcp": (size, size, max(1, size // 2))}.get(phase, (size,) * 3)
    return supercell(relaxed, reps)


# --------------------------------------------------------------------------------------------------------- one potential
def references(potential, elements, phases=PHASES, **kw) -> dict:
    """{element: {"phase", "energy_eV" (per atom), "volume_A3" (per atom), "atoms" (the relaxed cell), "energies"
    ({phase: eV/atom})}}: the lowest of the relaxed ``phases`` of each element under ``potential``."""
    out = {}
    for el in elements:
        res = equilibrium(potential, list(phases), el, **kw)
        e = {k: r.energy_per_atom for k, r in res.items() if r.ok and r.atoms is not None and np.isfinite(r.energy_per_atom)}
        if not e:
            reasons = "; ".join(f"{k}: {r.reason} {r.message[:100]}" for k, r in res.items())
            raise RuntimeError(f"no phase of {el} relaxed ({reasons})")
        best = min(e, key=e.get)
        atoms = res[best].atoms
        out[el] = {"phase": best, "energy_eV": float(e[best]), "volume_A3": float(atoms.get_volume() / len(atoms)),
                   "atoms": atoms, "energies": {k: float(v) for k, v in e.items()}}
    return out


def energies(potential, cases: dict, refs: dict, cell: str = "full", fmax: float = 1e-3, smax: float = 1e-3,
             max_steps: int = 3000) -> tuple[dict, list]:
    """Relax every structure of ``cases`` ({name: (atoms, kind)}, kind ``formation`` or ``solution``) with
    ``potential`` (cell mode ``cell``, positions; ``fmax`` eV/Å, ``smax`` GPa) and return ({name: properties},
    failures) with ΔH_f (meV/atom) or E_sol (eV) against ``refs`` (:func:`references` of the same potential)."""
    names = list(cases)
    res = relax(potential, [cases[n][0] for n in names], cell=cell, positions=True, fmax=fmax, smax=smax,
                max_steps=max_steps, names=names)
    out, failures = {}, []
    for n, r in zip(names, res):
        atoms, kind = cases[n]
        if not r.ok or r.atoms is None:
            failures.append({"structure": n, "reason": f"{r.reason}: {r.message[:200]}"})
        if r.atoms is None or not np.isfinite(r.energy):
            continue
        symbols = atoms.get_chemical_symbols()
        e_ref = sum(refs[s]["energy_eV"] for s in symbols)  # eV: Σ over atoms of their element's reference
        props = {"n_atoms": len(atoms), "volume_A3": float(r.atoms.get_volume() / len(atoms)),
                 "energy_eV": float(r.energy), "converged": bool(r.ok)}
        if kind == "formation":
            props["dHf_meV"] = 1e3 * (float(r.energy) - e_ref) / len(atoms)
            props["space_group"] = space_group(r.atoms)
        else:
            props["Esol_eV"] = float(r.energy) - e_ref
        out[n] = props
    return out, failures


def solute_cells(elements, refs: dict, size: int) -> dict:
    """{"X in Y": (atoms, "solution")}: one X on site 0 of Y's ground-state supercell (``refs``: the oracle's
    :func:`references`), for every ordered pair of ``elements``."""
    out = {}
    for host, solute in itertools.permutations(elements, 2):
        cell = host_cell(refs[host]["atoms"], refs[host]["phase"], size)
        symbols = cell.get_chemical_symbols()
        symbols[0] = solute
        cell.set_chemical_symbols(symbols)
        name = f"{solute} in {host} ({refs[host]['phase']}, {len(cell)} sites)"
        cell.info = {"name": name}
        out[name] = (cell, "solution")
    return out


# --------------------------------------------------------------------------------------------------------- the test
def run(potential, oracle, outdir: Path, *, structures=None, phases=PHASES, solutes: bool = True, size: int = 4,
        cell: str = "full", fmax: float = 1e-3, smax: float = 1e-3, max_steps: int = 3000, quick: bool = False,
        figures: bool = True, elements=None) -> dict:
    """Formation energies (meV/atom) and dilute solution energies (eV) of ``potential`` and ``oracle`` (see the
    module docstring).

    Options: ``structures`` (names of :data:`PROTOTYPES`, default all), ``phases`` (the elemental phases searched
    for each element's reference), ``solutes`` (False: no solute cells), ``size`` (host repetitions, default 4;
    ``quick``: 3), ``cell`` (full | volume | fixed), ``fmax`` (eV/Å), ``smax`` (GPa), ``max_steps``, ``figures``,
    ``elements`` (default: every element both describe, in the potential's order).
    """
    from ..oracles import check_elements

    t0 = time.perf_counter()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    elements = list(elements) if elements else check_elements(potential, oracle)
    if len(elements) < 2:
        return {"metrics": {"skipped": f"the alloy test needs two or more elements; the potentials describe {elements}",
                            "time_s": time.perf_counter() - t0}, "figures": [], "rows": [], "failures": []}
    unknown = [s for s in (structures or ()) if s not in PROTOTYPES]
    if unknown:
        raise ValueError(f"unknown ordered structure {unknown[0]!r}; known: {', '.join(PROTOTYPES)}")
    if quick:
        size = min(size, 3)
    refs = {"oracle": references(oracle, elements, phases)}
    refs["potential"] = references(potential, elements, phases)
    volumes = {el: refs["oracle"][el]["volume_A3"] for el in elements}
    cases = {}
    for a, b in itertools.combinations(elements, 2):
        for name, atoms in ordered_structures(a, b, volumes, structures).items():
            cases[name] = (atoms, "formation")
    if solutes:
        cases.update(solute_cells(elements, refs["oracle"], size))
    got, failures = {}, []
    for who in ("potential", "oracle"):
        pot = potential if who == "potential" else oracle
        props, fails = energies(pot, cases, refs[who], cell, fmax, smax, max_steps)
        got[who] = props
        failures += [{"structure": f"{who}: {f['structure']}", "reason": f["reason"]} for f in fails]
    rows, err = [], {}
    for n, (_, kind) in cases.items():
        key, label, unit = QUANTITIES[0] if kind == "formation" else QUANTITIES[1]
        r = row("alloy", f"{label} ({n})", unit, got["potential"].get(n, {}).get(key), got["oracle"].get(n, {}).get(key))
        rows.append(r)
        err[n] = r["error"]
    for el in elements:
        r = row("alloy", f"reference energy ({el}: {refs['oracle'][el]['phase']} oracle, "
                         f"{refs['potential'][el]['phase']} potential)", "eV/atom",
                refs["potential"][el]["energy_eV"], refs["oracle"][el]["energy_eV"])
        rows.append(r)
    plain = {who: {el: {k: v for k, v in d.items() if k != "atoms"} for el, d in r.items()} for who, r in refs.items()}
    form = {who: {n: p for n, p in got[who].items() if cases[n][1] == "formation"} for who in got}
    sol = {who: {n: p for n, p in got[who].items() if cases[n][1] == "solution"} for who in got}
    metrics = {"elements": elements, "reference": plain, "formation": form, "solution": sol, "error": err,
               "mae_dHf_meV": _mae([err[n] for n in cases if cases[n][1] == "formation"]),
               "mae_Esol_eV": _mae([err[n] for n in cases if cases[n][1] == "solution"])}
    figs = [_figure(cases, got, outdir / "alloy.png")] if figures else []
    metrics["time_s"] = time.perf_counter() - t0
    return {"metrics": metrics, "figures": [str(f) for f in figs], "rows": rows, "failures": failures}


def _mae(values):
    v = [x for x in values if x is not None and np.isfinite(x)]
    return finite_or_none(float(np.mean(np.abs(v)))) if v else None


def _figure(cases, got, path: Path) -> Path:
    """Bars of ΔH_f (meV/atom) and E_sol (eV), potential beside oracle."""
    from ..plotting import subplots

    groups = [("formation", "dHf_meV", "formation energy (meV/atom)"), ("solution", "Esol_eV", "solution energy (eV)")]
    groups = [g for g in groups if any(k == g[0] for _, k in cases.values())]
    fig, axes = subplots(1, len(groups), figsize=(5.5 * len(groups), 4), squeeze=False)
    for ax, (kind, key, label) in zip(axes[0], groups):
        names = [n for n, (_, k) in cases.items() if k == kind]
        x = np.arange(len(names))
        for dx, who, colour in ((-0.2, "oracle", "0.5"), (0.2, "potential", "C0")):
            y = [got[who].get(n, {}).get(key, np.nan) for n in names]
            ax.bar(x + dx, y, width=0.4, label=who, color=colour)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
