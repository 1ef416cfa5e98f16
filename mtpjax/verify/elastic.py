"""Equilibrium properties and elastic constants of the element's ground state (hcp, fcc or bcc), and the phase
energies of the other prototypes relative to it.

The ground state (``ground_state``) is the lowest of the oracle's relaxed hcp, fcc, dhcp and bcc unless given
(:func:`mtpjax.verify.prototypes.ground_state`); both potentials are measured on that lattice. For each potential
(the same code for both):

1. hcp, fcc, dhcp and bcc primitive cells are fully relaxed (cell and positions, ``smax`` default 1e-5 GPa);
   the ground state gives its lattice (hcp: a (Å), c/a; fcc/bcc: the cubic a (Å)), V0 (Å³/atom) and E0 (eV/atom,
   the energy per atom: the cohesive energy for potentials whose isolated atom has zero energy); the other phases
   give E − E_ground (meV/atom) at their own equilibrium.
2. Elastic constants (GPa): the relaxed ground-state cell (hcp: the primitive cell; fcc/bcc: the conventional cube,
   axes along <100>) is strained by ±``delta`` (default 0.1 %) in each Voigt component (shear: engineering strain,
   ε_ij = δ/2), the positions are relaxed at fixed cell (``fmax`` default 1e-6 eV/Å), and
   C_ij = (σ_i(+δ) − σ_i(−δ)) / 2δ with σ the stress (positive in tension). hcp symmetry: C11 = (C11+C22)/2,
   C13 = (C13+C23)/2, C44 = (C44+C55)/2, C66, and C12. Cubic symmetry: C11 = (C11+C22+C33)/3,
   C12 = (C12+C13+C23)/3, C44 = (C44+C55+C66)/3 (the full symmetrised matrix is kept as ``C_matrix_GPa``).
3. The bulk modulus B (GPa): hcp by the Reuss formula of hexagonal crystals (c/a free to relax),
   B = [(C11+C12)C33 − 2C13²] / (C11+C12+2C33−4C13); cubic B = (C11+2C12)/3. And B_eos from a Birch–Murnaghan
   fit of E(V) on ``eos_points`` volumes within ±``eos_range`` of V0, the cell scaled isotropically (c/a fixed).
   (The reference table's B comes from a wider fit and is ~7 % above the small-strain values for Sun's EAM.)

Metrics (per potential, and errors potential − oracle), hcp: ``hcp_a``, ``hcp_c_over_a``, ``hcp_V0``, ``hcp_E0``,
``B_GPa``, ``B_eos_GPa``, ``C11`` … ``C66``, ``dE_fcc_hcp_meV``, ``dE_dhcp_hcp_meV``, ``dE_bcc_hcp_meV``;
fcc (bcc alike): ``fcc_a``, ``fcc_V0``, ``fcc_E0``, ``B_GPa``, ``B_eos_GPa``, ``C11``, ``C12``, ``C44``,
``dE_hcp_fcc_meV``, ``dE_dhcp_fcc_meV``, ``dE_bcc_fcc_meV``; and the relaxation records.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..relax import equilibrium, hex_parameters, prototype, relax
from ..units import EV_PER_A3_TO_GPA, voigt_to_strain
from .prototypes import LATTICES, cubic_parameter, element_of, row, scaled, strained
from .prototypes import ground_state as ground_state_of

PHASES = ("hcp", "fcc", "dhcp", "bcc")


def birch_murnaghan(volumes, energies) -> dict:
    """Third-order Birch–Murnaghan fit: V0 (Å³/atom), E0 (eV/atom), B (GPa), B'. Linear least squares in V^(-2/3)."""
    v, e = np.asarray(volumes, float), np.asarray(energies, float)
    x = v ** (-2.0 / 3.0)
    p = np.polyfit(x, e, 3)
    dp, d2p = np.polyder(p), np.polyder(p, 2)
    roots = [r.real for r in np.roots(dp) if abs(r.imag) < 1e-12 and r.real > 0 and np.polyval(d2p, r.real) > 0]
    if not roots:
        return {"V0": None, "E0": None, "B_GPa": None, "Bp": None}
    x0 = min(roots, key=lambda r: abs(r - np.mean(x)))
    V0 = x0 ** (-1.5)
    # B = V d2E/dV2; with x = V^-2/3: dE/dV = E'(x) dx/dV, dx/dV = -2/3 V^-5/3
    dx = -2.0 / 3.0 * V0 ** (-5.0 / 3.0)
    d2x = 10.0 / 9.0 * V0 ** (-8.0 / 3.0)
    B = V0 * (np.polyval(d2p, x0) * dx**2 + np.polyval(dp, x0) * d2x)
    # B' = -1 - V d3E/dV3 / d2E/dV2 (numerically)
    def d2E(V):
        xx = V ** (-2.0 / 3.0)
        return (np.polyval(d2p, xx) * (-2.0 / 3.0 * V ** (-5.0 / 3.0)) ** 2
                + np.polyval(dp, xx) * (10.0 / 9.0 * V ** (-8.0 / 3.0)))
    h = 1e-4 * V0
    Bp = -1.0 - V0 * (d2E(V0 + h) - d2E(V0 - h)) / (2 * h) / d2E(V0)
    return {"V0": float(V0), "E0": float(np.polyval(p, x0)), "B_GPa": float(B * EV_PER_A3_TO_GPA), "Bp": float(Bp)}


