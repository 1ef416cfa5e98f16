"""The host loop of the batched relaxation of a JAX potential: neighbour lists, padding, rounds, rebuilds.

Neighbour lists are built on the host (:func:`mtpjax.neighbors.pairs`: any cell, every periodic image) with
``cutoff + skin``, first for every structure (the widest sets the neighbour slots of the whole call, padded by
:func:`mtpjax.neighbors.bucket_size`). Structures are grouped by size (atoms padded to powers of two) and each group runs through
:func:`mtpjax.relax.fire.run_round`: up to ``steps_per_round`` FIRE steps, vmapped, in one jitted loop. The first
call takes no step: it gives the energies and forces of the structures as given, so that a structure already
converged takes none. Finished structures leave the batch between rounds; when the rest fill at most a quarter of a
large batch, it shrinks to the power of two above them (few shapes, so few compilations).

A structure whose next step would leave its list's validity bound (:func:`mtpjax.relax.fire.list_valid`, the one
bound) waits; after the round its list is rebuilt here at its current state (atoms wrapped into the cell; more
neighbour slots, a new compiled shape, when a list needs them), so forces never come from a stale list. Step caps
are set at every build so that a fresh list admits the next step (atoms ≤ min(maxstep, skin/4) / ‖F‖₂ Å in the
reference frame, log-strain ≤ min(0.01, skin / 12 (cutoff + skin)) per component); were a step still refused by a
fresh list, the caps of that structure are halved. Energy, forces and virial of each final state come from the last
evaluation with its valid list.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import minimize

from ..errors import StructureError
from ..evaluate import types_for_symbols
from ..neighbors import Neighbours, bucket_size, dense_neighbours, pairs, power_of_two
from ..units import EV_PER_A3_TO_GPA, stress_to_voigt
from . import fire
from .fire import ACTIVE, COLLAPSED, CONVERGED, FIRE, NON_FINITE, REBUILD, VOLUME
from .result import RelaxResult, cell_dofs, free_components, project

#: Host-only status: stopped without a reason of its own (max_steps reached, or failed on the host).
STOPPED = 7
#: Smallest padded size of a structure (atoms).
MIN_PAD = 4
#: Largest log-strain change per component and step.
MAX_STRAIN_STEP = 0.01
#: A batch of at least this many padded atoms shrinks when its unfinished structures fill at most a quarter of it.
SHRINK_ATOMS = 1024
#: Halvings of a structure's step caps before it fails with ``neighbour_list``.
MAX_SHRINK = 12


@dataclass
class _Item:
    """Host-side state of one structure during a relaxation."""

    k: int
    name: str
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
    max_steps: int
    pairs: tuple | None = None
    ub: np.ndarray | None = None
    Fb: np.ndarray | None = None
    umax: float = 0.0
    emax: float = 0.0
    shrink: int = 0
    n_builds: int = 0
    steps: int = 0
    steps_at_build: int = -1
    status: int = ACTIVE
    reason: str | None = None
    message: str = ""
    energy: float | None = None
    energy0: float = float("nan")
    fu: np.ndarray | None = None
    W: np.ndarray | None = None
    fire: dict | None = None  # FIRE's state between rounds: momenta, forces, dt, alpha, n_pos

    @property
    def n(self) -> int:
        return len(self.u)

    @property
    def F(self) -> np.ndarray:
        return expm_host(self.X / self.n)


def expm_host(A):
    """exp(A) of a symmetric 3x3 matrix (host)."""
    w, v = np.linalg.eigh(0.5 * (A + A.T))
    return (v * np.exp(w)) @ v.T


def relax_batched(potential, structures, names, cells, masks, fixes, max_steps, *, positions: bool, fmax: float,
                  smax: float, skin: float, maxstep: float, steps_per_round: int, min_distance: float,
                  max_volume_factor: float, species, max_batch_atoms: int, min_batch_atoms: int, progress=None) -> list:
    """:class:`RelaxResult` per structure, in input order (see :func:`mtpjax.relax.relax`; options per structure
    already expanded to lists)."""
    cutoff = float(potential.cutoff)
    radius = cutoff + float(skin)
    items, results = [], [None] * len(structures)
    for k, a in enumerate(structures):
        name = names[k]
        if not np.all(a.pbc):
            raise StructureError(f"{name}: relax needs a cell periodic in all directions (put slabs in a box with vacuum)")
        try:
            types = types_for_symbols(a.get_chemical_symbols(), species, potential.n_species, name)
        except StructureError as err:
            results[k] = RelaxResult(name=name, atoms=None, reason="unknown_element", message=str(err))
            if progress:
                progress(1)
            continue
        n = len(a)
        u0 = a.positions.copy()
        smask, hydro, constvol = cell_dofs(cells[k], masks[k])
        items.append(_Item(k, name, types, a.cell.array.copy(), u0, u0.copy(), np.zeros((n, 3), dtype=np.int64),
                           np.zeros((3, 3)), free_components(n, positions, fixes[k]), smask, hydro, constvol,
                           max_steps=int(max_steps[k])))
    prm = dict(min_batch_atoms=min_batch_atoms, fmax=float(fmax), smax=float(smax), maxstep=float(maxstep),
               skin=float(skin), steps_per_round=int(steps_per_round), min_distance=float(min_distance),
               vfac=float(max_volume_factor))
    built = []
    for it in items:
        if _build(it, radius, prm):
            built.append(it)
        else:
            it.status = STOPPED
            if progress:
                progress(1)
    # neighbour slots, shared by the groups of this call (fewer compiled shapes); widened when a list needs more
    width = [bucket_size(max((_slots(it) for it in built), default=0), minimum=4)]
    for g in _groups(built, max_batch_atoms, min_batch_atoms):
        _relax_group(potential, g, cutoff, radius, prm, progress, width)
    for it in items:
        results[it.k] = _result(it, structures[it.k], prm)
    return results


def _result(it: _Item, atoms, prm) -> RelaxResult:
    """The record of one finished structure, from the last evaluation of its final state."""
    F = it.F
    x = (it.u + it.image @ it.cell0) @ F  # unwrapped: the input's atoms moved continuously
    finite = bool(np.all(np.isfinite(x)) and np.all(np.isfinite(F)))
    out = None
    if finite:
        out = atoms.copy()
        out.calc = None
        out.set_cell(it.cell0 @ F, scale_atoms=False)
        out.positions = x
    disp = (it.u + it.image @ it.cell0 - it.u0) @ F
    res = RelaxResult(name=it.name, atoms=out, steps=it.steps, initial_energy=it.energy0, n_builds=it.n_builds,
                      reason=it.reason, message=it.message,
                      max_displacement=float(np.sqrt((disp**2).sum(1).max())) if len(disp) and finite else np.nan)
    if it.energy is None or not finite:
        return res
    V = abs(np.linalg.det(it.cell0 @ F))
    forces = it.fu @ np.linalg.inv(F).T
    res.energy, res.forces = float(it.energy), forces
    W = 0.5 * (it.W + it.W.T)
    res.stress = -stress_to_voigt(W) / V
    if not (np.isfinite(res.energy) and np.all(np.isfinite(forces)) and np.all(np.isfinite(W))):
        res.reason = res.reason or "non_finite"
        res.message = res.message or f"{it.name}: non-finite energy, forces or stress"
        return res
    f = forces * it.free
    res.fmax = float(np.sqrt((f**2).sum(1).max())) if len(f) else 0.0
    res.smax = float(np.abs(project(W, it.smask, it.hydro, it.constvol)).max() / V * EV_PER_A3_TO_GPA)
    res.converged = res.reason is None and (it.status == CONVERGED or bool(res.fmax <= prm["fmax"] and res.smax <= prm["smax"]))
    if res.reason is None and not res.converged and it.max_steps > 0:
        res.reason = "not_converged"
        res.message = f"{it.name}: fmax {res.fmax:.3g} eV/Å, smax {res.smax:.3g} GPa after {it.steps} steps"
    return res


def _build(it: _Item, radius: float, prm) -> bool:
    """Wrap u into the cell and rebuild the neighbour list at the current (u, F); set the step caps. False (and a
    reason) when atoms collapsed."""
    F = it.F
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
        if d.min() < prm["min_distance"]:
            k = int(d.argmin())
            it.reason, it.message = "collapsed", f"{it.name}: atoms {int(i[k])} and {int(j[k])} at {d[k]:.3f} Å"
            return False
    it.pairs, it.ub, it.Fb = (i, j, s), it.u.copy(), F
    skin = prm["skin"]
    shrink = 0.5**it.shrink
    it.umax = min(prm["maxstep"], 0.25 * skin) / max(1.0, float(np.linalg.norm(F, 2))) * shrink
    it.emax = min(MAX_STRAIN_STEP, skin / (12.0 * radius)) * shrink
    it.n_builds += 1
    it.steps_at_build = it.steps
    return True


def _groups(items, max_batch_atoms: int, min_batch_atoms: int) -> list:
    """Structures grouped by padded size (powers of two), at most ``max_batch_atoms`` padded atoms a group; a group
    of fewer than ``min_batch_atoms`` real atoms joins the next larger size when that is at most 4 times larger (one
    compiled shape fewer for a little padding)."""
    order = sorted(items, key=lambda it: it.n)
    by_size: dict = {}
    for it in order:
        by_size.setdefault(power_of_two(it.n, MIN_PAD), []).append(it)
    sizes = sorted(by_size)
    merged, carry = [], []
    for k, n_pad in enumerate(sizes):
        cur = carry + by_size[n_pad]
        if k + 1 < len(sizes) and sizes[k + 1] <= 4 * n_pad and sum(it.n for it in cur) < min_batch_atoms:
            carry = cur
            continue
        merged.append((n_pad, cur))
        carry = []
    groups = []
    for n_pad, its in merged:
        per = max(1, max_batch_atoms // n_pad)
        groups += [its[i:i + per] for i in range(0, len(its), per)]
    return groups


def _relax_group(potential, group, cutoff, radius, prm, progress, width):
    """Relax one group of structures of one padded size: rounds of :func:`mtpjax.relax.fire.run_round` over the
    structures not yet finished. The batch holds only those: when they fill at most a quarter of it, it shrinks to the
    power of two above them (a new compiled shape, but no work spent on finished structures). ``width``: [neighbour
    slots] of the whole call, widened here when a list needs more."""
    n_pad = power_of_two(max(it.n for it in group), MIN_PAD)
    floor = power_of_two(max(1, prm["min_batch_atoms"] // n_pad))
    B = bucket_size(max(len(group), floor))

    def finish(it, status, reason=None, message=""):
        it.status = status
        if reason is not None and it.reason is None:
            it.reason, it.message = reason, message
        if progress:
            progress(1)

    members = list(group)
    for it in members:
        it.fire = _fire_state(it)
    first = True
    while members:
        for it in members:  # lists asked for in the last round
            if it.status != REBUILD:
                continue
            if it.steps == it.steps_at_build:  # a fresh list refused the step: smaller steps
                it.shrink += 1
                it.umax, it.emax = 0.5 * it.umax, 0.5 * it.emax
                if it.shrink > MAX_SHRINK:
                    finish(it, STOPPED, "neighbour_list", f"{it.name}: no FIRE step fits in a fresh neighbour list "
                           f"(skin {prm['skin']} Å) after {it.steps} steps")
                    continue
            elif not _build(it, radius, prm):
                finish(it, STOPPED)
                continue
            it.status = ACTIVE
        members = [it for it in members if it.status == ACTIVE]
        if not members:
            break
        if len(members) <= B // 2 and B * n_pad >= SHRINK_ATOMS:  # a new shape pays off for large batches only
            B = max(floor, power_of_two(len(members)))
        need = max(_slots(it) for it in members)
        if need > width[0]:  # overflow of the padded neighbour slots: widen (a new compiled shape)
            width[0] = bucket_size(need, minimum=4)
        data = _pack(members, B, n_pad, width[0], prm)
        state, status, steps = _pack_state(members, B, n_pad)
        n_steps = 0 if first else int(min(prm["steps_per_round"], max(it.max_steps - it.steps for it in members)))
        state, status, steps, energy, fu, W = fire.run_round(
            potential, jax.tree.map(jnp.asarray, state), jnp.asarray(status), jnp.asarray(steps),
            jax.tree.map(jnp.asarray, data), n_steps=jnp.int32(n_steps), cutoff=cutoff, radius=radius)
        state = jax.tree.map(np.asarray, state)
        status, steps, energy, fu, W = (np.asarray(x) for x in (status, steps, energy, fu, W))
        for b, it in enumerate(members):
            n = it.n
            it.steps = int(steps[b])
            it.energy, it.fu, it.W = float(energy[b]), fu[b, :n].copy(), W[b].copy()
            it.u, it.X = state.position["u"][b, :n].copy(), state.position["e"][b].copy()
            # FIRE's forces: those of the final evaluation (for accepted states the same numbers)
            it.fire = dict(pu=state.momentum["u"][b, :n].copy(), pe=state.momentum["e"][b].copy(),
                           fu=it.fu * it.free, fe=project(it.W, it.smask, it.hydro, it.constvol) / n,
                           dt=float(state.dt[b]), alpha=float(state.alpha[b]), npos=int(state.n_pos[b]))
            s = int(status[b])
            if first:  # the structure as given: finite? converged already?
                it.energy0 = it.energy
                s = _initial_status(it, prm)
            if s == NON_FINITE:
                finish(it, s, "non_finite", f"{it.name}: non-finite energy, forces or positions after {it.steps} steps")
            elif s == COLLAPSED:
                finish(it, s, "collapsed", f"{it.name}: atoms closer than {prm['min_distance']:.3g} Å after {it.steps} steps")
            elif s == VOLUME:
                finish(it, s, "volume", f"{it.name}: V/V_start left [1/{prm['vfac']:g}, {prm['vfac']:g}] after "
                       f"{it.steps} steps")
            elif s == CONVERGED:
                finish(it, s)
            elif s == REBUILD:
                it.status = REBUILD
            elif it.steps >= it.max_steps:  # stop; the final evaluation tells whether it converged
                finish(it, STOPPED)
        members = [it for it in members if it.status in (ACTIVE, REBUILD)]
        first = False


def _slots(it: _Item) -> int:
    """Neighbour slots a structure's list needs (its largest number of neighbours)."""
    return int(np.bincount(it.pairs[0], minlength=it.n).max()) if len(it.pairs[0]) else 0


