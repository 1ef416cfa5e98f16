"""File formats: MLIP potentials (.mtp/.almtp), MLIP configurations (.cfg), extended XYZ via ASE.

Units throughout: Å, eV, eV/Å; MLIP's PlusStress is the virial in eV (= -V·σ).
Malformed input raises :class:`mtpjax.errors.FormatError` naming the file and line.
"""
from .cfg import (
    STRESS_ORDER,
    Configuration,
    atoms_to_configuration,
    configuration_to_atoms,
    iter_cfg,
    read_cfg,
    write_cfg,
)
from .extxyz import read_structures, write_structures
from .mtpfile import MTPFile, mtp_to_bytes, read_mtp, write_mtp

__all__ = [
    "MTPFile", "read_mtp", "write_mtp", "mtp_to_bytes",
    "Configuration", "read_cfg", "iter_cfg", "write_cfg", "STRESS_ORDER",
    "configuration_to_atoms", "atoms_to_configuration",
    "read_structures", "write_structures",
]
