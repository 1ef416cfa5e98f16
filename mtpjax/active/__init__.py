"""Extrapolation grades and active learning (MaxVol, as MLIP-2): active sets from a training set, grades of new
structures, active selection of candidates, and the out-of-domain checks of the calculator.

- :mod:`mtpjax.active.rows`: rows dE/dθ / N (configuration mode) or dV_i/dθ (neighbourhood mode) by jax autodiff;
- :mod:`mtpjax.active.maxvol`: :class:`ActiveSet` (MaxVol selection with Sherman–Morrison updates, grades);
- :mod:`mtpjax.active.grade`: :func:`build_active_set`, :func:`grade`, :func:`select_add`, storage with the potential;
- :mod:`mtpjax.active.almtp`: MLIP-3's ``#MVS_v1.1`` active-set section of ``.almtp`` files, read and written;
- :mod:`mtpjax.active.domain`: :class:`OutOfDomainWarning`, :class:`OutOfDomainError`, :func:`check_domain`;
- the ``mtpjax grade`` and ``mtpjax select`` commands (:mod:`mtpjax.active.cli_grade`, :mod:`mtpjax.active.cli_select`);
- :mod:`mtpjax.active.learn`: the active-learning loop of ``mtpjax learn`` (:mod:`mtpjax.active.cli_learn`); import it
  from there (it imports the MD, fitting and generation packages).
"""
from .domain import OutOfDomainError, OutOfDomainWarning, check_domain
from .grade import (
    Grades,
    active_set_path,
    build_active_set,
    check_active_set,
    grade,
    load_active_set,
    save_active_set,
    select_add,
)
from .maxvol import THRESHOLD_INIT, THRESHOLD_SELECT, THRESHOLD_SWAP, ActiveSet, format_grade
from .rows import configuration_rows, n_parameters, parameter_vector, site_energy_rows, with_parameters

__all__ = [
    "ActiveSet", "Grades", "build_active_set", "grade", "select_add", "check_active_set",
    "save_active_set", "load_active_set", "active_set_path", "format_grade",
    "configuration_rows", "site_energy_rows", "parameter_vector", "with_parameters", "n_parameters",
    "THRESHOLD_INIT", "THRESHOLD_SELECT", "THRESHOLD_SWAP",
    "OutOfDomainWarning", "OutOfDomainError", "check_domain",
]