def _fire_state(it: _Item) -> dict:
    """A structure's FIRE state at rest (momenta zero, FIRE's initial dt and alpha; forces set by the first call)."""
    return dict(pu=np.zeros((it.n, 3)), pe=np.zeros((3, 3)), fu=np.zeros((it.n, 3)), fe=np.zeros((3, 3)),
                dt=FIRE["dt_start"], alpha=FIRE["alpha_start"], npos=0)


def _pack_state(members, B, n_pad):
    """(FIRE state, status, steps) of a batch of B slots: the members first, padding slots never active."""
    U, PU, FU = np.zeros((B, n_pad, 3)), np.zeros((B, n_pad, 3)), np.zeros((B, n_pad, 3))
    X, PX, FX = np.zeros((B, 3, 3)), np.zeros((B, 3, 3)), np.zeros((B, 3, 3))
    dt, alpha, npos = np.full(B, FIRE["dt_start"]), np.full(B, FIRE["alpha_start"]), np.zeros(B, np.int32)
    status, steps = np.full(B, CONVERGED, np.int32), np.zeros(B, np.int32)
    for b, it in enumerate(members):
        n, f = it.n, it.fire
        U[b, :n], X[b], PU[b, :n], PX[b], FU[b, :n], FX[b] = it.u, it.X, f["pu"], f["pe"], f["fu"], f["fe"]
        dt[b], alpha[b], npos[b], status[b], steps[b] = f["dt"], f["alpha"], f["npos"], ACTIVE, it.steps
    state = minimize.FireDescentState(position={"e": X, "u": U}, momentum={"e": PX, "u": PU}, force={"e": FX, "u": FU},
                                      mass={"e": np.ones(B), "u": np.ones(B)}, dt=dt, alpha=alpha, n_pos=npos)
    return state, status, steps