def properties(potential, element: str, delta: float = 1e-3, fmax: float = 1e-6, smax: float = 1e-5,
               eos_range: float = 0.05, eos_points: int = 11, volume: float | None = None,
               ground_state: str = "hcp") -> tuple[dict, list, dict]:
    """(properties, failures, relaxation records) of one potential; see the module docstring. ``ground_state``
    (hcp, fcc or bcc): the lattice whose constants are measured and against which the phase energies are taken."""
    g = ground_state
    if g not in LATTICES:
        raise ValueError(f"ground_state must be one of {LATTICES}, got {g!r}")
    failures, records, props = [], {}, {}
    eq = equilibrium(potential, PHASES, element, volume=volume, smax=smax, fmax=fmax)
    for k, r in eq.items():
        records[f"equilibrium_{k}"] = r.summary()
        if not r.ok:
            failures.append({"structure": f"{k} equilibrium", "reason": f"{r.reason}: {r.message}"})
    h = eq[g]
    if not h.ok or h.atoms is None:
        return props, failures, records
    e0 = h.energy_per_atom
    if g == "hcp":
        hp = hex_parameters(h.atoms)
        v0 = hp["volume"]
        props.update(hcp_a=hp["a"], hcp_c_over_a=hp["c_over_a"], hcp_V0=v0, hcp_E0=e0)
        base = h.atoms
    else:  # the conventional cube, axes along <100> (C11, C12, C44 in the cubic frame)
        v0 = h.atoms.get_volume() / len(h.atoms)
        base = prototype(g, element, v0, cubic=True)
        props.update({f"{g}_a": cubic_parameter(base, g), f"{g}_V0": v0, f"{g}_E0": e0})
    for k in PHASES:
        if k == g:
            continue
        r = eq[k]
        props[f"dE_{k}_{g}_meV"] = (r.energy_per_atom - e0) * 1000.0 if r.ok else None
        props[f"{k}_V0"] = r.atoms.get_volume() / len(r.atoms) if r.ok else None
    # elastic constants
    cells, labels = [], []
    for i in range(6):
        for sgn in (1, -1):
            eps = voigt_to_strain(sgn * delta * np.eye(6)[i])  # ε_ii = ±δ, or engineering shear γ = ±δ
            a = strained(base, eps)
            a.info["name"] = f"{g} strain {i + 1}{'+' if sgn > 0 else '-'}"
            cells.append(a)
            labels.append((i, sgn))
    res = relax(potential, cells, cell="fixed", fmax=fmax)
    C = np.full((6, 6), np.nan)
    sig = {}
    for (i, sgn), r in zip(labels, res):
        records[r.name] = r.summary()
        if not r.ok:
            failures.append({"structure": r.name, "reason": f"{r.reason}: {r.message}"})
            continue
        sig[(i, sgn)] = r.stress * EV_PER_A3_TO_GPA
    for i in range(6):
        if (i, 1) in sig and (i, -1) in sig:
            C[:, i] = (sig[(i, 1)] - sig[(i, -1)]) / (2 * delta)
    Cs = 0.5 * (C + C.T)
    props["C_matrix_GPa"] = [[None if not np.isfinite(x) else float(x) for x in r_] for r_ in Cs]
    if g == "hcp":
        c = {"C11": 0.5 * (Cs[0, 0] + Cs[1, 1]), "C12": Cs[0, 1], "C13": 0.5 * (Cs[0, 2] + Cs[1, 2]),
             "C33": Cs[2, 2], "C44": 0.5 * (Cs[3, 3] + Cs[4, 4]), "C66": Cs[5, 5]}
        denom = c["C11"] + c["C12"] + 2 * c["C33"] - 4 * c["C13"]
        num = (c["C11"] + c["C12"]) * c["C33"] - 2 * c["C13"] ** 2
        B = num / denom
    else:
        c = cubic_constants(Cs)
        B = (c["C11"] + 2 * c["C12"]) / 3.0
    props.update({k: float(v) for k, v in c.items()})
    props["B_GPa"] = float(B) if np.isfinite(B) else None
    # E(V) around V0
    if eos_points >= 5:  # single points in the relaxation's batches (no other compiled program)
        vols = v0 * np.linspace(1 - eos_range, 1 + eos_range, eos_points)
        out = relax(potential, [scaled(base, v) for v in vols], max_steps=0)
        fit = birch_murnaghan(vols, [o.energy / len(base) for o in out])
        props["B_eos_GPa"], props["Bp_eos"] = fit["B_GPa"], fit["Bp"]
    return props, failures, records


