"""The oracle's own hcp ground state: lattice parameters a, c (Å), Ω0 (Å³/atom) and the nearest-neighbour
distance (Å) that scale the random structures. Never hard-coded: any element the oracle knows works."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..relax import equilibrium, hex_parameters, relax
from ..units import EV_PER_A3_TO_GPA
from . import oracle as _oracle


def hcp_reference(oracle, element: str) -> dict:
    """hcp a and c relaxed with the oracle by :func:`mtpjax.relax.equilibrium` (a coarse volume scan from ASE's
    reference volume of ``element``, then FIRE on the cell to |σ_ij| ≤ 1e-5 GPa).

    Returns a, c (Å), c_over_a, omega0 (Å³/atom), nn_distance (Å), energy (eV/atom), pressure and residual
    stress (GPa), bulk_modulus_GPa (B0, from the curvature of E(V) over ±2 % isotropic strain of the relaxed cell,
    positions scaled) and energy_scale = B0·Ω0 (eV/atom; the scale of the plausibility rule,
    :data:`mtpjax.oracles.label.MAX_ENERGY_IN_B0_OMEGA0`). Raises ConfigError naming ``element`` if the oracle cannot
    evaluate it.
    """
    _oracle.check_element(oracle, element)
    pot = oracle if _oracle.is_jax(oracle) else _oracle.calculator(oracle)
    r = equilibrium(pot, ["hcp"], element, scan=True)["hcp"]
    if not r.ok or r.atoms is None:
        raise ConfigError("element", f"the oracle cannot relax hcp {element} ({r.reason}: {r.message[:300]})")
    hp = hex_parameters(r.atoms)
    a = hp["a"]
    c = a * hp["c_over_a"]
    st = r.stress * EV_PER_A3_TO_GPA  # Voigt, GPa
    b0 = bulk_modulus(pot, r.atoms)  # eV/Å³
    return {"element": element, "a": a, "c": c, "c_over_a": c / a, "omega0": hp["volume"],
            "nn_distance": float(min(a, np.sqrt(a * a / 3 + c * c / 4))), "energy": float(r.energy_per_atom),
            "pressure_GPa": float(-np.mean(st[:3])), "max_stress_GPa": float(np.abs(st).max()),
            "bulk_modulus_GPa": b0 * EV_PER_A3_TO_GPA, "energy_scale": b0 * hp["volume"]}


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
