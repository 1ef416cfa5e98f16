"""Batched relaxations of any JAX potential with jax-md's FIRE (``jax_md.minimize.fire_descent``).

Degrees of freedom of a structure (a pytree that FIRE moves): reference positions u (Å) and a log-strain
X (3x3, symmetric). Real positions and cell are x = u·F, C = C0·F with F = exp(X / c_f) (row vectors, C0 the
starting cell, c_f = number of atoms as in ASE's cell filters). The force on u is -dE/du (exact); the force
on X is the projected virial W/c_f (eV), W = -dE/dε = -V·σ, which vanishes exactly at zero stress. Cell modes:

- ``fixed``: cell held (positions only);
- ``full``: all six strain components;
- ``volume``: hydrostatic (X ∝ I; positions still relaxed unless ``positions=False``);
- ``shape``: constant volume (traceless X; the volume is kept exactly);
- ``normal``: only ε_zz (slabs, grain boundaries, faults: lateral cell fixed);
- or a 3x3 boolean ``cell_mask`` of free strain components.

``fix`` freezes chosen position components (per structure, (N, 3) bool, True = frozen), e.g. all but z.

Neighbour lists are built on the host (:func:`mtpjax.neighbors.pairs`: any cell, periodic images) with
``cutoff + skin``. Structures of similar size are padded to one shape (atoms to powers of two, neighbour slots
and batch size to buckets) and FIRE is vmapped over them (each structure has its own FIRE state) inside one
jitted loop of up to ``steps_per_round`` steps; under that vmap the forces of the whole batch are computed as one
packed disjoint union (a custom batching rule), so the potential is called once per step. A list built at
(u_b, F_b) is valid while σ_min(F_b⁻¹F)·(cutoff + skin) − 2·max|u − u_b|·‖F‖₂ ≥ cutoff; a step that would break
this is refused, the round ends, and the list is rebuilt on the host (wider padding, a new compiled shape, when
the slots overflow), so forces never come from a stale list. Steps are capped (atoms ≤ min(maxstep, skin/4) Å,
log-strain ≤ skin/(12(cutoff + skin)) per component), so a fresh list always admits the next step. Energy,
forces and virial of each final state are evaluated with its valid list at the end of the last round.

Convergence: max |f_i| ≤ ``fmax`` (eV/Å, free components only) and, with a cell mode, max |σ_ij| of the
projected stress ≤ ``smax`` (GPa). A structure fails (``RelaxResult.reason``) when it does not converge in
``max_steps`` (``not_converged``; ``max_steps=0`` is a single-point evaluation, never a failure), its energy or
forces become non-finite (``non_finite``), atoms come closer than ``min_distance`` Å (``collapsed``), or its volume
leaves [V0/4, 4 V0] (``volume``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms
from jax_md import minimize

from ..errors import MtpjaxError, StructureError
from ..evaluate import types_for_symbols
from ..neighbors import Neighbours, bucket_size, dense_neighbours, pairs
from ..units import EV_PER_A3_TO_GPA, stress_to_voigt
from .prototypes import PHASES, guess_volume, prototype

CELL_MODES = ("fixed", "full", "volume", "shape", "normal")
ACTIVE, CONVERGED, REBUILD, NON_FINITE = 0, 1, 2, 3

#: FIRE constants (ASE's values; jax-md's velocity-Verlet FIRE, unit masses).
FIRE = dict(dt_start=0.1, dt_max=1.0, n_min=5, f_inc=1.1, f_dec=0.5, alpha_start=0.1, f_alpha=0.99)


@dataclass
class RelaxResult:
    """One relaxation. ``atoms``: the relaxed structure (also when it did not converge; None when it blew up).
    energy (eV), forces (N, 3) eV/Å, stress (6,) ASE Voigt eV/Å³ (positive in tension) of the final structure;
    fmax (eV/Å) and smax (GPa, projected on the free cell components) at the end; steps (FIRE steps);
    initial_energy (eV): of the structure as given; max_displacement (Å): largest move of an atom relative to the
    homogeneous cell deformation, |(u_final − u_start)·F_final|; n_builds: neighbour lists built; reason: None or
    why it failed."""

    name: str
    atoms: Atoms | None
    energy: float = float("nan")
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    fmax: float = float("nan")
    smax: float = float("nan")
    initial_energy: float = float("nan")
    steps: int = 0
    converged: bool = False
    max_displacement: float = float("nan")
    n_builds: int = 0
    reason: str | None = None
    message: str = ""
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def energy_per_atom(self) -> float:
        return self.energy / len(self.atoms) if self.atoms is not None else float("nan")

    def summary(self) -> dict:
        """JSON-able convergence record."""
        f = lambda x: None if x is None or not np.isfinite(x) else float(x)  # noqa: E731
        return {"name": self.name, "converged": bool(self.converged), "steps": int(self.steps),
                "fmax_eV_A": f(self.fmax), "smax_GPa": f(self.smax), "max_displacement_A": f(self.max_displacement),
                "n_builds": int(self.n_builds), "reason": self.reason}


def _cell_mask(mode: str, cell_mask=None) -> tuple[np.ndarray, float, float]:
    """(mask (3,3) of free strain components, hydrostatic flag, constant-volume flag)."""
    if cell_mask is not None:
        m = np.asarray(cell_mask, dtype=bool)
        return (m | m.T).astype(np.float64), 0.0, 1.0 if mode == "shape" else 0.0
    if mode == "fixed":
        return np.zeros((3, 3)), 0.0, 0.0
    if mode in ("full", "volume", "shape"):
        return np.ones((3, 3)), 1.0 if mode == "volume" else 0.0, 1.0 if mode == "shape" else 0.0
    if mode == "normal":
        m = np.zeros((3, 3))
        m[2, 2] = 1.0
        return m, 0.0, 0.0
    raise MtpjaxError(f"unknown cell mode {mode!r}; known: {list(CELL_MODES)}")


def _expm_sym(A):
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


def _project(W, d):
    """The virial restricted to the free strain components (mask, hydrostatic, constant volume), symmetrised."""
    W = 0.5 * (W + W.T) * d["smask"]
    eye = jnp.eye(3, dtype=W.dtype)
    tr = jnp.trace(W) / 3.0
    W = jnp.where(d["hydro"] > 0, eye * tr, W)
    return jnp.where(d["constvol"] > 0, W - eye * (jnp.trace(W) / 3.0), W)


def _efs_batch(potential, dof, d):
    """(energies (B,) eV, -dE/du (B, n, 3), virials W (B, 3, 3) eV, F (B, 3, 3)) of a batch of padded structures,
    evaluated as one packed disjoint union (one call of the potential for all B·n atoms)."""
    u, X = dof["u"], dof["e"]
    B, n = u.shape[:2]
    F = jax.vmap(_expm_sym)(X / d["cf"][:, None, None])
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
    _, fu, W, _ = _efs_batch(potential, dof, d)
    fe = jax.vmap(_project)(W, d) / d["cf"][:, None, None]
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


def _shift(maxstep, maxstrain):
    """FIRE's displacement, scaled down (as ASE) so that no atom moves more than ``maxstep`` Å and no log-strain
    component changes by more than ``maxstrain`` per step."""
    def shift_u(R, dR, **d):
        n = jnp.sqrt(jnp.max(jnp.sum(dR * dR, axis=-1)))
        return R + dR * jnp.minimum(1.0, maxstep / jnp.maximum(n, 1e-300))

    def shift_e(X, dX, **d):
        n = jnp.max(jnp.abs(dX)) / d["cf"]
        return X + dX * jnp.minimum(1.0, maxstrain / jnp.maximum(n, 1e-300))

    return {"u": shift_u, "e": shift_e}


def _status(state, d):
    """(converged, fmax eV/Å, smax GPa) of one structure from its FIRE state."""
    F = _expm_sym(state.position["e"] / d["cf"])
    f_real = state.force["u"] @ jnp.linalg.inv(F).T
    fmax = jnp.sqrt(jnp.max(jnp.sum(f_real * f_real, axis=-1)))
    V = d["V0"] * jnp.linalg.det(F)
    smax = jnp.max(jnp.abs(state.force["e"] * d["cf"])) / V * EV_PER_A3_TO_GPA
    return (fmax <= d["ftol"]) & (smax <= d["stol"]), fmax, smax


def _valid(state, d, cutoff, radius):
    """Whether the neighbour list built at (u_b, F_b) still holds every pair within ``cutoff``."""
    F = _expm_sym(state.position["e"] / d["cf"])
    G = jnp.linalg.solve(d["Fb"], F)  # F_b^-1 F
    smin = jnp.min(jnp.linalg.svd(G, compute_uv=False))
    du = state.position["u"] - d["ub"]
    disp = jnp.sqrt(jnp.max(jnp.sum(du * du, axis=-1)))
    fnorm = jnp.max(jnp.linalg.svd(F, compute_uv=False))
    detF = jnp.linalg.det(F)
    return (smin * radius - 2.0 * disp * fnorm >= cutoff) & (detF > 0.25) & (detF < 4.0)


def _round_impl(potential, state, status, steps, data, n_steps, cutoff, radius, maxstep, maxstrain):
    """Up to ``n_steps`` FIRE steps of a vmapped batch; a structure stops when converged, non-finite, or when its
    next step would need a new neighbour list (the round then ends for all)."""
    _, apply_fn = minimize.fire_descent(lambda dof, **d: _forces(potential, dof, d), _shift(maxstep, maxstrain), **FIRE)

    def one(st, d):
        new = apply_fn(st, **d)
        finite = jnp.all(jnp.isfinite(new.force["u"])) & jnp.all(jnp.isfinite(new.force["e"]))
        finite = finite & jnp.all(jnp.isfinite(new.position["u"])) & jnp.all(jnp.isfinite(new.position["e"]))
        return new, finite, _valid(new, d, cutoff, radius)

    def body(carry):
        i, st, status, steps = carry
        new, finite, valid = jax.vmap(one)(st, data)
        active = (status == ACTIVE) & (steps < data["max_steps"])
        accept = active & finite & valid

        def sel(a, b):
            return jnp.where(accept.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

        st = jax.tree.map(sel, new, st)
        conv, _, _ = jax.vmap(_status)(st, data)
        status = jnp.where(active & ~finite, NON_FINITE,
                           jnp.where(active & finite & ~valid, REBUILD, jnp.where(accept & conv, CONVERGED, status)))
        return i + 1, st, status, steps + accept.astype(steps.dtype)

    def cond(carry):
        i, _, status, steps = carry
        return (i < n_steps) & jnp.any((status == ACTIVE) & (steps < data["max_steps"])) & ~jnp.any(status == REBUILD)

    _, state, status, steps = jax.lax.while_loop(cond, body, (jnp.int32(0), state, status, steps))
    energy, fu, W, _ = _efs_batch(potential, state.position, data)
    return state, status, steps, energy, fu, W


_round = jax.jit(_round_impl, static_argnames=("cutoff", "radius", "maxstep", "maxstrain"))


@dataclass
class _Item:
    """Host-side state of one structure during a relaxation."""

    k: int
    name: str
    symbols: list
    types: np.ndarray
    cell0: np.ndarray
    u0: np.ndarray
    u: np.ndarray  # current reference positions (wrapped), (n, 3)
    image: np.ndarray  # lattice vectors (in C0) removed by wrapping, (n, 3) int
    X: np.ndarray
    free: np.ndarray
    smask: np.ndarray
    hydro: float
    constvol: float
    pairs: tuple | None = None
    ub: np.ndarray | None = None
    Fb: np.ndarray | None = None
    n_builds: int = 0
    steps: int = 0
    max_steps: int = 0
    steps_at_build: int = -1
    status: int = ACTIVE
    reason: str | None = None
    message: str = ""
    energy: float | None = None
    energy0: float = float("nan")
    fu: np.ndarray | None = None
    W: np.ndarray | None = None


def _expm_host(A):
    w, v = np.linalg.eigh(0.5 * (A + A.T))
    return (v * np.exp(w)) @ v.T


def relax(
    potential,
    structures,
    *,
    cell: str = "fixed",
    cell_mask=None,
    positions: bool = True,
    fix=None,
    fmax: float = 1e-3,
    smax: float = 1e-3,
    max_steps: int = 3000,
    skin: float = 0.6,
    maxstep: float = 0.2,
    steps_per_round: int = 100,
    min_distance: float = 1.0,
    species=None,
    max_batch_atoms: int = 2048,
    min_batch_atoms: int = 128,
    names=None,
) -> list[RelaxResult]:
    """Relax ``structures`` (ase.Atoms, periodic in all directions) with ``potential``; results in input order.

    ``cell``: fixed | full | volume | shape | normal, or ``cell_mask`` (3x3 bool of free strain components; with
    ``cell='shape'`` also volume-preserving); either may be a list with one entry per structure.
    ``positions=False`` holds all fractional coordinates (pure cell relaxation); ``fix``: per structure None or an
    (N, 3) bool array of frozen position components. ``fmax`` (eV/Å), ``smax`` (GPa): convergence; ``max_steps``:
    FIRE steps at most (one for all or a list; 0: only evaluate, in the same batch); ``skin`` (Å) of the neighbour
    lists; ``maxstep`` (Å) largest move of an atom per step; ``min_distance`` (Å): closer atoms count as collapsed. ``species``: element of each
    type (default: the potential's). Batches: ``max_batch_atoms`` padded atoms at most, ``min_batch_atoms`` at least
    (structures are padded to powers of two, batches to powers of two structures, so few shapes compile).
    """
    structures = list(structures)
    if not structures:
        return []
    if species is None and getattr(potential, "species", None):
        species = potential.species
    species = list(species) if species is not None else None
    cells = list(cell) if isinstance(cell, (list, tuple)) else [cell] * len(structures)
    masks = list(cell_mask) if isinstance(cell_mask, (list, tuple)) else [cell_mask] * len(structures)
    if len(cells) != len(structures) or len(masks) != len(structures):
        raise MtpjaxError("relax: give one cell mode / cell_mask per structure, or one for all")
    cutoff = float(potential.cutoff)
    radius = cutoff + float(skin)
    if fix is None or isinstance(fix, np.ndarray):
        fix = [fix] * len(structures)
    items, results = [], [None] * len(structures)
    for k, a in enumerate(structures):
        name = (names[k] if names is not None else None) or a.info.get("name") or a.get_chemical_formula()
        if not np.all(a.pbc):
            raise StructureError(f"{name}: relax needs a cell periodic in all directions "
                                 "(put slabs in a box with vacuum)")
        types = types_for_symbols(a.get_chemical_symbols(), species, potential.n_species, name)
        n = len(a)
        ms = int(max_steps[k] if isinstance(max_steps, (list, tuple, np.ndarray)) else max_steps)
        free = np.ones((n, 3)) if positions else np.zeros((n, 3))
        if fix[k] is not None:
            free = free * (~np.asarray(fix[k], dtype=bool)).reshape(n, 3)
        u0 = a.positions.copy()
        smask, hydro, constvol = _cell_mask(cells[k], masks[k])
        items.append(_Item(k, name, a.get_chemical_symbols(), types, a.cell.array.copy(), u0, u0.copy(),
                           np.zeros((n, 3), dtype=np.int64), np.zeros((3, 3)), free, smask, hydro, constvol,
                           max_steps=ms))
    groups = _groups(items, max_batch_atoms, min_batch_atoms)
    for g in groups:
        prm = dict(min_batch_atoms=min_batch_atoms, fmax=fmax, smax=smax, maxstep=maxstep,
                   steps_per_round=steps_per_round, min_distance=min_distance)
        _relax_group(potential, g, cutoff, radius, prm)
    # results from the last round's evaluation of each final state (with its valid neighbour list)
    for it in items:
        F = _expm_host(it.X / len(it.u))
        x = it.u @ F
        finite = bool(np.all(np.isfinite(x)) and np.all(np.isfinite(F)))
        atoms = None
        if finite:
            atoms = Atoms(it.symbols, positions=x, cell=it.cell0 @ F, pbc=True)
            atoms.info = dict(structures[it.k].info)
        disp = (it.u + it.image @ it.cell0 - it.u0) @ F
        res = RelaxResult(name=it.name, atoms=atoms, steps=it.steps, initial_energy=it.energy0, n_builds=it.n_builds,
                          reason=it.reason, message=it.message,
                          max_displacement=float(np.sqrt((disp**2).sum(1).max())) if len(disp) and finite else np.nan)
        results[it.k] = res
        if it.energy is None or not finite:
            continue
        V = abs(np.linalg.det(it.cell0 @ F))
        forces = it.fu @ np.linalg.inv(F).T
        res.energy, res.forces = float(it.energy), forces
        W = 0.5 * (it.W + it.W.T)
        res.stress = -stress_to_voigt(W) / V
        if not (np.isfinite(res.energy) and np.all(np.isfinite(forces)) and np.all(np.isfinite(W))):
            res.reason = res.reason or "non_finite"
            continue
        f = forces * it.free
        res.fmax = float(np.sqrt((f**2).sum(1).max())) if len(f) else 0.0
        res.smax = float(np.abs(_project_host(W, it)).max() / V * EV_PER_A3_TO_GPA)
        res.converged = it.status == CONVERGED or bool(res.fmax <= fmax and res.smax <= smax)
        if res.reason is None and not res.converged and it.max_steps > 0:
            res.reason = "not_converged"
            res.message = f"{it.name}: fmax {res.fmax:.3g} eV/Å, smax {res.smax:.3g} GPa after {it.steps} steps"
    return results


def _project_host(W, it):
    W = 0.5 * (W + W.T) * it.smask
    if it.hydro:
        W = np.eye(3) * np.trace(W) / 3.0
    if it.constvol:
        W = W - np.eye(3) * np.trace(W) / 3.0
    return W


def _build(it: _Item, radius: float, min_distance: float) -> bool:
    """Wrap u into the cell and rebuild the neighbour list at the current (u, F). False when atoms collapsed."""
    F = _expm_host(it.X / len(it.u))
    frac = np.linalg.solve(it.cell0.T, it.u.T).T
    img = np.floor(frac).astype(np.int64)
    it.u = it.u - img @ it.cell0
    it.image += img
    try:
        i, j, s = pairs(it.u @ F, it.cell0 @ F, np.ones(3, bool), radius, it.name)
    except StructureError as e:
        it.reason, it.message = "collapsed", str(e)
        return False
    if len(i):
        d = np.linalg.norm((it.u[j] - it.u[i] + s @ it.cell0) @ F, axis=1)
        if d.min() < min_distance:
            k = int(d.argmin())
            it.reason, it.message = "collapsed", f"{it.name}: atoms {int(i[k])} and {int(j[k])} at {d[k]:.3f} Å"
            return False
    it.pairs, it.ub, it.Fb = (i, j, s), it.u.copy(), F
    it.n_builds += 1
    it.steps_at_build = it.steps
    return True


def _groups(items, max_batch_atoms: int, min_batch_atoms: int) -> list:
    """Structures grouped by padded size (powers of two, at least 8 atoms), at most ``max_batch_atoms`` padded atoms
    a group; a group of fewer than ``min_batch_atoms`` real atoms joins the next larger size when that is at most 4
    times larger (one compiled shape fewer for a little padding)."""
    order = sorted(items, key=lambda it: len(it.u))
    by_size = {}
    for it in order:
        by_size.setdefault(_pow2(len(it.u), 8), []).append(it)
    sizes = sorted(by_size)
    merged, carry = [], []
    for k, n_pad in enumerate(sizes):
        cur = carry + by_size[n_pad]
        if k + 1 < len(sizes) and sizes[k + 1] <= 4 * n_pad and sum(len(it.u) for it in cur) < min_batch_atoms:
            carry = cur
            continue
        merged.append((n_pad, cur))
        carry = []
    groups = []
    for n_pad, its in merged:
        per = max(1, max_batch_atoms // n_pad)
        groups += [its[i:i + per] for i in range(0, len(its), per)]
    return groups


def _pow2(n: int, minimum: int = 1) -> int:
    return 1 << (max(int(n), minimum, 1) - 1).bit_length()


def _relax_group(potential, group, cutoff, radius, prm):
    n_pad = _pow2(max(len(it.u) for it in group), 8)
    B = bucket_size(max(len(group), prm["min_batch_atoms"] // n_pad))
    live = []
    for it in group:
        if _build(it, radius, prm["min_distance"]):
            live.append(it)
    # FIRE state, host side
    dt, alpha, npos = np.full(B, FIRE["dt_start"]), np.full(B, FIRE["alpha_start"]), np.zeros(B, np.int32)
    U, PU, FU = np.zeros((B, n_pad, 3)), np.zeros((B, n_pad, 3)), np.zeros((B, n_pad, 3))
    X, PX, FX = np.zeros((B, 3, 3)), np.zeros((B, 3, 3)), np.zeros((B, 3, 3))
    slot = {id(it): b for b, it in enumerate(group)}
    for it in group:
        U[slot[id(it)], :len(it.u)] = it.u
    n_nb = 0
    status = np.full(B, CONVERGED, np.int32)
    for it in live:
        status[slot[id(it)]] = ACTIVE
    steps = np.zeros(B, np.int32)
    first = True
    while True:
        active = [it for it in live if it.status in (ACTIVE, REBUILD)]
        if not active:
            break
        # (re)build lists where needed, then pack
        for it in active:
            b = slot[id(it)]
            if it.status == REBUILD:
                it.u = U[b, :len(it.u)].copy()
                it.X = X[b].copy()
                if not _build(it, radius, prm["min_distance"]):
                    it.status = NON_FINITE
                    status[b] = NON_FINITE
                    continue
                U[b, :len(it.u)] = it.u
                it.status = ACTIVE
                status[b] = ACTIVE
        active = [it for it in live if it.status == ACTIVE]
        if not active:
            break
        need = max(int(np.bincount(it.pairs[0], minlength=len(it.u)).max()) if len(it.pairs[0]) else 0
                   for it in live if it.pairs)
        if need > n_nb:  # overflow of the padded neighbour slots: widen (a new compiled shape)
            n_nb = bucket_size(need, minimum=4)
        idx, shf = np.zeros((B, n_pad, n_nb), np.int32), np.zeros((B, n_pad, n_nb, 3))
        msk = np.zeros((B, n_pad, n_nb), bool)
        types = np.full((B, n_pad), -1, np.int64)
        cell0, ub, Fb = np.tile(np.eye(3) * 10.0, (B, 1, 1)), np.zeros((B, n_pad, 3)), np.tile(np.eye(3), (B, 1, 1))
        free, smask = np.zeros((B, n_pad, 3)), np.zeros((B, 3, 3))
        hydro, constvol, cf, V0 = np.zeros(B), np.zeros(B), np.ones(B), np.full(B, 1000.0)
        for it in live:
            b, n = slot[id(it)], len(it.u)
            if it.pairs is not None:
                nb = dense_neighbours(*it.pairs, n, n_atoms_pad=n_pad, n_nb=n_nb)
                idx[b], shf[b], msk[b] = nb.index, nb.shift, nb.mask
                ub[b, :n], Fb[b] = it.ub, it.Fb
            types[b, :n], cell0[b] = it.types, it.cell0
            free[b, :n], smask[b] = it.free, it.smask
            hydro[b], constvol[b], cf[b], V0[b] = it.hydro, it.constvol, n, abs(np.linalg.det(it.cell0))
        data = dict(cell0=cell0, types=types, nbrs=Neighbours(idx, shf, msk), free=free, smask=smask, hydro=hydro,
                    constvol=constvol, cf=cf, V0=V0, ub=ub, Fb=Fb, ftol=np.full(B, prm["fmax"]),
                    stol=np.full(B, prm["smax"]), max_steps=np.array([0] * B, np.int32))
        for it in live:
            data["max_steps"][slot[id(it)]] = it.max_steps
        state = minimize.FireDescentState(
            position={"e": X, "u": U}, momentum={"e": PX, "u": PU}, force={"e": FX, "u": FU},
            mass={"e": np.ones(B), "u": np.ones(B)}, dt=dt, alpha=alpha, n_pos=npos)
        n_steps = int(min(prm["steps_per_round"], max(1, max(it.max_steps - it.steps for it in active))))
        jstate, jdata = jax.tree.map(jnp.asarray, state), jax.tree.map(jnp.asarray, data)
        static = dict(cutoff=cutoff, radius=radius, maxstep=float(min(prm["maxstep"], 0.25 * (radius - cutoff))),
                      maxstrain=float(min(0.01, (radius - cutoff) / (12.0 * radius))))
        if first:  # no steps: the energies of the structures as given (the same compiled program)
            e0 = _round(potential, jstate, jnp.asarray(status), jnp.asarray(steps), jdata, n_steps=jnp.int32(0),
                        **static)[3]
            e0 = np.asarray(e0)
            for it in live:
                it.energy0 = float(e0[slot[id(it)]])
            first = False
        state, status_d, steps_d, energy, fu, W = _round(
            potential, jstate, jnp.asarray(status), jnp.asarray(steps), jdata, n_steps=jnp.int32(n_steps), **static)
        state = jax.tree.map(np.asarray, state)
        X, U = np.array(state.position["e"]), np.array(state.position["u"])
        PX, PU = np.array(state.momentum["e"]), np.array(state.momentum["u"])
        FX, FU = np.array(state.force["e"]), np.array(state.force["u"])
        dt, alpha, npos = np.array(state.dt), np.array(state.alpha), np.array(state.n_pos)
        status, steps = np.array(status_d), np.array(steps_d)
        energy, fu, W = np.asarray(energy), np.asarray(fu), np.asarray(W)
        for it in live:
            b = slot[id(it)]
            it.steps = int(steps[b])
            it.energy, it.fu, it.W = float(energy[b]), fu[b, :len(it.u)].copy(), W[b].copy()
            it.u, it.X = U[b, :len(it.u)].copy(), X[b].copy()
            if it.status != ACTIVE:
                continue
            if status[b] == NON_FINITE:
                it.status, it.reason = NON_FINITE, "non_finite"
                it.message = f"{it.name}: non-finite forces or positions after {it.steps} steps"
            elif status[b] == CONVERGED:
                it.status = CONVERGED
            elif status[b] == REBUILD:
                it.status = REBUILD
                if it.steps == it.steps_at_build:  # a fresh list admits no step: cannot happen with capped steps
                    it.status, it.reason = NON_FINITE, "non_finite"
                    it.message = f"{it.name}: no step possible with a fresh neighbour list (step {it.steps})"
                    status[b] = NON_FINITE
                elif not 0.25 < np.linalg.det(_expm_host(it.X / len(it.u))) < 4.0:  # the volume left its bounds
                    it.status, it.reason = NON_FINITE, "volume"
                    it.message = f"{it.name}: the cell volume changed by more than a factor 4"
                    status[b] = NON_FINITE
            elif it.steps >= it.max_steps:
                it.status = NON_FINITE  # stop; the final evaluation reports not_converged
                status[b] = NON_FINITE


# ------------------------------------------------------------------------------------------------------------------
# equilibrium phases


def equilibrium(potential, kinds, element: str, volume: float | None = None, c_over_a: float | None = None,
                fmax: float = 1e-5, smax: float = 1e-5, **kw) -> dict:
    """Fully relaxed (cell and positions) primitive cells of ``kinds`` (hcp, fcc, dhcp, bcc) of ``element``.

    Starts from ``volume`` Å³/atom (default: ASE's reference volume of the element) and ideal or given c/a.
    Returns {kind: RelaxResult}; a tight default stress tolerance (1e-5 GPa) since lattice parameters and elastic
    constants build on these cells. All four phases are always relaxed together (at no extra cost), so every caller
    shares one compiled shape.
    """
    kinds = list(kinds)
    todo = list(PHASES) + [k for k in kinds if k not in PHASES]
    volume = guess_volume(element) if volume is None else volume
    structures = [prototype(k, element, volume, c_over_a) for k in todo]
    res = dict(zip(todo, relax(potential, structures, cell="full", fmax=fmax, smax=smax, names=todo, **kw)))
    return {k: res[k] for k in kinds}


__all__ = ["CELL_MODES", "RelaxResult", "relax", "equilibrium"]
