"""The oracle's own ground state of an element: the lowest-energy of hcp, fcc and bcc that keeps its space group when
relaxed, whose volume per atom Ω0 (Å³/atom) and nearest-neighbour distance (Å) scale the random structures, plus
the oracle's relaxed hcp a, c (Å) that HESSIAN's hcp cells use. Never hard-coded: any element the oracle knows
works."""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..relax import equilibrium, hex_parameters, lattice_parameters, relax
from ..relax.lattice import SPACE_GROUPS, space_group
from ..units import EV_PER_A3_TO_GPA
from . import oracle as _oracle

#: The phases compared for the ground state (hcp first: it wins a tie, as the recipe of Poul et al. is built on it).
REFERENCE_PHASES = ("hcp", "fcc", "bcc")


def nn_distance(kind: str, volume: float, c_over_a: float | None = None) -> float:
    """Nearest-neighbour distance (Å) of the ideal ``kind`` crystal (hcp, dhcp, fcc, bcc) at ``volume`` Å³/atom
    (``c_over_a`` of the two-layer hexagonal unit; default ideal): fcc a/√2, bcc a√3/2 (cubic a), hexagonal
    min(a, √(a²/3 + c²/4))."""
    a, c = lattice_parameters(kind, volume, c_over_a)
    if kind in ("hcp", "dhcp"):
        c = c / 2.0 if kind == "dhcp" else c
        return float(min(a, math.sqrt(a * a / 3.0 + c * c / 4.0)))
    return float(a / math.sqrt(2.0) if kind == "fcc" else a * math.sqrt(3.0) / 2.0)


def ground_state_reference(oracle, element: str) -> dict:
    """The oracle's ground state of ``element``: hcp, fcc and bcc relaxed by :func:`mtpjax.relax.equilibrium` (a
    coarse volume scan from ASE's reference volume of ``element``, then FIRE on the cell to |σ_ij| ≤ 1e-5 GPa; one
    batched relaxation for a JAX oracle), the lowest energy per atom among those that kept their space group
    (:func:`mtpjax.relax.lattice.space_group`; hcp wins ties).

    Returns phase (the ground state: hcp, fcc or bcc), omega0 (its Å³/atom), nn_distance (its Å), energy (eV/atom),
    pressure and residual stress (GPa), bulk_modulus_GPa (B0, from the curvature of E(V) over ±2 % isotropic strain of
    the relaxed cell, positions scaled) and energy_scale = B0·Ω0 (eV/atom; the scale of the plausibility rule,
    :data:`mtpjax.oracles.label.MAX_ENERGY_IN_B0_OMEGA0`), phase_energies {phase: eV/atom, None where it did not relax
    or left its space group}; and the hcp lattice a, c (Å), c_over_a (of the relaxed hcp; hcp_relaxed False when hcp
    did not relax keeping its symmetry: then ideal c/a at Ω0). For an hcp ground state every value is that of the
    former hcp-only reference. Raises ConfigError naming ``element`` if the oracle cannot evaluate it or no phase
    relaxes.
    """
    _oracle.check_element(oracle, element)
    pot = oracle if _oracle.is_jax(oracle) else _oracle.calculator(oracle)
    eq = equilibrium(pot, list(REFERENCE_PHASES), element, scan=True)
    good, energies = {}, {}
    for k in REFERENCE_PHASES:
        r = eq[k]
        ok = r.ok and r.atoms is not None and np.isfinite(r.energy_per_atom) \
            and space_group(r.atoms) == SPACE_GROUPS[k]
        energies[k] = float(r.energy_per_atom) if ok else None
        if ok:
            good[k] = r
    if not good:
        why = "; ".join(f"{k}: {eq[k].reason or 'left its space group'} {(eq[k].message or '')[:150]}"
                        for k in REFERENCE_PHASES)
        raise ConfigError("element", f"the oracle cannot relax {element} in any of {list(REFERENCE_PHASES)} keeping "
                                     f"its symmetry ({why})")
    phase = min(good, key=lambda k: (energies[k], REFERENCE_PHASES.index(k)))
    r = good[phase]
    omega0 = float(r.atoms.get_volume() / len(r.atoms))
    if "hcp" in good:
        hp = hex_parameters(good["hcp"].atoms)
        a, q = hp["a"], hp["c_over_a"]
        if phase == "hcp":
            omega0 = hp["volume"]
    else:  # no relaxed hcp: ideal c/a at Ω0 for HESSIAN's hcp cells
        a, c = lattice_parameters("hcp", omega0)
        q = c / a
    c = a * q
    dnn = float(min(a, np.sqrt(a * a / 3 + c * c / 4))) if phase == "hcp" else nn_distance(phase, omega0)
    st = r.stress * EV_PER_A3_TO_GPA  # Voigt, GPa
    b0 = bulk_modulus(pot, r.atoms)  # eV/Å³
    return {"element": element, "phase": phase, "a": a, "c": c, "c_over_a": c / a, "hcp_relaxed": "hcp" in good,
            "omega0": omega0, "nn_distance": dnn, "energy": float(r.energy_per_atom),
            "pressure_GPa": float(-np.mean(st[:3])), "max_stress_GPa": float(np.abs(st).max()),
            "bulk_modulus_GPa": b0 * EV_PER_A3_TO_GPA, "energy_scale": b0 * omega0, "phase_energies": energies}


#: The former name (the reference was always hcp); now the ground state, which is hcp for hcp elements.
hcp_reference = ground_state_reference


def bulk_modulus(potential, atoms, strain: float = 0.02) -> float:
    """B0 (eV/Å³) of the relaxed ``atoms`` under ``potential`` (a JAX potential or an ASE calculator): V·d²E/dV²
    per atom from three single points at volumes (1 − ``strain``, 1, 1 + ``strain``)·V, positions scaled, evaluated
    by :func:`mtpjax.relax.relax` with ``max_steps=0`` (the relaxation's own batches: no other compiled program)."""
    v0 = atoms.get_volume() / len(atoms)
    cells = []
    for f in (1.0 - strain, 1.0, 1.0 + strain):
        x = atoms.copy()
        x.set_cell(atoms.cell.array * f ** (1.0 / 3.0), scale_atoms=True)
        cells.append(x)
    e = [float(r.energy) / len(atoms) for r in relax(potential, cells, max_steps=0)]
    dv = strain * v0
    return float(v0 * (e[0] - 2.0 * e[1] + e[2]) / dv**2)
