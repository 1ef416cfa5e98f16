"""ASE calculator for an MTP: energy, free_energy, forces, stress, per-atom energies (eV, eV/Å, eV/Å³)."""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .evaluate import Evaluator, types_for_symbols
from .model import MTP, load_mtp


class MTPCalculator(Calculator):
    """ASE calculator over an :class:`mtpjax.model.MTP`.

    ``species`` lists the element of each MTP type (type k -> species[k]). Atoms carrying an
    ``arrays['mlip_type']`` column (as read from ``.cfg``) use those types directly. A one-species potential
    without a species list accepts any single-element structure.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(self, mtp: MTP, species=None, chunk: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.mtp = mtp
        self.species = list(species) if species is not None else (list(mtp.species) if mtp.species else None)
        self.evaluator = Evaluator(mtp, chunk=chunk)

    @classmethod
    def from_file(cls, path, species=None, **kwargs) -> "MTPCalculator":
        """Calculator for a trained MLIP ``.mtp``/``.almtp`` file."""
        return cls(load_mtp(path), species=species, **kwargs)

    def _types(self, atoms):
        if "mlip_type" in atoms.arrays:
            return atoms.arrays["mlip_type"]
        return types_for_symbols(atoms.get_chemical_symbols(), self.species, self.mtp.n_species, atoms.get_chemical_formula())

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
