"""Relaxations, one mechanism for the whole project (training-set generation, verification, phonons).

- :func:`relax` — any potential, any cell degrees of freedom: ``cell`` fixed | full | volume | shape | normal or
  a 3x3 ``cell_mask`` (in the spirit of ASE's cell filters), ``positions=False`` (cell only), ``fix`` masks of
  frozen position components. JAX potentials: one batched FIRE on jax-md, vmapped over structures, with the host
  loop that rebuilds neighbour lists before they can go stale (:mod:`.fire`, :mod:`.batched`); other oracles (an
  ASE calculator, :class:`mtpjax.oracles.ASEOracle`): ASE's FIRE and ``FrechetCellFilter`` behind the same API
  (:mod:`.ase_fire`). Results are :class:`RelaxResult` records; failures have a ``reason`` (non_finite, collapsed,
  volume, not_converged, oracle_error, unknown_element).
- :func:`equilibrium` — the lattice equilibrium (or fixed-volume c/a) of hcp, fcc, dhcp, bcc (:mod:`.lattice`).
- :func:`guess_volume` — the starting volume per atom of an element.
"""
from .api import relax
from .lattice import IDEAL_C_OVER_A, PHASES, equilibrium, guess_volume, hex_parameters, lattice_parameters, prototype
from .result import CELL_MODES, REASONS, RelaxResult

__all__ = ["CELL_MODES", "IDEAL_C_OVER_A", "PHASES", "REASONS", "RelaxResult", "equilibrium", "guess_volume",
           "hex_parameters", "lattice_parameters", "prototype", "relax"]