def cubic_constants(C) -> dict:
    """C11, C12, C44 (GPa) of a cubic crystal from its 6x6 Voigt matrix in the cube frame, each the mean over its
    symmetry-equivalent entries (C11 = (C11+C22+C33)/3, C12 = (C12+C13+C23)/3, C44 = (C44+C55+C66)/3)."""
    C = np.asarray(C, dtype=float)
    return {"C11": float(np.mean([C[0, 0], C[1, 1], C[2, 2]])), "C12": float(np.mean([C[0, 1], C[0, 2], C[1, 2]])),
            "C44": float(np.mean([C[3, 3], C[4, 4], C[5, 5]]))}


#: (metric, quantity label, unit) of the table rows of an hcp ground state.
ROWS = [
    ("hcp_a", "hcp a", "Å"), ("hcp_c_over_a", "hcp c/a", ""), ("hcp_V0", "hcp V0", "Å³/atom"),
    ("hcp_E0", "hcp energy per atom", "eV/atom"), ("B_GPa", "bulk modulus (Reuss, from C_ij)", "GPa"),
    ("B_eos_GPa", "bulk modulus (BM fit, c/a fixed)", "GPa"),
    ("C11", "C11", "GPa"), ("C12", "C12", "GPa"), ("C13", "C13", "GPa"), ("C33", "C33", "GPa"), ("C44", "C44", "GPa"),
    ("C66", "C66", "GPa"),
    ("dE_fcc_hcp_meV", "E(fcc) − E(hcp)", "meV/atom"), ("dE_dhcp_hcp_meV", "E(dhcp) − E(hcp)", "meV/atom"),
    ("dE_bcc_hcp_meV", "E(bcc) − E(hcp)", "meV/atom"),
]


def rows_for(ground_state: str = "hcp") -> list:
    """(metric, quantity label, unit) of the table rows for a ground state (hcp: :data:`ROWS`; fcc, bcc: the cubic
    lattice parameter, V0, E0, B, C11, C12, C44 and the other phases' energies relative to the ground state)."""
    g = ground_state
    if g == "hcp":
        return list(ROWS)
    return [(f"{g}_a", f"{g} a (cubic)", "Å"), (f"{g}_V0", f"{g} V0", "Å³/atom"),
            (f"{g}_E0", f"{g} energy per atom", "eV/atom"), ("B_GPa", "bulk modulus ((C11+2C12)/3)", "GPa"),
            ("B_eos_GPa", "bulk modulus (BM fit)", "GPa"),
            ("C11", "C11", "GPa"), ("C12", "C12", "GPa"), ("C44", "C44", "GPa")] + [
        (f"dE_{k}_{g}_meV", f"E({k}) − E({g})", "meV/atom") for k in PHASES if k != g]


