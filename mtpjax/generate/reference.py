"""The oracle's own hcp ground state: lattice parameters a, c (Å), Ω0 (Å³/atom) and the nearest-neighbour
distance (Å) that scale the random structures. Never hard-coded: any element the oracle knows works."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..relax import equilibrium, hex_parameters
from ..units import EV_PER_A3_TO_GPA
from . import oracle as _oracle


def hcp_reference(oracle, element: str) -> dict:
    """hcp a and c relaxed with the oracle by :func:`mtpjax.relax.equilibrium` (a coarse volume scan from ASE's
    reference volume of ``element``, then FIRE on the cell to |σ_ij| ≤ 1e-5 GPa).

    Returns a, c (Å), c_over_a, omega0 (Å³/atom), nn_distance (Å), energy (eV/atom), pressure and residual
    stress (GPa). Raises ConfigError naming ``element`` if the oracle cannot evaluate it.
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
    return {"element": element, "a": a, "c": c, "c_over_a": c / a, "omega0": hp["volume"],
            "nn_distance": float(min(a, np.sqrt(a * a / 3 + c * c / 4))), "energy": float(r.energy_per_atom),
            "pressure_GPa": float(-np.mean(st[:3])), "max_stress_GPa": float(np.abs(st).max())}
