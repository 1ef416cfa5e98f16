"""Rows of the MaxVol matrices: derivatives of an MTP's energies with respect to its parameters, by jax autodiff.

The parameter vector θ is MLIP's (``shared/docs/mtp-spec.md`` §1): the radial coefficients c[(s_i S + s_j) K R + μ R + β]
(S²KR numbers), the species coefficients (S, eV) and the moment coefficients (n_B, eV); ``scaling``, r_min and R_cut
are not parameters. Rows:

- neighbourhood mode (``"nbh"``): one row per atom, dV_i/dθ (V_i the site energy, eV);
- configuration mode (``"cfg"``): one row per structure, dE/dθ / N (E the energy, N the number of atoms), as MLIP's
  default "vibrations" weighting.

The derivatives are forward-mode (``jax.jacfwd``, one tangent per parameter) through the model's own site energies
(:func:`mtpjax.potential.site_energies`, plain autodiff of the contraction), on structures packed as in
:mod:`mtpjax.batch`.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..batch import max_neighbours, pack
from ..errors import MtpjaxError
from ..evaluate import Evaluator, chunk_shape, consecutive_groups
from ..neighbors import bucket_size
from ..potential import site_energies

#: Row modes: one row per configuration, or one per atom (neighbourhood).
MODES = ("cfg", "nbh")
#: Atoms per packed batch when computing rows (the forward-mode Jacobian holds one tangent per parameter).
ROW_BATCH_ATOMS = 256
#: The widest neighbour bucket used so far for each padded (atoms, structures) shape: reused while it fits, so the
#: Jacobian program compiles once per shape.
_WIDEST: dict = {}


def check_mode(mode: str) -> str:
    """``mode`` normalised: "cfg"/"configuration" or "nbh"/"neighbourhood"/"neighborhood". Raises MtpjaxError."""
    m = {"cfg": "cfg", "configuration": "cfg", "nbh": "nbh", "neighbourhood": "nbh", "neighborhood": "nbh"}.get(str(mode))
    if m is None:
        raise MtpjaxError(f"grade mode {mode!r}: use 'cfg' (one row per configuration) or 'nbh' (one row per atom)")
    return m


def _check_mtp(mtp) -> None:
    for name in ("radial_coeffs", "species_coeffs", "moment_coeffs"):
        if not hasattr(mtp, name):
            raise MtpjaxError(f"the extrapolation grade needs an MTP (radial, species and moment coefficients); "
                              f"{type(mtp).__name__} has no {name}")


def parameter_vector(mtp) -> jax.Array:
    """θ = [radial coefficients (S²KR) | species coefficients (S) | moment coefficients (n_B)] of an MTP, MLIP's order."""
    _check_mtp(mtp)
    return jnp.concatenate([jnp.ravel(mtp.radial_coeffs), mtp.species_coeffs, mtp.moment_coeffs])


def n_parameters(mtp) -> int:
    """Length of :func:`parameter_vector` (S²KR + S + n_B)."""
    _check_mtp(mtp)
    return int(np.size(mtp.radial_coeffs) + np.size(mtp.species_coeffs) + np.size(mtp.moment_coeffs))


def with_parameters(mtp, theta):
    """The MTP with parameter vector ``theta`` (inverse of :func:`parameter_vector`)."""
    n_r, S = mtp.radial_coeffs.size, mtp.species_coeffs.shape[0]
    return eqx.tree_at(lambda m: (m.radial_coeffs, m.species_coeffs, m.moment_coeffs), mtp,
                       (theta[:n_r].reshape(mtp.radial_coeffs.shape), theta[n_r:n_r + S], theta[n_r + S:]))


@eqx.filter_jit
def site_energy_jacobian(mtp, positions, cells, species, nbrs, structure):
    """dV_i/dθ (N_pad, P) of a packed batch (:class:`mtpjax.batch.Batch` fields); zero rows for padding atoms."""

    n_r = mtp.radial_coeffs.size
    theta = parameter_vector(mtp)

    S = mtp.species_coeffs.shape[0]

    def sites(radial, linear):  # (no concatenation: the linear tangents must stay symbolic zeros for the radial part)
        m = eqx.tree_at(lambda q: (q.radial_coeffs, q.species_coeffs, q.moment_coeffs), mtp,
                        (radial.reshape(mtp.radial_coeffs.shape), linear[:S], linear[S:]))
        return site_energies(m, positions, cells, species, nbrs, structure=structure,
                             use_custom_vjp=False)  # forward mode: the plain-autodiff contraction

    # one tangent per radial coefficient through the whole model; the linear coefficients' tangents enter at the last
    # layer only (JAX propagates no tangent through the moments for them), so their columns cost about one pass
    J_radial = jax.jacfwd(sites, argnums=0)(theta[:n_r], theta[n_r:])
    J_linear = jax.jacfwd(sites, argnums=1)(theta[:n_r], theta[n_r:])
    return jnp.concatenate([J_radial, J_linear], axis=1)


