"""Labels (energy eV, forces eV/Å, stress eV/Å³ as ASE) of pipeline structures with an oracle; failures come
back as :class:`Failure` items named by the structure's id, never as exceptions.

JAX oracles are evaluated here in packed batches by one module-level jitted function, so every shape compiles
once per process however many chunks are labelled (padding depends only on the batch: results are independent
of what was labelled before). Other oracles go through :func:`mtpjax.oracles.label`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..batch import max_neighbours, pack
from ..errors import StructureError
from ..evaluate import types_for_symbols
from ..neighbors import pairs
from ase.calculators.singlepoint import SinglePointCalculator

from ..oracles.label import Failure, label as oracle_label
from ..potential import energy_forces_virial_sites
from ..units import stress_to_voigt
from . import oracle as _oracle

_efs = jax.jit(energy_forces_virial_sites)


def _pow2(n, minimum):
    return max(minimum, 1 << max(int(n) - 1, 0).bit_length())


def _labelled(atoms, energy, forces, stress):
    a = atoms.copy()
    a.calc = SinglePointCalculator(a, energy=float(energy), free_energy=float(energy), forces=np.asarray(forces),
                                   stress=np.asarray(stress))
    return a


def label(oracle, structures, progress=None, batch_atoms: int = 2048) -> list:
    """Labelled copies of ``structures`` or :class:`Failure` items, in input order. ``progress(n)`` is called with
    the number of structures newly done."""
    structures = list(structures)
    if _oracle.is_jax(oracle):
        return _label_jax(oracle, structures, progress, batch_atoms)
    done = [0]

    def cb(n_done, _n_total):
        if progress is not None:
            progress(n_done - done[0])
        done[0] = n_done

    out = oracle_label(oracle, structures, progress=cb)
    if progress is not None and done[0] < len(structures):
        progress(len(structures) - done[0])
    return [_rename(r, structures[k]) for k, r in enumerate(out)]


def _rename(r, atoms):
    return Failure(r.index, str(atoms.info.get("id", r.name)), r.reason, r.message) if isinstance(r, Failure) else r


def _label_jax(potential, structures, progress, batch_atoms):
    out: list = [None] * len(structures)
    prepared = []
    for k, a in enumerate(structures):
        name = str(a.info.get("id", f"structure {k}"))
        try:
            types = types_for_symbols(a.get_chemical_symbols(), getattr(potential, "species", None), potential.n_species, name)
            prepared.append((k, a, types, pairs(a.positions, a.cell.array, a.pbc, potential.cutoff, name)))
        except StructureError as err:
            out[k] = Failure(k, name, "invalid_structure", str(err))
    if progress and len(prepared) < len(structures):
        progress(len(structures) - len(prepared))
    batch, n = [], 0
    for item in prepared + [None]:
        if batch and (item is None or n + len(item[1]) > batch_atoms):
            _evaluate(potential, batch, out)
            if progress:
                progress(len(batch))
            batch, n = [], 0
        if item is not None:
            batch.append(item)
            n += len(item[1])
    return out


def _evaluate(potential, batch, out):
    n_tot = sum(len(a) for _, a, _, _ in batch)
    n_nb = _pow2(max(max_neighbours(p[0], len(a)) for _, a, _, p in batch), 16)
    b = pack([(a.positions, a.cell.array, t, p) for _, a, t, p in batch], _pow2(n_tot, 64), _pow2(len(batch), 16), n_nb)
    e, f, v, _ = _efs(potential, jnp.asarray(b.positions), jnp.asarray(b.cells), jnp.asarray(b.species),
                      jax.tree.map(jnp.asarray, b.nbrs), structure=jnp.asarray(b.structure))
    e, f, v = np.asarray(e), np.asarray(f), np.asarray(v)
    o = 0
    for j, (k, a, _, _) in enumerate(batch):
        forces, virial = f[o:o + len(a)], v[j]
        o += len(a)
        if not (np.isfinite(e[j]) and np.isfinite(forces).all() and np.isfinite(virial).all()):
            out[k] = Failure(k, str(a.info.get("id", f"structure {k}")), "non_finite", "the oracle gave a non-finite energy, force or stress")
            continue
        stress = -stress_to_voigt(virial) / a.get_volume()  # ASE: σ = -virial / V, Voigt xx yy zz yz xz xy, eV/Å³
        out[k] = _labelled(a, e[j], forces, stress)
