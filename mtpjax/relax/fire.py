"""The jitted half of the batched relaxation: jax-md's FIRE (``jax_md.minimize.fire_descent``, ASE's constants)
vmapped over padded structures, the forces of a whole batch as one packed evaluation (a custom batching rule), and
the one neighbour-list validity bound (:func:`list_valid`).

Degrees of freedom of a structure (the pytree FIRE moves): reference positions u (Å) and a log-strain X (3x3).
Real positions and cell are x = u·F, C = C0·F with F = exp(X / c_f) (row vectors, C0 the starting cell, c_f the
number of atoms, as ASE's ``FrechetCellFilter``). The force on u is -dE/du (masked by the free components); the
force on X is the virial W = -dE/dε projected on the free strain components, divided by c_f (eV); it vanishes at
zero (projected) stress. Steps are capped per structure (``umax`` Å of u per atom, ``emax`` per log-strain
component; :mod:`.batched` sets them so that a fresh neighbour list admits the next step).

A proposed step is refused, and the structure stops, when its positions or forces are not finite (NON_FINITE),
its volume leaves [V0/vfac, vfac·V0] (VOLUME), two atoms come closer than ``dmin`` (COLLAPSED); it is refused and
the structure waits for a new list when its list would no longer hold every pair inside the cutoff (REBUILD).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax_md import minimize

from ..neighbors import Neighbours
from ..units import EV_PER_A3_TO_GPA

#: Statuses of a structure inside the loop.
ACTIVE, CONVERGED, REBUILD, NON_FINITE, COLLAPSED, VOLUME = range(6)

#: FIRE constants (ASE's values; jax-md's velocity-Verlet FIRE, unit masses).
FIRE = dict(dt_start=0.1, dt_max=1.0, n_min=5, f_inc=1.1, f_dec=0.5, alpha_start=0.1, f_alpha=0.99)


def expm(A):
    """exp(A) of a 3x3 matrix by scaling and squaring of a Taylor series (smooth, differentiable; |A| < ~2)."""
    s = 6
    B = A / (2.0**s)
    eye = jnp.eye(3, dtype=A.dtype)
    term, out = eye, eye
    for k in range(1, 10):
        term = term @ B / k
        out = out + term
    for _ in range(s):
        out = out @ out
    return out


def list_valid(u, F, ub, Fb, cutoff: float, radius: float):
    """Whether a neighbour list of radius ``radius`` built at (u_b, F_b) still holds every pair inside ``cutoff`` at
    (u, F): the one validity bound,

        σ_min(F_b⁻¹ F) · radius − 2 · max_i |u_i − u_b,i| · ‖F‖₂ ≥ cutoff.

    (A pair r = (u_j − u_i + s·C0) F = r_b F_b⁻¹ F + (δ_j − δ_i) F with |r_b| ≥ radius is at least that long.)"""
    G = jnp.linalg.solve(Fb, F)
    smin = jnp.min(jnp.linalg.svd(G, compute_uv=False))
    du = u - ub
    disp = jnp.sqrt(jnp.max(jnp.sum(du * du, axis=-1)))
    fnorm = jnp.max(jnp.linalg.svd(F, compute_uv=False))
    return smin * radius - 2.0 * disp * fnorm >= cutoff


def project(W, d):
    """The virial restricted to the free strain components (mask, hydrostatic, constant volume), symmetrised."""
    W = 0.5 * (W + W.T) * d["smask"]
    eye = jnp.eye(3, dtype=W.dtype)
    W = jnp.where(d["hydro"] > 0, eye * (jnp.trace(W) / 3.0), W)
    return jnp.where(d["constvol"] > 0, W - eye * (jnp.trace(W) / 3.0), W)


def efs_batch(potential, dof, d):
    """(energies (B,) eV, -dE/du (B, n, 3), virials W (B, 3, 3) eV, F (B, 3, 3)) of a batch of padded structures,
    evaluated as one packed disjoint union (one call of the potential for all B·n atoms)."""
    u, X = dof["u"], dof["e"]
    B, n = u.shape[:2]
    F = jax.vmap(expm)(X / d["cf"][:, None, None])
    eye = jnp.eye(3, dtype=u.dtype)
    nb = d["nbrs"]
    n_nb = nb.index.shape[-1]
    flat = Neighbours(index=(nb.index + (jnp.arange(B, dtype=nb.index.dtype) * n)[:, None, None]).reshape(B * n, n_nb),
                      shift=nb.shift.reshape(B * n, n_nb, 3), mask=nb.mask.reshape(B * n, n_nb))
    types = d["types"].reshape(B * n)
    lattice = jnp.einsum("bikc,bcd->bikd", nb.shift, d["cell0"])

    def energy(u, delta):
        R = u.reshape(B * n, 3)[flat.index].reshape(B, n, n_nb, 3) - u[:, :, None, :] + lattice
        R = jnp.einsum("bikc,bcd->bikd", R, F @ (eye + delta)).reshape(B * n, n_nb, 3)
        Eb = jnp.sum(potential.site_energies_from_pairs(R, types, flat).reshape(B, n), axis=1)
        return jnp.sum(Eb), Eb

    (_, Eb), (gu, gd) = jax.value_and_grad(energy, argnums=(0, 1), has_aux=True)(u, jnp.zeros((B, 3, 3), u.dtype))
    return Eb, -gu, -jnp.swapaxes(gd, -1, -2), F


def _forces_batch(potential, dof, d):
    _, fu, W, _ = efs_batch(potential, dof, d)
    fe = jax.vmap(project)(W, d) / d["cf"][:, None, None]
    return {"u": fu * d["free"], "e": fe}


@jax.custom_batching.custom_vmap
def _forces(potential, dof, d):
    """FIRE forces {u: -dE/du (masked), e: projected virial / c_f} of one structure. Under vmap (FIRE runs vmapped
    over structures) the whole batch is evaluated packed, in one call of the potential."""
    out = _forces_batch(potential, jax.tree.map(lambda x: x[None], dof), jax.tree.map(lambda x: x[None], d))
    return jax.tree.map(lambda x: x[0], out)


@_forces.def_vmap
def _forces_vmap(axis_size, in_batched, potential, dof, d):
    _, dof_b, d_b = in_batched

    def bc(x, b):
        return x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x))

    dof = jax.tree.map(bc, dof, dof_b)
    d = jax.tree.map(bc, d, d_b)
    out = _forces_batch(potential, dof, d)
    return out, jax.tree.map(lambda _: True, out)


def _shift():
    """FIRE's displacement, scaled down (as ASE) so that no atom moves more than ``umax`` Å and no log-strain
    component changes by more than ``emax`` per step (both per structure)."""
    def shift_u(R, dR, **d):
        n = jnp.sqrt(jnp.max(jnp.sum(dR * dR, axis=-1)))
        return R + dR * jnp.minimum(1.0, d["umax"] / jnp.maximum(n, 1e-300))

    def shift_e(X, dX, **d):
        n = jnp.max(jnp.abs(dX)) / d["cf"]
        return X + dX * jnp.minimum(1.0, d["emax"] / jnp.maximum(n, 1e-300))

    return {"u": shift_u, "e": shift_e}


def closest(u, F, d):
    """The shortest pair distance (Å) of one structure in its neighbour list (inf without pairs)."""
    nb = d["nbrs"]
    R = (u[nb.index] - u[:, None, :] + nb.shift @ d["cell0"]) @ F
    r = jnp.sqrt(jnp.sum(R * R, axis=-1))
    return jnp.min(jnp.where(nb.mask & (d["types"] >= 0)[:, None], r, jnp.inf))


def converged(state, F, d):
    """Whether one structure has converged: max |f_i| ≤ ftol (eV/Å, free components) and max |σ_ij| of the projected
    stress ≤ stol (GPa), from its FIRE state and its F."""
    f_real = state.force["u"] @ jnp.linalg.inv(F).T
    fmax = jnp.sqrt(jnp.max(jnp.sum(f_real * f_real, axis=-1)))
    V = d["V0"] * jnp.linalg.det(F)
    smax = jnp.max(jnp.abs(state.force["e"] * d["cf"])) / V * EV_PER_A3_TO_GPA
    return (fmax <= d["ftol"]) & (smax <= d["stol"])


def _round_impl(potential, state, status, steps, data, n_steps, cutoff, radius):
    """Up to ``n_steps`` FIRE steps of a vmapped batch (each structure its own FIRE state), then energy, -dE/du and
    virial of every final state. A structure stops when it converges, fails, or its next step needs a new neighbour
    list (it then waits); the round ends early when no structure moves, or more wait than move."""
    _, apply_fn = minimize.fire_descent(lambda dof, **d: _forces(potential, dof, d), _shift(), **FIRE)

    def one(st, d):
        new = apply_fn(st, **d)
        u, X = new.position["u"], new.position["e"]
        F = expm(X / d["cf"])
        moved = jnp.all(jnp.isfinite(u)) & jnp.all(jnp.isfinite(X))
        det = jnp.linalg.det(F)
        inside = (det > 1.0 / d["vfac"]) & (det < d["vfac"])
        valid = list_valid(u, F, d["ub"], d["Fb"], cutoff, radius)
        finite = jnp.all(jnp.isfinite(new.force["u"])) & jnp.all(jnp.isfinite(new.force["e"]))
        apart = closest(u, F, d) >= d["dmin"]
        code = jnp.where(~moved, NON_FINITE, jnp.where(~inside, VOLUME, jnp.where(~valid, REBUILD, jnp.where(
            ~finite, NON_FINITE, jnp.where(~apart, COLLAPSED, ACTIVE)))))
        return new, code, converged(new, F, d)

    def body(carry):
        i, st, status, steps = carry
        new, code, conv = jax.vmap(one)(st, data)
        active = (status == ACTIVE) & (steps < data["max_steps"])
        accept = active & (code == ACTIVE)

        def sel(a, b):
            return jnp.where(accept.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

        st = jax.tree.map(sel, new, st)
        status = jnp.where(accept, jnp.where(conv, CONVERGED, ACTIVE), jnp.where(active, code, status))
        return i + 1, st, status, steps + accept.astype(steps.dtype)

    def cond(carry):
        i, _, status, steps = carry
        moving = jnp.sum((status == ACTIVE) & (steps < data["max_steps"]))
        waiting = jnp.sum(status == REBUILD)
        return (i < n_steps) & (moving > 0) & (waiting <= moving)

    _, state, status, steps = jax.lax.while_loop(cond, body, (jnp.int32(0), state, status, steps))
    energy, fu, W, _ = efs_batch(potential, state.position, data)
    return state, status, steps, energy, fu, W


#: The compiled round: one program per (potential structure, padded shape); steps and everything else traced.
run_round = jax.jit(_round_impl, static_argnames=("cutoff", "radius"))
