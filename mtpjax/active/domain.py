"""Out-of-domain checks: interatomic distances below the potential's r_min, and extrapolation grades above a threshold.

An MTP's radial basis is fitted on [r_min, R_cut]; below r_min its Chebyshev polynomials extrapolate freely (two Mg
atoms 0.5 Å apart get about -2·10⁵ eV), and a grade γ > 1 means the structure is outside the span of the active set.
Neither is ever silent: :func:`check_domain` warns (:class:`OutOfDomainWarning`) by default, raises
:class:`OutOfDomainError` with ``action="error"``, or does nothing with ``action="ignore"``.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import MtpjaxError

#: What to do with an out-of-domain structure.
ACTIONS = ("warn", "error", "ignore")
#: Default grade above which a structure is flagged (MLIP-3's default selection threshold for simulations, 2.1).
GRADE_THRESHOLD = 2.1


class OutOfDomainWarning(UserWarning):
    """A structure outside the potential's domain (distances below r_min, or an extrapolation grade above the
    threshold): the energy and forces are extrapolations."""


class OutOfDomainError(MtpjaxError, ValueError):
    """Raised instead of :class:`OutOfDomainWarning` when out-of-domain structures are errors."""


def check_action(action: str) -> str:
    """``action`` if it is one of :data:`ACTIONS`, else MtpjaxError."""
    if action not in ACTIONS:
        raise MtpjaxError(f"out_of_domain={action!r}: use one of {', '.join(ACTIONS)}")
    return action


def min_distance(positions, cell, pairs) -> tuple[float, int, int]:
    """(shortest |r_ij| in Å, i, j) over the pairs (i, j, shift) of a neighbour list (:func:`mtpjax.neighbors.pairs`);
    (inf, -1, -1) without pairs."""
    i, j, shift = pairs
    if len(i) == 0:
        return float("inf"), -1, -1
    positions = np.asarray(positions, dtype=np.float64)
    d = np.linalg.norm(positions[j] - positions[i] + np.asarray(shift, dtype=np.float64) @ np.asarray(cell), axis=1)
    k = int(np.argmin(d))
    return float(d[k]), int(i[k]), int(j[k])


def domain_problems(name: str, r_min: float | None = None, distance=None, grade: float | None = None,
                    grade_threshold: float | None = GRADE_THRESHOLD) -> list[str]:
    """Messages for what is out of domain: ``distance`` = (shortest distance Å, i, j) below ``r_min`` Å, ``grade``
    above ``grade_threshold``. An empty list when all is in domain."""
    out = []
    if r_min is not None and distance is not None and distance[0] < r_min:
        d, i, j = distance
        out.append(f"{name}: atoms {i} and {j} are {d:.4g} Å apart, closer than the potential's r_min = {r_min:.4g} Å; "
                   f"energies and forces there are extrapolations of the radial basis")
    if grade is not None and grade_threshold is not None and not grade <= grade_threshold:
        out.append(f"{name}: extrapolation grade {grade:.4g} above the threshold {grade_threshold:.4g}; the potential "
                   f"extrapolates its training set here")
    return out


def report(problems: list[str], action: str = "warn", stacklevel: int = 3) -> None:
    """Warn (OutOfDomainWarning), raise (OutOfDomainError) or do nothing about ``problems`` as ``action`` says."""
    if not problems or action == "ignore":
        return
    message = "; ".join(problems)
    if check_action(action) == "error":
        raise OutOfDomainError(message)
    warnings.warn(message, OutOfDomainWarning, stacklevel=stacklevel)


def check_domain(name: str, r_min: float | None = None, distance=None, grade: float | None = None,
                 grade_threshold: float | None = GRADE_THRESHOLD, action: str = "warn") -> list[str]:
    """:func:`domain_problems`, then :func:`report`; returns the problems (also with ``action="ignore"``)."""
    problems = domain_problems(name, r_min, distance, grade, grade_threshold)
    report(problems, action, stacklevel=4)
    return problems
