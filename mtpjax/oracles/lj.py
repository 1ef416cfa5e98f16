"""Lennard-Jones pair potential as a JAX potential (default: argon, epsilon = 10.32 meV, sigma = 3.40 Å).

    u(r) = 4 epsilon [(sigma/r)^12 - (sigma/r)^6]  for r < cutoff, 0 beyond;   V_i = 1/2 sum_j u(r_ij)

Cutoff treatment, always explicit (it moves defect energies by several %):

- default: cutoff 2.5 sigma (8.5 Å), **unshifted** (u(rc) = -0.0163 epsilon = -0.168 meV: the energy jumps by that as a pair crosses rc);
- ``shift=True``: u(r) - u(rc), continuous energy, forces jump at rc (ASE's ``LennardJones(smooth=False)``);
- ``onset=ro``: u(r) times ASE's/jax-md's smooth cutoff function of r^2 between ro and rc (continuous energy and
  forces; ASE's ``LennardJones(smooth=True, ro=ro)``).

Units: eV, Å. One set of parameters for every species listed in ``species`` (default ``("Ar",)``).
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..errors import MtpjaxError
from .base import UNITS, safe_distances

#: Argon (the project's LJ benchmark): epsilon in eV, sigma in Å.
ARGON = {"epsilon": 0.01032, "sigma": 3.40}


class LennardJones(eqx.Module):
    """Lennard-Jones oracle; see the module docstring. ``epsilon`` (eV) and ``sigma`` (Å) are leaves; ``cutoff``
    (Å, default 2.5 sigma), ``shift`` (default False), ``onset`` (Å or None) and ``species`` are static."""

    epsilon: jax.Array
    sigma: jax.Array
    cutoff: float = eqx.field(static=True)
    shift: bool = eqx.field(static=True)
    onset: float | None = eqx.field(static=True)
    species: tuple = eqx.field(static=True)

    def __init__(self, epsilon: float = ARGON["epsilon"], sigma: float = ARGON["sigma"], cutoff: float | None = None,
                 shift: bool = False, onset: float | None = None, species=("Ar",)):
        cutoff = 2.5 * float(sigma) if cutoff is None else float(cutoff)
        if not (epsilon > 0 and sigma > 0 and cutoff > 0):
            raise MtpjaxError(f"Lennard-Jones needs epsilon, sigma and cutoff > 0, got {epsilon}, {sigma}, {cutoff}")
        if onset is not None and not 0 < onset < cutoff:
            raise MtpjaxError(f"Lennard-Jones onset {onset} must lie in (0, cutoff = {cutoff})")
        if onset is not None and shift:
            raise MtpjaxError("Lennard-Jones: choose either shift=True or a smooth onset, not both")
        species = (species,) if isinstance(species, str) else tuple(species)
        if not species:
            raise MtpjaxError("Lennard-Jones needs at least one species")
        self.epsilon = jnp.asarray(float(epsilon))
        self.sigma = jnp.asarray(float(sigma))
        self.cutoff, self.shift, self.onset, self.species = cutoff, bool(shift), onset, species

    @property
    def n_species(self) -> int:
        return len(self.species)

    @property
    def name(self) -> str:
        how = "shifted" if self.shift else (f"smooth from {self.onset:g} Å" if self.onset is not None else "unshifted")
        return f"Lennard-Jones (eps={float(self.epsilon):g} eV, sigma={float(self.sigma):g} Å, rc={self.cutoff:g} Å, {how})"

    def pair_energy(self, r):
        """u(r) in eV for r (Å) below the cutoff, with the chosen shift or smoothing."""
        s6 = (self.sigma / r) ** 6
        u = 4.0 * self.epsilon * s6 * (s6 - 1.0)
        if self.shift:
            c6 = (self.sigma / self.cutoff) ** 6
            u = u - 4.0 * self.epsilon * c6 * (c6 - 1.0)
        if self.onset is not None:
            r2, rc2, ro2 = r * r, self.cutoff**2, self.onset**2
            sw = (rc2 - r2) ** 2 * (rc2 + 2.0 * r2 - 3.0 * ro2) / (rc2 - ro2) ** 3
            u = u * jnp.where(r2 < ro2, 1.0, sw)
        return u

    def dimer_energy(self, r, a=0, b=0):
        """Binding (eV) of an isolated pair at r (Å) below the cutoff: u(r) (:func:`mtpjax.oracles.interaction_range`)."""
        return self.pair_energy(r)

    def site_energies_from_pairs(self, R, types, nbrs, **kw):
        """Site energies (N,) in eV (the :class:`mtpjax.potential.Potential` protocol; extra keywords ignored)."""
        r, inside = safe_distances(R, nbrs.mask, self.cutoff)
        e = 0.5 * jnp.sum(jnp.where(inside, self.pair_energy(r), 0.0), axis=1)
        return jnp.where(types >= 0, e, 0.0)

    @property
    def spec(self) -> dict:
        """JSON recipe for :func:`mtpjax.oracles.make_oracle`."""
        return {"type": "lj", "epsilon": float(self.epsilon), "sigma": float(self.sigma), "cutoff": self.cutoff,
                "shift": self.shift, "onset": self.onset, "species": list(self.species)}

    def describe(self) -> dict:
        how = ("energy shifted to zero at the cutoff" if self.shift else
               f"smooth cutoff function between {self.onset} and {self.cutoff} Å (ASE smooth=True)" if self.onset is not None
               else "unshifted, hard cutoff")
        return {**self.spec, "name": self.name, "units": UNITS, "cutoff_treatment": how}