def _figure(pm: dict, po: dict, path: Path, g: str = "hcp") -> Path | None:
    from ..plotting import subplots

    keys = ["C11", "C12", "C13", "C33", "C44", "C66"] if g == "hcp" else ["C11", "C12", "C44"]
    fig, (ax, bx) = subplots(1, 2, figsize=(9, 3.5))
    x = np.arange(len(keys))
    ax.bar(x - 0.2, [pm.get(k, np.nan) or np.nan for k in keys], 0.4, label="potential")
    ax.bar(x + 0.2, [po.get(k, np.nan) or np.nan for k in keys], 0.4, label="oracle")
    ax.set_xticks(x, keys)
    ax.set_ylabel("GPa")
    ax.set_title(f"{g} elastic constants")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.25)
    ax.legend(ncol=2, loc="upper left")
    others = [k for k in PHASES if k != g]
    keys2 = [f"dE_{k}_{g}_meV" for k in others]
    x2 = np.arange(len(keys2))
    bx.bar(x2 - 0.2, [pm.get(k, np.nan) or np.nan for k in keys2], 0.4, label="potential")
    bx.bar(x2 + 0.2, [po.get(k, np.nan) or np.nan for k in keys2], 0.4, label="oracle")
    bx.set_xticks(x2, others)
    bx.set_ylabel(f"E − E({g}) (meV/atom)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def run(potential, oracle, outdir: Path, *, element: str | None = None, delta: float = 1e-3, fmax: float = 1e-6,
        smax: float = 1e-5, eos_range: float = 0.05, eos_points: int = 11, quick: bool = False,
        figures: bool = True, ground_state: str | None = None) -> dict:
    """Equilibrium lattice, elastic constants (GPa) and phase energies (meV/atom) of ``potential`` and ``oracle``.

    Options: ``element`` (default: the potentials' common one), ``delta`` (strain, default 1e-3), ``fmax`` (eV/Å)
    and ``smax`` (GPa) relaxation tolerances, ``eos_range``/``eos_points`` of the B_eos fit (< 5 points: skipped;
    ``quick`` skips it), ``figures``, ``ground_state`` (hcp, fcc or bcc; default: the oracle's lowest prototype,
    :func:`mtpjax.verify.prototypes.ground_state`).
    Metrics: {"potential": {...}, "oracle": {...}, "error": {...}, "relaxations": {...}, "ground_state", "time_s"}.
    """
    t0 = time.perf_counter()
    element = element_of(potential, oracle, element)
    g = ground_state_of(oracle, element, ground_state)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if quick:
        eos_points = 0
    out = {}
    failures = []
    for who, pot in (("potential", potential), ("oracle", oracle)):
        props, fails, rec = properties(pot, element, delta=delta, fmax=fmax, smax=smax, eos_range=eos_range,
                                       eos_points=eos_points, ground_state=g)
        out[who] = (props, rec)
        failures += [{"structure": f"{who}: {f['structure']}", "reason": f["reason"]} for f in fails]
    pm, po = out["potential"][0], out["oracle"][0]
    spec = rows_for(g)
    rows = [row("elastic", q, unit, pm.get(k), po.get(k)) for k, q, unit in spec]
    metrics = {
        "potential": pm, "oracle": po,
        "error": {k: r["error"] for (k, _, _), r in zip(spec, rows)},
        "relaxations": {"potential": out["potential"][1], "oracle": out["oracle"][1]},
        "ground_state": g,
    }
    figs = []
    if figures:
        figs.append(_figure(pm, po, outdir / "elastic.png", g))
    metrics["time_s"] = time.perf_counter() - t0
    return {"metrics": metrics, "figures": [str(f) for f in figs if f], "rows": rows, "failures": failures}