def _initial_status(it: _Item, prm) -> int:
    """ACTIVE, CONVERGED or NON_FINITE for a structure as given, from FIRE's forces on it."""
    fu, fx = it.fire["fu"], it.fire["fe"]
    if not (np.isfinite(it.energy) and np.all(np.isfinite(fu)) and np.all(np.isfinite(fx))):
        return NON_FINITE
    F = it.F
    f = fu @ np.linalg.inv(F).T
    fm = float(np.sqrt((f**2).sum(1).max())) if it.n else 0.0
    V = abs(np.linalg.det(it.cell0 @ F))
    sm = float(np.abs(fx * it.n).max() / V * EV_PER_A3_TO_GPA)
    return CONVERGED if fm <= prm["fmax"] and sm <= prm["smax"] else ACTIVE


def _pack(members, B, n_pad, n_nb, prm) -> dict:
    """The traced data of one round: padded neighbour lists, cells, masks, tolerances, caps and bounds."""
    idx, shf = np.zeros((B, n_pad, n_nb), np.int32), np.zeros((B, n_pad, n_nb, 3))
    msk = np.zeros((B, n_pad, n_nb), bool)
    types = np.full((B, n_pad), -1, np.int64)
    cell0, ub, Fb = np.tile(np.eye(3) * 10.0, (B, 1, 1)), np.zeros((B, n_pad, 3)), np.tile(np.eye(3), (B, 1, 1))
    free, smask = np.zeros((B, n_pad, 3)), np.zeros((B, 3, 3))
    hydro, constvol, cf, V0 = np.zeros(B), np.zeros(B), np.ones(B), np.full(B, 1000.0)
    umax, emax = np.full(B, 0.1), np.full(B, 0.01)
    max_steps = np.zeros(B, np.int32)
    for b, it in enumerate(members):
        n = it.n
        nb = dense_neighbours(*it.pairs, n, n_atoms_pad=n_pad, n_nb=n_nb)
        idx[b], shf[b], msk[b] = nb.index, nb.shift, nb.mask
        ub[b, :n], Fb[b] = it.ub, it.Fb
        types[b, :n], cell0[b] = it.types, it.cell0
        free[b, :n], smask[b] = it.free, it.smask
        hydro[b], constvol[b], cf[b], V0[b] = it.hydro, it.constvol, n, abs(np.linalg.det(it.cell0))
        umax[b], emax[b], max_steps[b] = it.umax, it.emax, it.max_steps
    return dict(cell0=cell0, types=types, nbrs=Neighbours(idx, shf, msk), free=free, smask=smask, hydro=hydro,
                constvol=constvol, cf=cf, V0=V0, ub=ub, Fb=Fb, ftol=np.full(B, prm["fmax"]), stol=np.full(B, prm["smax"]),
                max_steps=max_steps, umax=umax, emax=emax, vfac=np.full(B, prm["vfac"]),
                dmin=np.full(B, prm["min_distance"]))
