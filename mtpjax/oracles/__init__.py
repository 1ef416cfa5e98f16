"""Oracles: reference potentials that label training data (see ``docs/oracles.md``).

JAX oracles follow the potential protocol of :mod:`mtpjax.potential` (forces and stress by autodiff), so the
evaluator, the ASE calculator and labelling take them like an MTP:

- :class:`ZhouEAM` — the Zhou–Johnson–Wadley 2004 analytic EAM, 16 elements and their alloys (default: Mg);
- :class:`TabulatedEAM` — setfl (``.eam.alloy``), Finnis–Sinclair (``.eam.fs``) and funcfl (``.eam``) files;
- :class:`LennardJones` — argon by default, cutoff and shift explicit.

:class:`ASEOracle` wraps any ASE calculator (DFT included) and labels in worker processes. Every oracle, JAX or
not, is an :class:`Oracle` (name, species, spec, describe); JAX ones are also :class:`mtpjax.potential.Potential`.

:func:`label` (or a reused :class:`Labeller`) is the one labelling path, for any of them and for MTPs;
:func:`make_oracle` builds an oracle from a JSON-able spec; :func:`interaction_range` says how far its pairs interact
(Å; None for an ASE calculator); :func:`make_potential` builds any potential (a trained MTP file, an EAM file, any
oracle spec) and :func:`load_pair` a potential and an oracle checked to describe the
same elements (:func:`check_elements`); :func:`describe` and :func:`short_name` name them in reports.
"""
from .ase_oracle import ASEOracle
from .eam_tabulated import EAMTables, TabulatedEAM, read_eam, write_setfl
from .base import RANGE_TOL, Oracle, interaction_range
from .factory import DEFAULT_ORACLE, EAM_SUFFIXES, MTP_SUFFIXES, get_calculator, make_oracle
from .label import REASONS, Failure, Labeller, label
from .load import check_elements, describe, load_pair, make_potential, short_name
from .lj import ARGON, LennardJones
from .zhou import ZHOU2004, ZhouEAM

__all__ = [
    "ARGON", "ASEOracle", "DEFAULT_ORACLE", "EAM_SUFFIXES", "EAMTables", "Failure", "Labeller", "LennardJones", "MTP_SUFFIXES",
    "Oracle", "RANGE_TOL", "REASONS", "TabulatedEAM", "ZHOU2004", "ZhouEAM", "check_elements", "describe", "get_calculator",
    "interaction_range", "label", "load_pair", "make_oracle", "make_potential", "read_eam", "short_name", "write_setfl",
]
