"""Checks of the options of a fit, before any data is packed or anything is compiled.

:func:`check_fit_options` is what the library entry point (``train_potential``) calls; it raises
:class:`mtpjax.errors.MtpjaxError` with a message that names the option as the command line spells it
("--cutoff 0: must be a positive number of Å"). The argparse ``type=`` functions below (:func:`positive_int`,
:func:`positive_float`, ...) give the command line the same checks while it parses, so ``mtpjax fit --max-steps 0``
stops with argparse's usage error (exit code 2) naming the option.

This module imports nothing from ``mtpjax.fit*`` (it is imported by the command line and by the fit).
"""
from __future__ import annotations

import argparse
import math
import numbers
import operator

from ..errors import MtpjaxError

__all__ = ["check_fit_options", "OptionError", "positive_int", "non_negative_int", "positive_float",
           "non_negative_float", "mtp_level", "METHODS", "INITS"]

#: The optimisers and radial starts the fit knows.
METHODS = ("lm", "lbfgs", "bfgs", "adam")
INITS = ("mlip", "random")


class OptionError(argparse.ArgumentTypeError, ValueError):
    """A bad option value met while parsing. argparse turns it into ``argument --opt: MESSAGE`` (exit code 2); the
    ``--config`` reader (which catches ValueError) into an error naming the file and the key."""


# ---------------------------------------------------------------------------------------------------------
# single values: each returns the problem as a phrase ("must be at least 1"), or None when the value is fine


def _as_int(value):
    """``value`` as an int when it is an integer (int, numpy integer, a float or string holding one), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        pass
    if isinstance(value, numbers.Real):
        v = float(value)
        return int(v) if math.isfinite(v) and v.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _as_float(value):
    """``value`` as a float when it is a real number (or a string holding one), else None. bool is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _int_problem(value, minimum: int):
    v = _as_int(value)
    if v is None:
        return "must be an integer"
    if v < minimum:
        return f"must be at least {minimum}"
    return None


def _level_problem(value):
    from ..basis import MAX_LEVEL, MIN_LEVEL

    v = _as_int(value)
    if v is None or not MIN_LEVEL <= v <= MAX_LEVEL:
        return (f"MTP levels are {MIN_LEVEL}..{MAX_LEVEL} (MLIP's templates; an odd level has the basis of the even "
                "level below it)")
    return None


def _positive_problem(value, unit: str = ""):
    v = _as_float(value)
    if v is None or not math.isfinite(v) or v <= 0:
        return f"must be a positive number{' of ' + unit if unit else ''}"
    return None


def _non_negative_problem(value):
    v = _as_float(value)
    if v is None or not math.isfinite(v) or v < 0:
        return "must be a finite number >= 0"
    return None


def _show(value) -> str:
    return str(value)


# ---------------------------------------------------------------------------------------------------------
# the library check


