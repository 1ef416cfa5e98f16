"""ASE calculator for any JAX potential (an MTP, an oracle): energy, free_energy, forces, stress, per-atom
energies (eV, eV/Å, eV/Å³ as ASE expects)."""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .evaluate import Evaluator, types_for_symbols
from .model import load_mtp


class PotentialCalculator(Calculator):
    """ASE calculator over a JAX potential (:mod:`mtpjax.potential`): an :class:`mtpjax.model.MTP` or an oracle.

    ``species`` lists the element of each type (type k -> species[k]); default: the potential's own. Atoms
    carrying an ``arrays['mlip_type']`` column (as read from ``.cfg``) use those types directly. A one-species
    potential without a species list accepts any single-element structure.

    Calculators share compiled programs (:func:`mtpjax.evaluate.program`): a second calculator on the same MTP, or
    on another MTP with the same basis (e.g. one per NEB image), does not compile again.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(self, potential, species=None, chunk: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        own = getattr(potential, "species", None)
        self.species = list(species) if species is not None else (list(own) if own else None)
        self.evaluator = Evaluator(potential, chunk=chunk)

    @classmethod
    def from_file(cls, path, species=None, **kwargs) -> "PotentialCalculator":
        """Calculator for a trained MLIP ``.mtp``/``.almtp`` file."""
        return cls(load_mtp(path), species=species, **kwargs)

    def _types(self, atoms):
        if "mlip_type" in atoms.arrays:
            return atoms.arrays["mlip_type"]
        return types_for_symbols(atoms.get_chemical_symbols(), self.species, self.potential.n_species, atoms.get_chemical_formula())

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        if "stress" in properties and not a.pbc.all():
            raise PropertyNotImplementedError("stress needs a structure periodic in all three directions")
        r = self.evaluator(a.positions, a.cell.array, a.pbc, self._types(a), name=a.get_chemical_formula())
        self.results = {
            "energy": r.energy,
            "free_energy": r.energy,
            "forces": r.forces,
            "energies": r.site_energies,
        }
        if a.pbc.all():
            self.results["stress"] = np.asarray(r.stress)


#: The calculator for an MTP (the same class).
MTPCalculator = PotentialCalculator
