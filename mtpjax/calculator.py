"""ASE calculator for any JAX potential (an MTP, an oracle): energy, free_energy, forces, stress, per-atom
energies (eV, eV/Å, eV/Å³ as ASE expects).

Out-of-domain structures are never silent (:mod:`mtpjax.active.domain`): an interatomic distance below an MTP's r_min,
or, with an active set, an extrapolation grade above ``grade_threshold``, warns (:class:`OutOfDomainWarning`) by
default, raises :class:`OutOfDomainError` with ``out_of_domain="error"``, or passes with ``"ignore"``.
"""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .active.domain import GRADE_THRESHOLD, OutOfDomainError, OutOfDomainWarning, check_action, check_domain, min_distance
from .evaluate import Evaluator, types_for_symbols
from .model import load_mtp

__all__ = ["PotentialCalculator", "MTPCalculator", "OutOfDomainWarning", "OutOfDomainError"]


class PotentialCalculator(Calculator):
    """ASE calculator over a JAX potential (:mod:`mtpjax.potential`): an :class:`mtpjax.model.MTP` or an oracle.

    ``species`` lists the element of each type (type k -> species[k]); default: the potential's own. Atoms
    carrying an ``arrays['mlip_type']`` column (as read from ``.cfg``) use those types directly. A one-species
    potential without a species list accepts any single-element structure.

    Out of domain: ``out_of_domain`` = "warn" (default), "error" or "ignore" for a structure with a distance below the
    potential's ``min_dist`` (r_min, Å; potentials without one are not checked) or, when ``active_set``
    (:class:`mtpjax.active.ActiveSet`) is given, an extrapolation grade above ``grade_threshold`` (default 2.1). With
    an active set, ``results['grade']`` holds the structure's grade (and ``results['atom_grades']`` in neighbourhood
    mode).

    Calculators share compiled programs (:func:`mtpjax.evaluate.program`): a second calculator on the same MTP, or
    on another MTP with the same basis (e.g. one per NEB image), does not compile again.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(self, potential, species=None, chunk: int | None = None, active_set=None, out_of_domain: str = "warn",
                 grade_threshold: float = GRADE_THRESHOLD, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        own = getattr(potential, "species", None)
        self.species = list(species) if species is not None else (list(own) if own else None)
        self.evaluator = Evaluator(potential, chunk=chunk)
        self.out_of_domain = check_action(out_of_domain)
        self.grade_threshold = float(grade_threshold)
        self.active_set = active_set
        if active_set is not None:
            from .active.grade import check_active_set

            check_active_set(potential, active_set)

    @classmethod
    def from_file(cls, path, species=None, **kwargs) -> "PotentialCalculator":
        """Calculator for a trained ``.mtp``/``.almtp``/``.mtpjax`` file, with the active set stored with it (if any,
        :func:`mtpjax.active.load_active_set`) unless ``active_set`` is given."""
        mtp = load_mtp(path, species=species)
        if "active_set" not in kwargs:
            from .active.grade import load_active_set

            kwargs["active_set"] = load_active_set(path, mtp)
        return cls(mtp, species=species, **kwargs)

    def _types(self, atoms):
        if "mlip_type" in atoms.arrays:
            return atoms.arrays["mlip_type"]
        return types_for_symbols(atoms.get_chemical_symbols(), self.species, self.potential.n_species, atoms.get_chemical_formula())

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        if "stress" in properties and not a.pbc.all():
            raise PropertyNotImplementedError("stress needs a structure periodic in all three directions")
        name = a.get_chemical_formula()
        prepared = self.evaluator.prepare(a.positions, a.cell.array, a.pbc, self._types(a), name=name)
        r_min = getattr(self.potential, "min_dist", None)
        check = self.out_of_domain != "ignore"
        if check and r_min is not None:
            check_domain(name, float(r_min), min_distance(prepared.positions, prepared.cell, prepared.pairs),
                         action=self.out_of_domain)
        r = self.evaluator.evaluate([prepared])[0]
        results = {
            "energy": r.energy,
            "free_energy": r.energy,
            "forces": r.forces,
            "energies": r.site_energies,
        }
        if a.pbc.all():
            results["stress"] = np.asarray(r.stress)
        if self.active_set is not None:
            from .active.grade import grade

            g = grade(self.potential, self.active_set, [(prepared.positions, prepared.cell, a.pbc, prepared.types, name)])
            results["grade"] = float(g.grades[0])
            if g.atom_grades is not None:
                results["atom_grades"] = g.atom_grades[0]
            if check:
                check_domain(name, grade=results["grade"], grade_threshold=self.grade_threshold, action=self.out_of_domain)
        self.results = results


#: The calculator for an MTP (the same class).
MTPCalculator = PotentialCalculator
