"""Units and Voigt conversions: the one place for both.

mtpjax works in Å, eV, eV/Å and, for stress, eV/Å³ with ASE's sign (positive in tension, σ = -W / V with W the
virial in eV, MLIP's ``PlusStress``). Reported elastic quantities are in GPa.

Voigt order is ASE's (and MLIP's): ``xx, yy, zz, yz, xz, xy`` (indices 0-5 ↔ pairs (0,0), (1,1), (2,2), (1,2),
(0,2), (0,1)). Stress-like tensors (stress eV/Å³, virial eV) keep their off-diagonal components; strain tensors use
engineering shear, γ_ij = 2 ε_ij, as ``ase.stress``. The strain here is the small-strain tensor ε itself (zero for no
deformation); ``ase.stress``'s strain functions work with I + ε instead.

The conversions only index and multiply, so they take numpy or JAX arrays (any leading batch axes, ``(..., 3, 3)``
↔ ``(..., 6)``) and work inside ``jax.jit``. Lists are read as numpy arrays.
"""
from __future__ import annotations

import numpy as np

__all__ = ["EV_PER_A3_TO_GPA", "EV_PER_A2_TO_J_PER_M2", "VOIGT_ORDER", "VOIGT_PAIRS",
           "stress_to_voigt", "voigt_to_stress", "strain_to_voigt", "voigt_to_strain"]

#: 1 eV/Å³ in GPa: 1.6021766208e-19 J / 1e-30 m³ = 160.21766208e9 Pa (CODATA 2014's eV, as ``ase.units``:
#: ``1 / ase.units.GPa``).
EV_PER_A3_TO_GPA = 160.21766208
#: 1 eV/Å² in J/m² (surface and stacking-fault energies): 1.6021766208e-19 J / 1e-20 m² (``ase.units``'s eV).
EV_PER_A2_TO_J_PER_M2 = 16.021766208

#: Names of the six Voigt components, in order.
VOIGT_ORDER = ("xx", "yy", "zz", "yz", "xz", "xy")
#: The (row, column) of the 3x3 tensor of each Voigt component.
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))

_ROW = np.array([p[0] for p in VOIGT_PAIRS])
_COL = np.array([p[1] for p in VOIGT_PAIRS])
#: Voigt index of each entry of the 3x3 tensor.
_FULL = np.array([[0, 5, 4], [5, 1, 3], [4, 3, 2]])
#: Weights of (ε_ij + ε_ji) in the strain Voigt vector: 1/2 on the diagonal, 1 for the engineering shears.
_STRAIN_WEIGHT = np.array([0.5, 0.5, 0.5, 1.0, 1.0, 1.0])
#: ε_ij = γ_ij / 2 off the diagonal.
_HALF_OFF_DIAGONAL = np.array([[1.0, 0.5, 0.5], [0.5, 1.0, 0.5], [0.5, 0.5, 1.0]])


def _array(x):
    return x if hasattr(x, "shape") else np.asarray(x, dtype=float)


def stress_to_voigt(m):
    """Voigt 6-vector (xx, yy, zz, yz, xz, xy) of a stress-like 3x3 tensor (stress eV/Å³ or virial eV; units kept).

    The off-diagonal components are the mean of (i, j) and (j, i), as ``ase.stress.full_3x3_to_voigt_6_stress``.
    Shape ``(..., 3, 3)`` → ``(..., 6)``.
    """
    m = _array(m)
    return 0.5 * (m[..., _ROW, _COL] + m[..., _COL, _ROW])


def voigt_to_stress(v):
    """The symmetric 3x3 tensor of a stress-like Voigt 6-vector (xx, yy, zz, yz, xz, xy; units kept), as
    ``ase.stress.voigt_6_to_full_3x3_stress``. Shape ``(..., 6)`` → ``(..., 3, 3)``."""
    return _array(v)[..., _FULL]


def strain_to_voigt(e):
    """Voigt 6-vector of a small-strain 3x3 tensor ε (dimensionless): (ε_xx, ε_yy, ε_zz, γ_yz, γ_xz, γ_xy) with the
    engineering shear γ_ij = ε_ij + ε_ji. ``ase.stress.full_3x3_to_voigt_6_strain(I + ε)`` gives the same.
    Shape ``(..., 3, 3)`` → ``(..., 6)``."""
    e = _array(e)
    return (e[..., _ROW, _COL] + e[..., _COL, _ROW]) * _STRAIN_WEIGHT


def voigt_to_strain(v):
    """The symmetric small-strain 3x3 tensor ε of a Voigt 6-vector with engineering shear (ε_xx, ε_yy, ε_zz, γ_yz,
    γ_xz, γ_xy; dimensionless): ε_ij = γ_ij / 2 off the diagonal. ``ase.stress.voigt_6_to_full_3x3_strain(v) - I``
    gives the same. Shape ``(..., 6)`` → ``(..., 3, 3)``."""
    return _array(v)[..., _FULL] * _HALF_OFF_DIAGONAL
