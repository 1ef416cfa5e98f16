"""The generator's labelling is :func:`mtpjax.oracles.label` (the one labelling path): labelled copies of the
structures (energy eV, forces eV/Å, stress eV/Å³ as ASE) or :class:`~mtpjax.oracles.Failure` items named by the
structure's ``info['id']``, in input order; ``progress(n)`` gets the number of structures newly done.

Kept only as a re-export for ``from .label import label`` in :mod:`mtpjax.generate.pipeline`; import from
:mod:`mtpjax.oracles` instead (this module will be deleted).
"""
from ..oracles.label import label  # noqa: F401
