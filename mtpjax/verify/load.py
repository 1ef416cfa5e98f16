"""Deprecated: the "spec → potential" loader lives in :mod:`mtpjax.oracles` now (:func:`mtpjax.oracles.make_potential`,
:func:`~mtpjax.oracles.load_pair`, :func:`~mtpjax.oracles.check_elements`, :func:`~mtpjax.oracles.describe`,
:func:`~mtpjax.oracles.short_name`). This module only re-exports them under their old names (``load_potential``,
``label``) until its callers import from :mod:`mtpjax.oracles`; it will then be deleted.
"""
from __future__ import annotations

from ..oracles import EAM_SUFFIXES, MTP_SUFFIXES, check_elements, describe, load_pair, make_potential, short_name

#: Old name of :func:`mtpjax.oracles.make_potential`.
load_potential = make_potential
#: Old name of :func:`mtpjax.oracles.short_name` (not labelling: see :func:`mtpjax.oracles.label` for that).
label = short_name

__all__ = ["EAM_SUFFIXES", "MTP_SUFFIXES", "check_elements", "describe", "label", "load_pair", "load_potential"]
