"""Pieces shared by the JAX oracles: safe pair distances, species checks, the description protocol.

Every oracle (JAX or not) provides

- ``name`` (str): a short human-readable name, e.g. ``"Zhou2004 EAM (Mg)"``;
- ``species`` (tuple of element symbols, or None for "whatever the wrapped code accepts");
- ``spec`` (dict): a JSON-serialisable recipe that :func:`mtpjax.oracles.make_oracle` turns back into an
  equal oracle;
- ``describe()`` (dict): ``spec`` plus what a dataset manifest should record (name, species, cutoff,
  units, parameters, literature reference).

:class:`Oracle` states that protocol (``isinstance(x, Oracle)``); a JAX oracle is also a
:class:`mtpjax.potential.Potential`.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import jax.numpy as jnp

from ..errors import MtpjaxError

#: Units of every oracle in this package.
UNITS = {"length": "Å", "energy": "eV", "forces": "eV/Å", "stress": "eV/Å³ (ASE sign and Voigt order)"}


@runtime_checkable
class Oracle(Protocol):
    """What every oracle provides, JAX or not (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def species(self) -> tuple | None: ...

    @property
    def spec(self) -> dict: ...

    def describe(self) -> dict: ...


def safe_distances(R, mask, cutoff: float):
    """Distances r (N, n_nb) in Å and ``inside`` = real pair with r < cutoff.

    Outside pairs (padding, r >= cutoff) get the harmless placeholder r = cutoff / 2 *before* the square root
    (the "double where"), so neither values nor gradients are NaN there; callers must still zero their
    contributions with ``inside``.
    """
    r2 = jnp.sum(R * R, axis=-1)
    inside = mask & (r2 < cutoff * cutoff)
    r = jnp.sqrt(jnp.where(inside, r2, 0.25 * cutoff * cutoff))
    return r, inside


def check_symbols(symbols, species, what: str = "the oracle") -> None:
    """Raise :class:`MtpjaxError` naming the elements of ``symbols`` that ``species`` lacks (None: no check)."""
    if species is None:
        return
    missing = sorted(set(symbols) - set(species))
    if missing:
        raise MtpjaxError(f"element(s) {missing} unknown to {what}; it knows {list(species)}")

