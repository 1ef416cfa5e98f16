"""One labelling interface for every oracle: structures in; energy, forces, stress out.

    labelled = label(oracle, structures)      # list of ase.Atoms (labelled copies) or Failure, in input order
    labeller = Labeller(oracle); labeller(set_1); labeller(set_2)   # the same, compiled once

A labelled structure is a copy of the input carrying a
:class:`~ase.calculators.singlepoint.SinglePointCalculator` with ``energy`` and ``free_energy`` (eV), ``forces``
(eV/Å) and, for cells periodic in all three directions, ``stress`` (eV/Å³, ASE's sign and Voigt order
xx yy zz yz xz xy). A structure that cannot be labelled becomes a :class:`Failure`; the rest of the batch goes on.

JAX oracles are evaluated in packed batches of up to ``batch_atoms`` atoms with :class:`mtpjax.evaluate.Evaluator`;
a batch that raises is redone one structure at a time to isolate the culprit. An :class:`ASEOracle` labels in its
worker processes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

from ..errors import MtpjaxError, StructureError
from ..evaluate import Evaluator
from .ase_oracle import ASEOracle
from .base import check_elements

#: Failure reasons.
REASONS = ("unknown_element", "invalid_structure", "oracle_error", "non_finite")


@dataclass(frozen=True)
class Failure:
    """A structure that could not be labelled: its ``index`` in the input, ``name`` (``atoms.info['name']`` or the
    formula), ``reason`` (one of :data:`REASONS`) and a human-readable ``message``."""

    index: int
    name: str
    reason: str
    message: str


def _name(atoms, k: int) -> str:
    return str(atoms.info.get("name") or f"structure {k} ({atoms.get_chemical_formula() or 'empty'})")


def _labelled(atoms, energy, forces, stress):
    a = atoms.copy()
    kw = {"energy": float(energy), "free_energy": float(energy), "forces": np.asarray(forces, dtype=float)}
    if stress is not None and atoms.pbc.all():
        kw["stress"] = np.asarray(stress, dtype=float)
    a.calc = SinglePointCalculator(a, **kw)
    return a


def _finite(energy, forces, stress) -> bool:
    return bool(np.isfinite(energy) and np.isfinite(forces).all() and (stress is None or np.isfinite(stress).all()))


class Labeller:
    """Labels structures with one oracle, keeping its compiled programs between calls (see :func:`label`)."""

    def __init__(self, oracle, batch_atoms: int = 2048):
        if not (isinstance(oracle, ASEOracle) or hasattr(oracle, "site_energies_from_pairs")):
            raise MtpjaxError(f"{oracle!r} is not an oracle (a JAX potential or an ASEOracle); see mtpjax.oracles.make_oracle")
        self.oracle = oracle
        self.batch_atoms = int(batch_atoms)
        self.evaluator = None if isinstance(oracle, ASEOracle) else Evaluator(oracle, max_batch_atoms=self.batch_atoms)

    def __call__(self, structures, progress=None) -> list:
        """Labelled copies or :class:`Failure` records, in input order (see :func:`label`)."""
        oracle = self.oracle
        structures = list(structures)
        out: list = [None] * len(structures)
        todo = []
        for k, atoms in enumerate(structures):
            try:
                check_elements(atoms.get_chemical_symbols(), getattr(oracle, "species", None), getattr(oracle, "name", "the oracle"))
            except MtpjaxError as e:
                out[k] = Failure(k, _name(atoms, k), "unknown_element", str(e))
                continue
            if len(atoms) == 0:
                out[k] = Failure(k, _name(atoms, k), "invalid_structure", "the structure has no atoms")
                continue
            todo.append(k)
        if self.evaluator is None:
            _label_ase(oracle, structures, todo, out, progress)
        else:
            _label_jax(oracle, self.evaluator, structures, todo, out, progress, self.batch_atoms)
        return out


def label(oracle, structures, progress=None, batch_atoms: int = 2048) -> list:
    """Label ``structures`` (a list of ase.Atoms) with ``oracle`` (any JAX oracle or an :class:`ASEOracle`).

    Returns, in input order, labelled copies or :class:`Failure` records. ``progress(n_done, n_total)`` is called
    as structures finish. Never raises for a bad structure; raises :class:`MtpjaxError` only for a bad oracle.
    JAX oracles are evaluated in packed batches of up to ``batch_atoms`` atoms. To label many sets with one
    oracle without recompiling, reuse a :class:`Labeller`.
    """
    return Labeller(oracle, batch_atoms)(structures, progress)


def _label_ase(oracle, structures, todo, out, progress):
    n_total, n_before = len(structures), len(structures) - len(todo)
    cb = None if progress is None else (lambda done, _n: progress(n_before + done, n_total))
    for k, res in zip(todo, oracle.compute([structures[k] for k in todo], progress=cb)):
        a = structures[k]
        if res[0] == "error":
            out[k] = Failure(k, _name(a, k), "oracle_error", res[1])
        elif not _finite(*res):
            out[k] = Failure(k, _name(a, k), "non_finite", f"{oracle.name} gave a non-finite energy, force or stress")
        else:
            out[k] = _labelled(a, *res)


def _label_jax(oracle, ev, structures, todo, out, progress, batch_atoms):
    species = getattr(oracle, "species", None)
    index = {s: t for t, s in enumerate(species)} if species else None
    prepared = []
    for k in todo:
        a = structures[k]
        try:
            types = [index[s] for s in a.get_chemical_symbols()] if index else np.zeros(len(a), dtype=np.int64)
            prepared.append((k, ev.prepare(a.positions, a.cell.array, a.pbc, types, _name(a, k))))
        except StructureError as e:
            out[k] = Failure(k, _name(a, k), "invalid_structure", str(e))
        except Exception as e:  # noqa: BLE001 (e.g. the neighbour list failed)
            out[k] = Failure(k, _name(a, k), "oracle_error", f"{type(e).__name__}: {e}")
    n_done = len(structures) - len(prepared)

    def store(items, results):
        for (k, _), r in zip(items, results):
            stress = r.stress if r.volume is not None else None
            if not _finite(r.energy, r.forces, stress):
                out[k] = Failure(k, _name(structures[k], k), "non_finite", f"{getattr(oracle, 'name', 'the oracle')} gave "
                                 "a non-finite energy, force or stress")
            else:
                out[k] = _labelled(structures[k], r.energy, r.forces, stress)

    batches, batch, n = [], [], 0
    for item in prepared:
        m = len(item[1].positions)
        if batch and n + m > batch_atoms:
            batches.append(batch)
            batch, n = [], 0
        batch.append(item)
        n += m
    batches += [batch] if batch else []
    for batch in batches:
        try:
            store(batch, ev.evaluate([p for _, p in batch]))
        except Exception:  # noqa: BLE001 - redo one by one to isolate the structure at fault
            for k, p in batch:
                try:
                    store([(k, p)], ev.evaluate([p]))
                except Exception as e:  # noqa: BLE001
                    non_finite = isinstance(e, StructureError) and "not finite" in str(e)
                    out[k] = Failure(k, p.name, "non_finite" if non_finite else "oracle_error", f"{type(e).__name__}: {e}")
        n_done += len(batch)
        if progress is not None:
            progress(n_done, len(structures))
