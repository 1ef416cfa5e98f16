"""Pieces shared by the JAX oracles: safe pair distances, species checks, the description protocol.

Every oracle (JAX or not) provides

- ``name`` (str): a short human-readable name, e.g. ``"Zhou2004 EAM (Mg)"``;
- ``species`` (tuple of element symbols, or None for "whatever the wrapped code accepts");
- ``spec`` (dict): a JSON-serialisable recipe that :func:`mtpjax.oracles.make_oracle` turns back into an
  equal oracle;
- ``describe()`` (dict): ``spec`` plus what a dataset manifest should record (name, species, cutoff,
  units, parameters, literature reference).

The JAX oracles also give ``cutoff`` (Å, beyond which a pair contributes exactly nothing) and
``dimer_energy(r, a, b)`` (eV, the binding of an isolated pair), from which :func:`interaction_range` finds how far
the oracle's interactions really reach (Å); for an ASE calculator (no ``dimer_energy``) the range is unknown (None).

:class:`Oracle` states that protocol (``isinstance(x, Oracle)``); a JAX oracle is also a
:class:`mtpjax.potential.Potential`.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import jax.numpy as jnp
import numpy as np

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


#: Default tolerance (eV) of :func:`interaction_range`: a pair bound by less than 1 meV counts as not interacting.
RANGE_TOL = 1e-3
#: Grid step (Å) of :func:`interaction_range`'s scan.
RANGE_STEP = 1e-3


def interaction_range(oracle, tol: float = RANGE_TOL, step: float = RANGE_STEP) -> float | None:
    """How far the oracle's interactions reach (Å): the distance beyond which every isolated pair of its species
    is bound by at most ``tol`` eV (``|dimer_energy(r)| <= tol`` on a ``step`` Å grid from 0.5 Å up to the cutoff),
    never more than ``oracle.cutoff``. ``tol = 0`` gives the hard range (the cutoff when the functions do not vanish
    before it). None when the oracle cannot tell (no ``dimer_energy`` or no ``cutoff``: an ASE calculator).

    The dimer is the test: an EAM pair's binding includes both atoms' embedding change, which at the dimer's low
    density (steepest embedding) reaches further than the pair function alone. Zhou 2004 W (hard cutoff 6.13 Å)
    gives 4.38 Å, Mg 6.46 Å, Al 5.64 Å; a non-finite energy counts as an interaction.
    """
    dimer = getattr(oracle, "dimer_energy", None)
    cutoff = getattr(oracle, "cutoff", None)
    if dimer is None or cutoff is None:
        return None
    cutoff = float(cutoff)
    if not (tol >= 0 and step > 0):
        raise MtpjaxError(f"interaction_range needs tol >= 0 eV and step > 0 Å, got {tol}, {step}")
    r = np.arange(0.5, cutoff, step)
    if r.size == 0:
        return cutoff
    S = len(oracle.species)
    a, b = np.triu_indices(S)
    rr = jnp.asarray(np.broadcast_to(r, (len(a), r.size)))
    e = np.asarray(dimer(rr, jnp.asarray(a)[:, None], jnp.asarray(b)[:, None]))
    bound = np.nonzero(~(np.abs(e) <= tol).all(axis=0))[0]  # NaN counts as bound
    if bound.size == 0:
        return round(float(r[0]), 6)
    k = int(bound[-1])
    return cutoff if k == r.size - 1 else min(cutoff, round(float(r[k + 1]), 6))