def as_structure(item, k: int = 0, source: str = "structures"):
    """(positions, cell, pbc, types, name) of a :class:`mtpjax.io.Configuration`, an ``ase.Atoms`` with an
    ``arrays['mlip_type']`` column, or such a tuple (returned as is)."""
    if isinstance(item, tuple):
        return item
    name = f"{source}: configuration {k + 1}"
    if hasattr(item, "types") and hasattr(item, "positions"):  # a Configuration
        return (item.positions, item.cell, item.cell is not None, item.types, name)
    if hasattr(item, "arrays") and "mlip_type" in item.arrays:  # ASE Atoms read from .cfg
        return (item.positions, item.cell.array, item.pbc, item.arrays["mlip_type"], name)
    raise MtpjaxError(f"{name}: give a Configuration, an ase.Atoms with an 'mlip_type' array, or a "
                      f"(positions, cell, pbc, types, name) tuple, not {type(item).__name__}")


def site_energy_rows(mtp, structures, source: str = "structures", batch_atoms: int = ROW_BATCH_ATOMS):
    """(rows (N_total, P), structure index (N_total,)): dV_i/dθ of every atom of ``structures`` (Configurations, ASE
    Atoms with 'mlip_type', or (positions Å, cell Å, pbc, types, name) tuples), atoms in order. Structures are
    validated (StructureError naming them) and packed ``batch_atoms`` atoms at a time."""
    _check_mtp(mtp)
    ev = Evaluator(mtp)
    prepared = [ev.prepare(*as_structure(s, k, source)) for k, s in enumerate(structures)]
    P = n_parameters(mtp)
    rows, owner = [np.zeros((0, P))], [np.zeros(0, dtype=np.int64)]
    sizes = [len(p.positions) for p in prepared]
    n_pad, b_pad = chunk_shape(sizes, batch_atoms)  # one padded shape for every batch: one compilation
    for group in consecutive_groups(sizes, n_pad, b_pad):
        batch = [prepared[k] for k in group]
        max_nb = max((max_neighbours(p.pairs[0], len(p.positions)) for p in batch), default=0)
        n_nb = max(bucket_size(max_nb, minimum=4), _WIDEST.get((n_pad, b_pad), 0))
        _WIDEST[(n_pad, b_pad)] = n_nb
        b = pack([(p.positions, p.cell, p.types, p.pairs) for p in batch], n_pad, b_pad, n_nb)
        n = sum(len(p.positions) for p in batch)
        J = np.asarray(site_energy_jacobian(mtp, b.positions, b.cells, b.species, b.nbrs, b.structure))[:n]
        if not np.isfinite(J).all():
            bad = int(np.asarray(group)[np.asarray(b.structure)[:n][~np.isfinite(J).all(axis=1)][0]])
            raise MtpjaxError(f"{prepared[bad].name}: the energy derivatives are not finite; the structure is far "
                              f"outside the potential's range")
        rows.append(J)
        owner.append(np.asarray(group, dtype=np.int64)[np.asarray(b.structure)[:n]])
    return np.concatenate(rows), np.concatenate(owner)


def configuration_rows(mtp, structures, source: str = "structures", batch_atoms: int = ROW_BATCH_ATOMS) -> np.ndarray:
    """dE/dθ / N (n_structures, P) of each structure: MLIP's configuration-mode rows (eV per atom per unit θ). A
    structure without atoms has a zero row."""
    J, owner = site_energy_rows(mtp, structures, source, batch_atoms)
    n = len(structures)
    out = np.zeros((n, J.shape[1]))
    np.add.at(out, owner, J)
    sizes = np.bincount(owner, minlength=n)
    return out / np.maximum(sizes, 1)[:, None]  # a structure without atoms: a zero row (grade 0, never selected)


def rows(mtp, structures, mode: str = "cfg", source: str = "structures"):
    """(rows, owner): the MaxVol rows of ``structures`` in ``mode`` and the structure of each row (cfg mode: one row
    per structure, owner = 0..n-1; nbh mode: one row per atom)."""
    if check_mode(mode) == "cfg":
        r = configuration_rows(mtp, structures, source)
        return r, np.arange(len(r))
    return site_energy_rows(mtp, structures, source)
