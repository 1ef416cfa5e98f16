"""Force constants (the Hessian of the energy with respect to the atomic positions) as training labels.

    H = force_constants(make_potential("zhou:Mg"), atoms)      # (3N, 3N) eV/Å², exact (jax autodiff)
    attach_force_constants(atoms, H)                            # stored with the structure (extxyz array)
    H = read_force_constants(atoms)                             # (3N, 3N) again, or None

H[3i + a, 3j + b] = d²E / dx_ia dx_jb = -dF_jb / dx_ia (eV/Å²), periodic images moved with their atom (the
Γ-point force constants of the cell: the sum over a structure's images of the real-space force constants).

- A JAX potential (every oracle of :mod:`mtpjax.oracles` but :class:`~mtpjax.oracles.ASEOracle`, and MTPs) gives the
  exact Hessian, :func:`potential_hessian`: ``jax.jacfwd`` of the gradient of the energy at fixed neighbour list
  (forward over reverse; 3N tangents).
- An ASE calculator (or an :class:`~mtpjax.oracles.ASEOracle`, DFT included) gives central finite differences of its
  forces, :func:`finite_difference_force_constants` (2 x 3N force calls, step ``delta`` Å, symmetrised). This is the
  label's recipe only: the training loss (:mod:`mtpjax.fit.residuals`) differentiates the MTP exactly.

**Storage** (:func:`attach_force_constants`): the per-atom array ``atoms.arrays["hessian"]`` of shape (N, 9N), row i
holding the rows 3i..3i+2 of H flattened (C order), so that ``H = arrays["hessian"].reshape(3N, 3N)``. It travels
with the structure through ASE's extended XYZ (``ase.io.write(..., format="extxyz")`` writes it as 9N columns;
ASE's default 8 decimals, 1e-8 eV/Å²), which is how ``mtpjax generate``'s HESSIAN stage writes its cells
(``OUT/HESSIAN.extxyz``). The training loader (:func:`mtpjax.data.load_records`) ignores it; the force-constant
term of a fit takes it through :func:`mtpjax.fit.residuals.force_constant_data`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import MtpjaxError
from ..evaluate import types_for_symbols
from ..neighbors import neighbour_list
from ..potential import Potential, energy

#: The per-atom array key of the force constants in ``atoms.arrays`` (and so in extended XYZ).
HESSIAN_KEY = "hessian"


def structure_arrays(atoms, cutoff: float, species=None, n_species: int = 1):
    """(positions (N, 3) Å, cell (3, 3) Å, types (N,), :class:`~mtpjax.neighbors.Neighbours` unpadded in atoms) of one
    structure for a potential of cutoff ``cutoff`` (Å); ``species`` the element of each type (None: one species)."""
    name = str(atoms.info.get("id", atoms.info.get("name", atoms.get_chemical_formula())))
    pos = np.asarray(atoms.positions, np.float64)
    cell = np.asarray(atoms.cell.array, np.float64) * np.asarray(atoms.pbc, bool)[:, None]
    types = types_for_symbols(atoms.get_chemical_symbols(), species, n_species, name)
    nbrs = neighbour_list(pos, cell, np.asarray(atoms.pbc, bool), cutoff, n_atoms_pad=len(pos), name=name)
    return pos, cell, types, nbrs


def potential_hessian(potential, positions, cell, species, nbrs, use_custom_vjp: bool = False):
    """The exact Hessian d²E/dx dx (3N, 3N) in eV/Å² of one structure under a JAX potential, at its fixed neighbour
    list (pure JAX: differentiable with respect to the potential's parameters). ``use_custom_vjp`` is passed to the
    potential (an MTP's hand-written backward pass is reverse-mode only, so the default False: plain autodiff)."""
    n = positions.shape[0]

    def e(x):
        return energy(potential, x.reshape(n, 3), cell, species, nbrs, use_custom_vjp=use_custom_vjp)

    x0 = positions.reshape(-1)
    return jax.jacfwd(jax.grad(e))(x0)


def _is_ase_calculator(x) -> bool:
    return hasattr(x, "get_forces") and hasattr(x, "calculate")


def finite_difference_force_constants(calculator, atoms, delta: float = 1e-3):
    """Force constants (3N, 3N) eV/Å² of ``atoms`` from central finite differences of an ASE ``calculator``'s forces
    (step ``delta`` Å; error O(delta²)), symmetrised: H = (H + H^T) / 2."""
    a = atoms.copy()
    a.calc = calculator
    n = len(a)
    x0 = a.positions.copy()
    H = np.zeros((3 * n, 3 * n))
    for k in range(3 * n):
        i, c = divmod(k, 3)
        fs = []
        for s in (1.0, -1.0):
            x = x0.copy()
            x[i, c] += s * delta
            a.positions = x
            fs.append(np.asarray(a.get_forces(), np.float64).reshape(-1))
        H[k] = -(fs[0] - fs[1]) / (2.0 * delta)
    a.positions = x0
    return 0.5 * (H + H.T)


_hessian_jit = jax.jit(potential_hessian)


def force_constants(oracle, atoms, species=None, delta: float = 1e-3) -> np.ndarray:
    """The oracle's force constants (3N, 3N) of ``atoms`` in eV/Å² (see the module docstring): exact for a JAX
    potential (``species``: element of each type, default the potential's own), central finite differences of the
    forces (step ``delta`` Å) for an ASE calculator or :class:`~mtpjax.oracles.ASEOracle`."""
    from .ase_oracle import ASEOracle

    if isinstance(oracle, Potential):
        species = getattr(oracle, "species", None) if species is None else species
        pos, cell, types, nbrs = structure_arrays(atoms, float(oracle.cutoff), species, int(oracle.n_species))
        H = _hessian_jit(oracle, jnp.asarray(pos), jnp.asarray(cell), jnp.asarray(types), jax.tree.map(jnp.asarray, nbrs))
        return np.asarray(H, np.float64)
    if isinstance(oracle, ASEOracle):
        return finite_difference_force_constants(oracle.make_calculator(), atoms, delta)
    if _is_ase_calculator(oracle):
        return finite_difference_force_constants(oracle, atoms, delta)
    raise MtpjaxError(f"force constants need a JAX potential, an ASEOracle or an ASE calculator, got {type(oracle).__name__}")


def attach_force_constants(atoms, H):
    """Store the force constants ``H`` (3N, 3N) eV/Å² with ``atoms`` as ``atoms.arrays["hessian"]`` (N, 9N) (in place;
    returned)."""
    n = len(atoms)
    H = np.asarray(H, np.float64)
    if H.shape != (3 * n, 3 * n):
        raise MtpjaxError(f"force constants of {n} atoms must be ({3 * n}, {3 * n}), got {H.shape}")
    atoms.arrays[HESSIAN_KEY] = H.reshape(n, 9 * n).copy()
    return atoms


def read_force_constants(atoms):
    """The force constants (3N, 3N) eV/Å² stored with ``atoms`` (:func:`attach_force_constants`), or None."""
    arr = atoms.arrays.get(HESSIAN_KEY)
    if arr is None:
        return None
    n = len(atoms)
    arr = np.asarray(arr, np.float64)
    if arr.shape != (n, 9 * n):
        raise MtpjaxError(f"atoms.arrays[{HESSIAN_KEY!r}] of {n} atoms must be ({n}, {9 * n}), got {arr.shape}")
    return arr.reshape(3 * n, 3 * n)


def acoustic_sum_violation(H) -> float:
    """max_ia |sum_j H[ia, jb]| (eV/Å²): zero for a translation-invariant energy (the acoustic sum rule)."""
    H = np.asarray(H)
    n = H.shape[0] // 3
    return float(np.abs(H.reshape(3 * n, n, 3).sum(axis=1)).max())
