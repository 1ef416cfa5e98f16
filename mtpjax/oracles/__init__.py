"""Oracles: reference potentials that label training data (see ``docs/oracles.md``).

JAX oracles follow the potential protocol of :mod:`mtpjax.potential` (forces and stress by autodiff), so the
evaluator, the ASE calculator and labelling take them like an MTP:

- :class:`ZhouEAM` — the Zhou–Johnson–Wadley 2004 analytic EAM, 16 elements and their alloys (default: Mg);
- :class:`TabulatedEAM` — setfl (``.eam.alloy``), Finnis–Sinclair (``.eam.fs``) and funcfl (``.eam``) files;
- :class:`LennardJones` — argon by default, cutoff and shift explicit.

:class:`ASEOracle` wraps any ASE calculator (DFT included) and labels in worker processes.
:func:`label` labels structures with any of them; :func:`make_oracle` builds one from a JSON-able spec.
"""
from .ase_oracle import ASEOracle
from .eam_tabulated import EAMTables, TabulatedEAM, read_eam, write_setfl
from .factory import DEFAULT_ORACLE, get_calculator, make_oracle
from .label import REASONS, Failure, Labeller, label
from .lj import ARGON, LennardJones
from .zhou import ZHOU2004, ZhouEAM

__all__ = [
    "ARGON", "ASEOracle", "DEFAULT_ORACLE", "EAMTables", "Failure", "Labeller", "LennardJones", "REASONS", "TabulatedEAM",
    "ZHOU2004", "ZhouEAM", "get_calculator", "label", "make_oracle", "read_eam", "write_setfl",
]