def check_fit_options(*, level, cutoff, rmin=None, max_steps, checkpoint_every=None, weights=(1.0, 0.01, 0.001),
                      validation_fraction=0.0, learning_rate=None, max_batch_atoms=None, devices=None, seed=None,
                      linear_solve_at=None, method=None, init=None, memory_size=None, tolerance=None,
                      validate_every=None, patience=None, methods=METHODS) -> None:
    """Raise MtpjaxError for the first bad option of a fit, naming it as the command line does.

    - ``level``: an integer in 2..28 (MLIP's templates; odd levels are accepted and give the even level below);
    - ``cutoff``: a finite number > 0 (Å); ``rmin`` (None: from the data): finite, 0 < rmin < cutoff;
    - ``max_steps`` >= 1; ``checkpoint_every``, ``max_batch_atoms``, ``devices`` (None: not checked) >= 1;
    - ``weights`` (energy, force, stress): finite, >= 0, not all zero;
    - ``validation_fraction`` in [0, 1); ``learning_rate`` finite and > 0; ``seed`` an integer >= 0;
    - ``memory_size``, ``validate_every``, ``patience`` >= 1; ``tolerance`` finite and >= 0;
    - ``linear_solve_at``: integers >= 0; ``method`` one of ``methods`` (lbfgs, bfgs, adam); ``init`` mlip or random.

    Options given as None are not checked (except level, cutoff and max_steps, which are required).
    """
    problems = [
        ("--level", level, _level_problem(level)),
        ("--cutoff", cutoff, _positive_problem(cutoff, "Å")),
        ("--max-steps", max_steps, _int_problem(max_steps, 1)),
    ]
    if rmin is not None:
        p = _positive_problem(rmin, "Å")
        c = _as_float(cutoff)
        if p is None and c is not None and float(rmin) >= c:
            p = f"must be below the cutoff ({c} Å)"
        problems.append(("--rmin", rmin, p))
    for name, value, minimum in (("--checkpoint-every", checkpoint_every, 1), ("--max-batch-atoms", max_batch_atoms, 1),
                                 ("--devices", devices, 1), ("--seed", seed, 0), ("--memory-size", memory_size, 1),
                                 ("--validate-every", validate_every, 1), ("--patience", patience, 1)):
        if value is not None:
            problems.append((name, value, _int_problem(value, minimum)))
    if learning_rate is not None:
        problems.append(("--learning-rate", learning_rate, _positive_problem(learning_rate)))
    if tolerance is not None:
        problems.append(("--tolerance", tolerance, _non_negative_problem(tolerance)))
    for name, value, problem in problems:
        if problem:
            raise MtpjaxError(f"{name} {_show(value)}: {problem}")

    names = ("--energy-weight", "--force-weight", "--stress-weight")
    try:
        weights = tuple(weights)
    except TypeError:
        raise MtpjaxError(f"weights {weights!r}: give (energy, force, stress) weights") from None
    if len(weights) != 3:
        raise MtpjaxError(f"weights {weights!r}: give three (energy, force, stress) weights")
    for name, w in zip(names, weights):
        p = _non_negative_problem(w)
        if p:
            raise MtpjaxError(f"{name} {_show(w)}: {p}")
    if all(float(w) == 0 for w in weights):
        raise MtpjaxError(f"{', '.join(names[:2])} and {names[2]} are all 0: nothing to fit (give one of them > 0)")

    if validation_fraction is not None:
        v = _as_float(validation_fraction)
        if v is None or not (0.0 <= v < 1.0):
            raise MtpjaxError(f"--validation-fraction {_show(validation_fraction)}: must be a number in [0, 1)")
    if linear_solve_at is not None:
        for s in linear_solve_at:
            p = _int_problem(s, 0)
            if p:
                raise MtpjaxError(f"--linear-solve-at {_show(s)}: {p}")
    if method is not None and method not in methods:
        raise MtpjaxError(f"--optimizer {_show(method)}: must be one of {', '.join(methods)}")
    if init is not None and init not in INITS:
        raise MtpjaxError(f"--init {_show(init)}: must be one of {', '.join(INITS)}")


# ---------------------------------------------------------------------------------------------------------
# argparse types (the same checks while the command line is parsed)


def _type(problem, convert):
    def check(text):
        p = problem(text)
        if p:
            raise OptionError(f"{p} (got {text!r})" if isinstance(text, str) else f"{p} (got {text})")
        return convert(text)

    return check


def positive_int(text) -> int:
    """argparse type: an integer >= 1."""
    return _type(lambda t: _int_problem(t, 1), _as_int)(text)


def non_negative_int(text) -> int:
    """argparse type: an integer >= 0 (seeds, steps)."""
    return _type(lambda t: _int_problem(t, 0), _as_int)(text)


def positive_float(text) -> float:
    """argparse type: a finite number > 0 (cutoffs, distances, learning rates)."""
    return _type(_positive_problem, _as_float)(text)


def non_negative_float(text) -> float:
    """argparse type: a finite number >= 0 (loss weights)."""
    return _type(_non_negative_problem, _as_float)(text)


def at_least_one(value) -> float:
    """Config check: a number >= 1 (capacity multipliers, extrapolation-grade thresholds)."""
    value = float(value)
    if not value >= 1.0:
        raise ValueError(f"must be at least 1 (got {value:g})")
    return value


def mtp_level(text) -> int:
    """argparse type: an MTP level, 2..28."""
    return _type(_level_problem, _as_int)(text)
