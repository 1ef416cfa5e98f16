"""The extrapolation grade inside simulations: a jit-able γ of one structure on its neighbour list, for MD and
relaxations (as MLIP's LAMMPS interface grades each frame).

:func:`structure_grade_fn` returns ``fn(positions, cell, types, neighbours) -> γ``, a pure JAX function (it traces
into a jitted MD step or loop):

- configuration mode (``"cfg"``): the row b = dE/dθ / N by one reverse-mode pass through the model, γ = max_l |(b
  A⁻¹)_l|;
- neighbourhood mode (``"nbh"``): the rows dV_i/dθ of every atom (:func:`mtpjax.active.rows.site_energy_jacobian`,
  forward mode), γ = the largest over the atoms.

The rows are the same derivatives as :mod:`mtpjax.active.rows` computes for ``mtpjax grade`` (tested to agree), so
the grades equal MLIP's. MLIP's defaults for the thresholds: :data:`GAMMA_SELECT` (write the structure out) and
:data:`GAMMA_BREAK` (stop the run).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ..errors import MtpjaxError
from ..potential import energy
from .domain import GRADE_THRESHOLD
from .maxvol import ActiveSet
from .rows import check_mode, parameter_vector, site_energy_jacobian, with_parameters

#: γ above which a simulation writes the structure out (MLIP's ``select:threshold`` default; the calculator's flag).
GAMMA_SELECT = GRADE_THRESHOLD
#: γ above which a simulation stops (MLIP's ``select:threshold-break`` default).
GAMMA_BREAK = 10.0


def structure_grade_fn(mtp, active: ActiveSet):
    """``fn(positions (N, 3) Å, cell (3, 3) Å, types (N,), neighbours) -> γ`` (a scalar; dimensionless) of ``mtp``
    against ``active`` in the active set's mode; jit-, vmap-safe. MtpjaxError if ``mtp`` is not an MTP of the active
    set's size."""
    theta0 = parameter_vector(mtp)
    if theta0.shape[0] != active.n:
        raise MtpjaxError(f"the active set has {active.n} parameters, the potential {theta0.shape[0]}: they do not belong "
                          f"together")
    a_inv = jnp.asarray(active.A_inv)
    mode = check_mode(active.mode)

    def fn(positions, cell, types, nbrs):
        if mode == "cfg":
            n = jnp.maximum(jnp.sum(types >= 0), 1)
            b = jax.grad(lambda th: energy(with_parameters(mtp, th), positions, cell, types, nbrs,
                                           use_custom_vjp=False))(theta0) / n
            return jnp.max(jnp.abs(b @ a_inv))
        rows = site_energy_jacobian(mtp, positions, cell, types, nbrs, None)
        return jnp.max(jnp.abs(rows @ a_inv))

    return fn
