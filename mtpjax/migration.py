"""Vacancy migration barriers for any JAX potential (an MTP, the EAM oracles, Lennard-Jones): MTP against oracle.

- Structures: :func:`relaxed_bulk` (the potential's own lattice, cell relaxed), :func:`vacancy_hop` (a supercell
  with one atom removed, and the final state with a nearest neighbour moved into the vacancy; for hcp the
  ``"basal"`` (in-plane) or ``"nonbasal"`` (out-of-plane) neighbour), end points relaxed at fixed cell by
  :func:`relax_positions`.
- Barriers: :func:`neb_barrier` (ASE's climbing-image NEB, one calculator per image) and :func:`string_barrier`
  (the simplified string method of E, Ren & Vanden-Eijnden 2007, written in JAX on the potential protocol: all
  images in one vmapped, jitted step; equal-arc-length reparametrisation every step; optional climbing image).
- :func:`barriers`: both methods for a potential and an oracle with the same code.
- Hop rates from direct MD: :func:`hop_rates` (Nosé–Hoover NVT through :func:`mtpjax.md.run_md`, hops counted by
  the pure detector :func:`vacancy_sites` + :func:`detect_hops`) and :func:`arrhenius_fit` (weighted least squares
  of ln rate on 1/kT with Poisson errors).

Relaxations (end points, the bulk lattice) go through :func:`mtpjax.relax.relax`, the project's one relaxation module.

Units: eV, Å, eV/Å, K, fs; rates in 1/s. Every function that takes a ``potential`` also takes a zero-argument callable returning an
ASE calculator (e.g. ``lambda: ase.calculators.eam.EAM(potential=path)``) where only ASE is involved
(:func:`relaxed_bulk`, :func:`relax_positions`, :func:`neb_barrier`): the independent reference route.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import ase.units
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms
from ase.build import bulk

from .errors import MtpjaxError
from .md.energy import NeighbourFns, capacity_for, guarded, potential_types
from .potential import Potential, energy

#: Default force tolerance (eV/Å) of end points and paths.
FMAX = 1e-3
#: The hcp hops.
HCP_HOPS = ("basal", "nonbasal")


class MigrationError(MtpjaxError):
    """A relaxation, NEB or string did not converge, or a hop was asked of the wrong lattice."""


def calculator_for(potential):
    """A fresh ASE calculator: :class:`mtpjax.calculator.PotentialCalculator` for a JAX potential (calculators share
    compiled programs), or ``potential()`` when it is a zero-argument calculator factory."""
    if isinstance(potential, Potential):
        from .calculator import PotentialCalculator

        return PotentialCalculator(potential)
    if callable(potential):
        return potential()
    raise MigrationError(f"expected a JAX potential or a calculator factory, got {type(potential).__name__}")


def _relaxer(potential):
    """What :func:`mtpjax.relax.relax` takes: the JAX potential itself, or the calculator a factory returns."""
    if isinstance(potential, Potential):
        return potential
    if callable(potential):
        return potential()
    raise MigrationError(f"expected a JAX potential or a calculator factory, got {type(potential).__name__}")


def _relaxed(potential, atoms: Atoms, what: str, **kw):
    """The one :class:`mtpjax.relax.RelaxResult` of ``atoms`` (:func:`mtpjax.relax.relax`); MigrationError unless it
    converged."""
    from .relax import relax

    (res,) = relax(_relaxer(potential), [atoms], **kw)
    if not (res.ok and res.converged):
        raise MigrationError(f"{what} not relaxed ({res.reason}): {res.message}")
    return res


def relax_positions(potential, atoms: Atoms, fmax: float = FMAX, max_steps: int = 5000) -> Atoms:
    """A copy of ``atoms`` with its positions relaxed at fixed cell until every force is below ``fmax`` (eV/Å),
    ``info["energy"]`` its energy (eV).

    :func:`mtpjax.relax.relax` with ``cell="fixed"`` (batched FIRE on jax-md for a JAX potential; ASE's FIRE for the
    calculator of a factory): the one place here that relaxes positions. Raises :class:`MigrationError` when it does
    not converge in ``max_steps`` FIRE steps.
    """
    res = _relaxed(potential, atoms, f"end point ({len(atoms)} atoms)", cell="fixed", fmax=fmax, max_steps=max_steps)
    out = res.atoms.copy()
    out.info["energy"] = float(res.energy)
    return out


def relaxed_bulk(potential, element: str, structure: str, a: float, c: float | None = None, fmax: float = 1e-5,
                 smax: float = 1e-5) -> Atoms:
    """The primitive ``structure`` ("hcp", "fcc", "bcc") cell of ``element`` (ASE's ``bulk``) with cell and positions
    relaxed by :func:`mtpjax.relax.relax` (``cell="full"``: forces below ``fmax`` eV/Å, stress below ``smax`` GPa);
    ``a``, ``c`` (Å) the start. ``info["energy_per_atom"]`` in eV."""
    unit = bulk(element, structure, a=a, c=c) if structure == "hcp" else bulk(element, structure, a=a)
    res = _relaxed(potential, unit, f"{structure} {element} cell", cell="full", fmax=fmax, smax=smax, max_steps=2000)
    out = res.atoms.copy()
    out.info["energy_per_atom"] = float(res.energy) / len(out)
    return out


def lattice_parameters(unit: Atoms, structure: str) -> tuple[float, float | None]:
    """(a, c) in Å of a primitive hcp cell, or (cubic a, None) of a primitive fcc/bcc cell."""
    lengths = unit.cell.lengths()
    if structure == "hcp":
        return float(lengths[0]), float(lengths[2])
    factor = {"fcc": np.sqrt(2.0), "bcc": 2.0 / np.sqrt(3.0)}[structure]
    return float(lengths[0] * factor), None


def supercell(element: str, structure: str, a: float, c: float | None, size) -> Atoms:
    """A perfect supercell: hcp from the primitive (orthogonal c) cell, fcc/bcc from the conventional cube, repeated
    ``size`` (int or 3 ints)."""
    size = tuple(np.broadcast_to(np.asarray(size, int), (3,)))
    unit = bulk(element, "hcp", a=a, c=c) if structure == "hcp" else bulk(element, structure, a=a, cubic=True)
    return unit.repeat(size)


def nearest_neighbour(perfect: Atoms, site: int, hop: str | None = None, tol: float = 0.05) -> int:
    """Index of a nearest neighbour of ``site``: any one (fcc), or for hcp the ``"basal"`` (same basal plane) or
    ``"nonbasal"`` (adjacent plane) one. Distances by minimum image; ``tol`` in Å."""
    d = perfect.get_distances(site, range(len(perfect)), mic=True, vector=True)
    r = np.linalg.norm(d, axis=1)
    r[site] = np.inf
    if hop is None:
        return int(np.argmin(r))
    if hop not in HCP_HOPS:
        raise MigrationError(f"hop must be one of {HCP_HOPS} or None, got {hop!r}")
    cdir = perfect.cell.array[2] / np.linalg.norm(perfect.cell.array[2])
    dz = np.abs(d @ cdir)
    in_plane = dz < tol
    candidates = np.where(in_plane if hop == "basal" else ~in_plane, r, np.inf)
    j = int(np.argmin(candidates))
    if not np.isfinite(candidates[j]) or candidates[j] > r.min() * 1.1:
        raise MigrationError(f"no {hop} nearest neighbour of site {site}")
    return j


def vacancy_hop(perfect: Atoms, site: int = 0, hop: str | None = None) -> tuple[Atoms, Atoms, int]:
    """(initial, final, moving index) of a vacancy hop, unrelaxed: ``site`` removed; in the final state its
    nearest neighbour (see :func:`nearest_neighbour`) sits on the vacant site (its minimum-image position, so that
    the two states are one continuous path with the same atom order)."""
    j = nearest_neighbour(perfect, site, hop)
    d = perfect.get_distances(j, [site], mic=True, vector=True)[0]
    initial = perfect.copy()
    del initial[site]
    k = j - (j > site)
    final = initial.copy()
    pos = final.positions
    pos[k] = perfect.positions[j] + d
    final.positions = pos
    return initial, final, k


def relaxed_hop(potential, perfect: Atoms, site: int = 0, hop: str | None = None, fmax: float = FMAX):
    """:func:`vacancy_hop` with both end points relaxed at fixed cell (:func:`relax_positions`)."""
    initial, final, k = vacancy_hop(perfect, site, hop)
    return relax_positions(potential, initial, fmax), relax_positions(potential, final, fmax), k


@dataclass
class PathResult:
    """A minimum-energy path: ``energies`` (M,) eV of the images, ``positions`` (M, N, 3) Å, ``barrier`` (eV):
    the highest image less the initial state; ``reverse_barrier``: less the final state; ``steps``; ``fmax``: the
    largest residual force (eV/Å) at the end; ``method``."""

    energies: np.ndarray
    positions: np.ndarray
    barrier: float
    reverse_barrier: float
    steps: int
    fmax: float
    method: str
    info: dict = field(default_factory=dict)

    def arc_length(self) -> np.ndarray:
        """Cumulative path length (Å) of the images in configuration space."""
        d = np.linalg.norm(np.diff(self.positions, axis=0).reshape(len(self.positions) - 1, -1), axis=1)
        return np.concatenate([[0.0], np.cumsum(d)])


def _path_result(energies, positions, steps, fmax, method, **info) -> PathResult:
    e = np.asarray(energies, float)
    return PathResult(e, np.asarray(positions), float(e.max() - e[0]), float(e.max() - e[-1]), int(steps), float(fmax),
                      method, dict(info))


def neb_barrier(potential, initial: Atoms, final: Atoms, n_images: int = 7, fmax: float = FMAX, climb: bool = True,
                max_steps: int = 3000, interpolation: str = "linear") -> PathResult:
    """Climbing-image NEB (ASE's ``ase.mep.NEB``, ``climb``) between relaxed end points, with ``n_images``
    intermediate images, each its own calculator (:func:`calculator_for`), optimised by ASE's FIRE to ``fmax``
    (eV/Å). ``interpolation``: ``"linear"`` or ``"idpp"``."""
    from ase.mep import NEB
    from ase.optimize import FIRE

    images = [initial.copy()] + [initial.copy() for _ in range(n_images)] + [final.copy()]
    for im in images:
        im.calc = calculator_for(potential)
    neb = NEB(images, climb=climb, method="improvedtangent")
    neb.interpolate(method=interpolation, mic=False)
    opt = FIRE(neb, logfile=None)
    if not opt.run(fmax=fmax, steps=max_steps):
        raise MigrationError(f"NEB not converged to fmax {fmax} eV/Å in {max_steps} steps")
    energies = [im.get_potential_energy() for im in images]
    return _path_result(energies, [im.positions.copy() for im in images], opt.nsteps, fmax, "ase-ci-neb" if climb else "ase-neb")


# ----------------------------------------------------------------------------------------------------------- string


def linear_path(initial: Atoms, final: Atoms, n_images: int) -> np.ndarray:
    """Positions (n_images + 2, N, 3) Å on the straight line between the end points."""
    t = np.linspace(0.0, 1.0, n_images + 2)[:, None, None]
    return (1.0 - t) * initial.positions[None] + t * final.positions[None]


def reparametrise(X, climber):
    """Images X (M, N, 3) moved along the piecewise-linear path through them to equal arc length, separately on
    either side of image ``climber`` (an int array; < 0: none), which stays. End points stay."""
    m = X.shape[0]
    flat = X.reshape(m, -1)
    seg = jnp.linalg.norm(jnp.diff(flat, axis=0), axis=1)
    s = jnp.concatenate([jnp.zeros(1, X.dtype), jnp.cumsum(seg)])
    k = jnp.arange(m, dtype=X.dtype)
    c = climber.astype(X.dtype)
    uniform = s[-1] * k / (m - 1)
    sc = s[jnp.clip(climber, 0, m - 1)]
    left = sc * k / jnp.maximum(c, 1.0)
    right = sc + (s[-1] - sc) * (k - c) / jnp.maximum(m - 1 - c, 1.0)
    target = jnp.where(climber < 0, uniform, jnp.where(k <= c, left, right))
    idx = jnp.clip(jnp.searchsorted(s, target, side="right") - 1, 0, m - 2)
    w = jnp.clip((target - s[idx]) / jnp.maximum(seg[idx], 1e-300), 0.0, 1.0)
    new = flat[idx] + w[:, None] * (flat[idx + 1] - flat[idx])
    new = new.at[0].set(flat[0]).at[-1].set(flat[-1])
    return new.reshape(X.shape)


def tangents(X, energies):
    """Unit tangents (M, N, 3) of the images: Henkelman & Jónsson's upwind tangent (energy-weighted at extrema);
    end points get their one-sided differences."""
    fwd = jnp.concatenate([X[1:] - X[:-1], (X[-1] - X[-2])[None]])
    bwd = jnp.concatenate([(X[1] - X[0])[None], X[1:] - X[:-1]])
    e_next = jnp.concatenate([energies[1:], energies[-1:]])
    e_prev = jnp.concatenate([energies[:1], energies[:-1]])
    dmax = jnp.maximum(jnp.abs(e_next - energies), jnp.abs(e_prev - energies))[:, None, None]
    dmin = jnp.minimum(jnp.abs(e_next - energies), jnp.abs(e_prev - energies))[:, None, None]
    up = (e_next > energies) & (energies > e_prev)
    down = (e_next < energies) & (energies < e_prev)
    mixed = jnp.where((e_next > e_prev)[:, None, None], fwd * dmax + bwd * dmin, fwd * dmin + bwd * dmax)
    t = jnp.where(up[:, None, None], fwd, jnp.where(down[:, None, None], bwd, mixed))
    norm = jnp.sqrt(jnp.sum(t * t, axis=(1, 2), keepdims=True))
    return t / jnp.maximum(norm, 1e-300)


def _dot(a, b):
    return jnp.sum(a * b, axis=(-2, -1))


def string_step(X, nbrs, climber, dt, max_move, value_and_grad):
    """One step of the simplified string method: every interior image moves by dt·F (F the force, eV/Å; dt in
    Å²/eV), the climbing image by dt·(F − 2(F·τ)τ), each image's largest atomic move capped at ``max_move`` Å;
    the lists are updated (rebuilt on the host when an image may have left its skin); then
    :func:`reparametrise`. Returns (X, nbrs, energies before the step, residual in eV/Å per image: its largest
    atomic move in the step (reparametrisation included) over dt, i.e. the climbing force of the climber and the
    string's rate of change elsewhere; 0 at the end points). (Not |F⊥|: the simplified string's discrete fixed
    point keeps a perpendicular force of the order of the image spacing where the path is curved; the barrier is
    the climber's.)"""
    m = X.shape[0]
    nbrs = jax.vmap(lambda x, nb: nb.update(x))(X, nbrs)
    e, g = jax.vmap(value_and_grad)(X, nbrs)
    f = -g
    tau = tangents(X, e)
    ftau = _dot(f, tau)[:, None, None]
    is_climber = (jnp.arange(m) == climber)[:, None, None]
    interior = ((jnp.arange(m) > 0) & (jnp.arange(m) < m - 1))[:, None, None]
    move = jnp.where(is_climber, f - 2.0 * ftau * tau, f) * interior
    dx = dt * move
    biggest = jnp.sqrt(jnp.max(jnp.sum(dx * dx, axis=-1), axis=-1))[:, None, None]
    dx = dx * jnp.minimum(1.0, max_move / jnp.maximum(biggest, 1e-300))
    new = reparametrise(X + dx, climber)
    step = new - X
    res = jnp.sqrt(jnp.max(jnp.sum(step * step, axis=-1), axis=-1)) / dt
    return new, nbrs, e, res


def largest_curvature(value_and_grad, x, nbrs, iterations: int = 30, seed: int = 0) -> float:
    """The largest eigenvalue (eV/Å²) of the Hessian at positions ``x`` by power iteration on Hessian-vector
    products (forward over reverse autodiff)."""
    grad = lambda y: value_and_grad(y, nbrs)[1]  # noqa: E731
    hvp = jax.jit(lambda v: jax.jvp(grad, (x,), (v,))[1])
    v = jax.random.normal(jax.random.PRNGKey(seed), x.shape, x.dtype)
    lam = 0.0
    for _ in range(iterations):
        v = v / jnp.linalg.norm(v)
        w = hvp(v)
        lam = float(jnp.vdot(v, w))
        v = w
    return abs(lam)


def _allocate(fns: NeighbourFns, X, cell, extra: int = 0):
    """One list per image in a common capacity, stacked on a leading axis."""
    fresh = [fns.allocate(x, cell=cell) for x in X]
    k = capacity_for(max(int(f.max_count) for f in fresh), fns.capacity_multiplier) + extra
    kc = capacity_for(max(int(f.max_candidate_count) for f in fresh), fns.capacity_multiplier) + extra
    lists = [fns.allocate(x, cell=cell, capacity=k, candidate_capacity=kc) for x in X]
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *lists)


@lru_cache(maxsize=None)
def neighbour_fns(cutoff: float, skin: float) -> NeighbourFns:
    """One :class:`mtpjax.md.NeighbourFns` per (cutoff, skin) (Å), so that compiled string loops are shared
    between calls."""
    return NeighbourFns(cutoff, skin)


def image_energy(potential, types, cell):
    """E(x, nbrs) in eV of one image (NaN where its list may miss a pair: :func:`mtpjax.md.energy.guarded`)."""
    return lambda x, nb: guarded(energy(potential, x, cell, types, nb.neighbours), x, cell, nb)


@eqx.filter_jit
def string_chunk(potential, types, cell, X, nbrs, climber, dt, max_move, chunk: int):
    """``chunk`` string steps (:func:`string_step`) under one compiled loop: (X, nbrs, last energies (M,) eV,
    largest last residual eV/Å)."""
    vg = jax.value_and_grad(image_energy(potential, types, cell))

    def body(carry, _):
        X, nbrs = carry
        X, nbrs, e, res = string_step(X, nbrs, climber, dt, max_move, vg)
        return (X, nbrs), (e, res)

    (X, nbrs), (e, res) = jax.lax.scan(body, (X, nbrs), None, length=chunk)
    return X, nbrs, e[-1], jnp.max(res[-1])


@eqx.filter_jit
def path_energies(potential, types, cell, X, nbrs):
    """Energies (M,) in eV of the images X (M, N, 3) Å, lists updated first."""
    nbrs = jax.vmap(lambda x, nb: nb.update(x))(X, nbrs)
    return jax.vmap(image_energy(potential, types, cell))(X, nbrs)


def string_barrier(potential, initial: Atoms, final: Atoms, n_images: int = 7, fmax: float = FMAX, climb: bool = True,
                   dt: float | None = None, max_move: float = 0.05, max_steps: int = 20000, chunk: int = 100,
                   skin: float = 0.5, climb_after: float = 0.05, path=None, log=None) -> PathResult:
    """Minimum-energy path and barrier (eV) by the simplified string method on a JAX potential.

    ``n_images`` intermediate images between relaxed end points (fixed) start on the straight line (or at
    ``path`` (M, N, 3)); each step is :func:`string_step` (all images at once: vmap under jit, ``chunk`` steps per
    compiled loop, :func:`string_chunk`). ``dt`` (Å²/eV) defaults to 1/λ_max, the Hessian's largest curvature at
    the initial state (:func:`largest_curvature`): a stable steepest-descent step. With ``climb``, once the
    string's residual force is below ``climb_after`` eV/Å the highest interior image climbs (E & Vanden-Eijnden's
    climbing string; the two sides are reparametrised separately). Converged when every image's residual is below
    ``fmax`` (eV/Å). Neighbour lists: :mod:`mtpjax.md`'s multi-image Verlet list at cutoff + ``skin``, one per
    image, refiltered from its candidate list (rebuilt on the host when needed)
    when an image may have left it; overflow re-allocates with more
    room and reruns the chunk. ``log(steps, residual, energies)`` is called after each chunk when given.
    """
    if not isinstance(potential, Potential):
        raise MigrationError("string_barrier needs a JAX potential (the mtpjax potential protocol)")
    types = jnp.asarray(potential_types(potential, initial), jnp.int32)
    fns = neighbour_fns(float(potential.cutoff), float(skin))
    cell = jnp.asarray(initial.cell.array)
    X = jnp.asarray(linear_path(initial, final, n_images) if path is None else path)
    nbrs = _allocate(fns, np.asarray(X), initial.cell.array)
    if dt is None:
        one = jax.tree_util.tree_map(lambda a: a[0], nbrs)
        dt = 1.0 / largest_curvature(jax.value_and_grad(image_energy(potential, types, cell)), X[0], one)
    dt_, move_ = jnp.asarray(float(dt)), jnp.asarray(float(max_move))
    climber = jnp.asarray(-1)
    steps, res, history = 0, np.inf, []
    while steps < max_steps:
        X_new, nbrs_new, e, res = string_chunk(potential, types, cell, X, nbrs, climber, dt_, move_, chunk)
        if bool(jnp.any(nbrs_new.overflow)):
            nbrs = _allocate(fns, np.asarray(X), initial.cell.array, extra=8)
            continue
        if not np.all(np.isfinite(np.asarray(e))):
            raise MigrationError("the string's energies became NaN (a list failed or atoms overlapped)")
        X, nbrs, res = X_new, nbrs_new, float(res)
        steps += chunk
        history.append(res)
        if log is not None:
            log(steps, res, np.asarray(e))
        if climb and int(climber) < 0 and res < climb_after:
            climber = jnp.asarray(int(np.argmax(np.asarray(e)[1:-1])) + 1)
            continue
        if res < fmax and (not climb or int(climber) >= 0):
            break
    else:
        raise MigrationError(f"string not converged to {fmax} eV/Å in {max_steps} steps (residual {res:.3g} eV/Å)")
    e = np.asarray(path_energies(potential, types, cell, X, nbrs))
    return _path_result(e, np.asarray(X), steps, res, "jax-string" + ("-climb" if climb else ""), dt=float(dt),
                        climber=int(climber), history=history)


# --------------------------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class HopCase:
    """A vacancy hop: ``structure`` ("hcp", "fcc"), ``hop`` (hcp: "basal"/"nonbasal"; None for fcc), supercell
    ``size``, ``element``, and the lattice start ``a``, ``c`` (Å) for the cell relaxation (None: use ``a``, ``c``
    as they are, no relaxation)."""

    name: str
    structure: str
    element: str
    size: tuple
    a: float
    c: float | None = None
    hop: str | None = None
    relax_lattice: bool = True


def hop_end_points(potential, case: HopCase, fmax: float = FMAX):
    """(initial, final, moving index, (a, c)) of ``case`` for ``potential``: its own relaxed lattice, end points
    relaxed at fixed cell."""
    a, c = case.a, case.c
    if case.relax_lattice:
        unit = relaxed_bulk(potential, case.element, case.structure, a, c)
        a, c = lattice_parameters(unit, case.structure)
    perfect = supercell(case.element, case.structure, a, c, case.size)
    initial, final, k = relaxed_hop(potential, perfect, 0, case.hop, fmax)
    return initial, final, k, (a, c)


def barriers(potential, oracle, cases, *, n_images: int = 7, fmax: float = FMAX, methods=("neb", "string")) -> list[dict]:
    """Rows {case, model ("potential"/"oracle"), method, barrier_eV, reverse_eV, a, c, n_atoms, steps} for each
    case, with the same code for ``potential`` and ``oracle`` (either may be None to skip it)."""
    rows = []
    for case in cases:
        for label, pot in (("potential", potential), ("oracle", oracle)):
            if pot is None:
                continue
            initial, final, _, (a, c) = hop_end_points(pot, case, fmax)
            for method in methods:
                fn = neb_barrier if method == "neb" else string_barrier
                r = fn(pot, initial, final, n_images=n_images, fmax=fmax)
                rows.append({"case": case.name, "model": label, "method": r.method, "barrier_eV": r.barrier,
                             "reverse_eV": r.reverse_barrier, "a": a, "c": c, "n_atoms": len(initial), "steps": r.steps,
                             "path": r})
    return rows


# ------------------------------------------------------------------------------------------------------ hop rates

#: Boltzmann's constant in eV/K (ASE's, as mtpjax.md's thermostats).
KB_EV = ase.units.kB


def site_fractions(perfect: Atoms) -> np.ndarray:
    """Fractional coordinates (M, 3) of the perfect lattice's sites (``perfect``: the supercell before the vacancy)."""
    return np.asarray(perfect.cell.scaled_positions(perfect.positions), np.float64)


@jax.jit
def _vacancy_frames(positions, cells, sites):
    def one(args):
        R, cell = args
        s = R @ jnp.linalg.inv(cell)
        d = s[:, None, :] - sites[None, :, :]
        d = d - jnp.round(d)  # the nearest site's minimum image (it lies well inside half a cell width)
        r = jnp.einsum("nmi,ij->nmj", d, cell)
        nearest = jnp.argmin(jnp.sum(r * r, axis=-1), axis=1)
        empty = jnp.zeros(sites.shape[0], jnp.int32).at[nearest].add(1) == 0
        n_empty = jnp.sum(empty)
        return jnp.where(n_empty == 1, jnp.argmax(empty), -1), n_empty

    return jax.lax.map(one, (positions, cells))


def vacancy_sites(positions, cells, sites) -> tuple[np.ndarray, np.ndarray]:
    """The vacant lattice site of each frame: ``positions`` (F, N, 3) Å of N = M − 1 atoms, ``cells`` (F, 3, 3) or one
    (3, 3) Å (rows), ``sites`` (M, 3) the perfect lattice in fractional coordinates (:func:`site_fractions`), placed
    in each frame's own cell (so a strained or NPT frame maps onto its own lattice).

    Each atom goes to its nearest site by minimum-image distance; the empty site is the vacancy. Returns
    (vacancy (F,) int: the site, or −1 where not exactly one site is empty (an atom shares a site: no clean vacancy),
    number of empty sites (F,)). Pure JAX (one jitted ``lax.map`` over frames)."""
    X = jnp.asarray(positions, jnp.float64)
    if X.ndim == 2:
        X = X[None]
    C = jnp.broadcast_to(jnp.asarray(cells, jnp.float64), (X.shape[0], 3, 3))
    S = jnp.asarray(sites, jnp.float64)
    if X.shape[1] >= S.shape[0]:
        raise MigrationError(f"{X.shape[1]} atoms on {S.shape[0]} sites: a vacancy needs fewer atoms than sites")
    vac, n_empty = _vacancy_frames(X, C, S)
    return np.asarray(vac), np.asarray(n_empty)


@dataclass(frozen=True)
class Hop:
    """A vacancy hop: ``frame`` (the first frame on the new site), ``source`` and ``target`` sites, ``vector`` (Å,
    minimum image, from the vacancy's old site to its new one: the opposite of the atom's move), ``kind``: "basal" or
    "nonbasal" (hcp, a nearest-neighbour hop in or out of the basal plane), "nn" (another lattice's nearest
    neighbour), "other" (farther than a nearest neighbour: two hops within ``persist`` frames)."""

    frame: int
    source: int
    target: int
    vector: tuple
    kind: str


def hop_kind(vector, cell, nn_distance: float, structure: str = "hcp", tol: float = 0.2) -> str:
    """The kind of a vacancy move ``vector`` (Å): "other" unless within ``tol`` (relative) of the nearest-neighbour
    distance ``nn_distance`` (Å); for hcp "basal" when its component along c (the third cell vector) is below
    ``tol`` × ``nn_distance``, else "nonbasal"; "nn" for other structures."""
    v = np.asarray(vector, float)
    r = float(np.linalg.norm(v))
    if abs(r - nn_distance) > tol * nn_distance:
        return "other"
    if structure != "hcp":
        return "nn"
    c = np.asarray(cell, float)[2]
    return "basal" if abs(v @ c) / np.linalg.norm(c) < tol * nn_distance else "nonbasal"


def nearest_distance(perfect: Atoms) -> float:
    """The nearest-neighbour distance (Å) of a perfect lattice (minimum image)."""
    r = perfect.get_distances(0, range(1, len(perfect)), mic=True)
    return float(np.min(r))


def detect_hops(vacancy, sites, cell, nn_distance: float, persist: int = 3, structure: str = "hcp") -> list[Hop]:
    """The hops of a vacancy path ``vacancy`` (F,) (sites per frame from :func:`vacancy_sites`, −1 undetermined).

    The vacancy is on a site once it has stayed there ``persist`` consecutive determined frames (undetermined frames
    are skipped); a hop is a change of that committed site, dated at the first frame of the new stay. A transient
    excursion (the vacancy on another site for fewer than ``persist`` frames, then back) is no hop. ``sites`` (M, 3)
    fractional, ``cell`` (3, 3) Å the cell in which hop vectors are measured (minimum image), ``nn_distance`` (Å)
    for :func:`hop_kind`."""
    if persist < 1:
        raise MigrationError(f"persist must be >= 1 frame, got {persist}")
    sites = np.asarray(sites, float)
    cell = np.asarray(cell, float)
    committed, run_site, run_len, run_start, hops = None, None, 0, 0, []
    for k, v in enumerate(np.asarray(vacancy)):
        v = int(v)
        if v < 0:
            continue
        if v == run_site:
            run_len += 1
        else:
            run_site, run_len, run_start = v, 1, k
        if run_len == persist and v != committed:
            if committed is not None:
                d = sites[v] - sites[committed]
                d = (d - np.round(d)) @ cell
                hops.append(Hop(run_start, committed, v, tuple(float(x) for x in d),
                                hop_kind(d, cell, nn_distance, structure)))
            committed = v
    return hops


@dataclass
class HopRate:
    """Hops counted in one NVT run: ``temperature`` (K, the thermostat's), ``mean_temperature`` (K, measured after
    equilibration), ``steps``, ``timestep`` (fs), ``time_ps`` (the counted time, after equilibration), ``hops``
    (counted), ``kinds`` ({kind: count}), ``rate`` and ``rate_err`` (1/s; Poisson: √hops / time), ``determined``
    (fraction of frames with exactly one empty site), ``wall_s``, ``n_atoms``, ``events`` (all :class:`Hop`, the
    equilibration's included, ``frame`` × ``sample_fs`` = time in fs), ``sample_fs``."""

    temperature: float
    mean_temperature: float
    steps: int
    timestep: float
    time_ps: float
    hops: int
    kinds: dict
    rate: float
    rate_err: float
    determined: float
    wall_s: float
    n_atoms: int
    sample_fs: float
    events: list = field(default_factory=list)


def count_hops(frames_positions, cells, perfect: Atoms, *, sample_fs: float, equilibration_fs: float = 0.0,
               persist: int = 3, structure: str = "hcp") -> tuple[list[Hop], int, float]:
    """(hops after ``equilibration_fs``, hops in all, fraction of determined frames) of frames sampled every
    ``sample_fs`` fs (frame 0 at t = 0) of a cell with one vacancy of ``perfect``'s lattice
    (:func:`vacancy_sites`, :func:`detect_hops`)."""
    sites = site_fractions(perfect)
    vac, _ = vacancy_sites(frames_positions, cells, sites)
    cell = np.asarray(cells, float)
    cell = cell if cell.ndim == 2 else cell[0]
    events = detect_hops(vac, sites, cell, nearest_distance(perfect), persist, structure)
    first = int(np.ceil(equilibration_fs / sample_fs - 1e-9))
    return [h for h in events if h.frame >= first], events, float(np.mean(vac >= 0))


def hop_rates(potential, perfect: Atoms, temperatures, steps, *, timestep: float = 2.0, sample_every: int = 50,
              equilibration: float = 2000.0, persist: int = 3, site: int = 0, structure: str = "hcp",
              ensemble: str = "nvt_nose_hoover", thermostat_time: float = 100.0, seed: int = 0, relax: bool = True,
              report=None, **md) -> list[HopRate]:
    """Vacancy hop rates from direct MD, one :class:`HopRate` per temperature (K).

    ``perfect`` (the supercell at the potential's lattice parameters; its thermal expansion is not applied) less
    ``site`` is relaxed at fixed cell (:func:`relax_positions`, with ``relax``) and run with
    :func:`mtpjax.md.run_md` in ``ensemble`` (default Nosé–Hoover NVT: no friction to bias the hop rate;
    ``thermostat_time`` fs) for ``steps`` (one for all or one per temperature) of ``timestep`` fs, from a
    Maxwell–Boltzmann draw at the temperature (``seed`` + index). Positions are sampled every ``sample_every`` steps
    (in memory), mapped onto the perfect lattice (:func:`vacancy_sites`) and the hops
    counted (:func:`detect_hops`, ``persist`` frames) after the first ``equilibration`` fs; rate = hops / counted
    time. ``report(HopRate)`` is called after each temperature; ``md`` goes to :func:`mtpjax.md.run_md`.
    """
    import time

    from .md import run_md

    temperatures = [float(t) for t in np.atleast_1d(temperatures)]
    steps = [int(s) for s in np.broadcast_to(np.asarray(steps, int), (len(temperatures),))]
    sample_fs = sample_every * timestep
    if equilibration >= min(steps) * timestep:
        raise MigrationError(f"equilibration ({equilibration} fs) must be shorter than every run")
    start = perfect.copy()
    del start[site]
    if relax:
        start = relax_positions(potential, start)
    out = []
    for k, (T, n) in enumerate(zip(temperatures, steps)):
        t0 = time.perf_counter()
        frames = []  # run_md appends the frames in memory
        res = run_md(potential, start, ensemble=ensemble, steps=n, timestep=timestep, temperature=T,
                     thermostat_time=thermostat_time, seed=seed + k, log_every=sample_every, trajectory=frames,
                     trajectory_every=sample_every, **md)
        X = np.stack([f.positions for f in frames])
        C = np.stack([f.cell.array for f in frames])
        counted, events, determined = count_hops(X, C, perfect, sample_fs=sample_fs, equilibration_fs=equilibration,
                                                 persist=persist, structure=structure)
        time_ps = (n * timestep - equilibration) / 1000.0
        temps = [r["temperature_K"] for r in res.log if r["time_fs"] >= equilibration]
        kinds = {}
        for h in counted:
            kinds[h.kind] = kinds.get(h.kind, 0) + 1
        rate = len(counted) / (time_ps * 1e-12)
        r = HopRate(T, float(np.mean(temps)), n, float(timestep), time_ps, len(counted), kinds, rate,
                    np.sqrt(len(counted)) / (time_ps * 1e-12), determined, time.perf_counter() - t0, len(start),
                    float(sample_fs), events)
        out.append(r)
        if report is not None:
            report(r)
    return out


@dataclass
class ArrheniusFit:
    """rate = ``prefactor`` · exp(−``activation_energy`` / kT): ``prefactor`` (1/s), ``activation_energy`` and
    ``activation_energy_err`` (eV, 1σ), ``ln_prefactor_err``, ``chi2`` and ``dof`` of the fit, ``temperatures`` (K)
    used (those with at least one hop)."""

    prefactor: float
    activation_energy: float
    activation_energy_err: float
    ln_prefactor_err: float
    chi2: float
    dof: int
    temperatures: tuple

    def rate(self, temperature):
        """The fitted rate (1/s) at ``temperature`` (K)."""
        return self.prefactor * np.exp(-self.activation_energy / (KB_EV * np.asarray(temperature, float)))


def arrhenius_fit(temperatures, rates, counts) -> ArrheniusFit:
    """Arrhenius law fitted to ``rates`` (1/s) at ``temperatures`` (K) from ``counts`` events each: weighted least
    squares of ln rate against 1/kT with Poisson errors σ(ln rate) = 1/√count (temperatures with no event are left
    out). The errors are those of the weights (not rescaled by χ²; ``chi2`` / ``dof`` says how well they hold)."""
    T, k, n = (np.asarray(x, float) for x in (temperatures, rates, counts))
    keep = (n > 0) & (k > 0)
    if keep.sum() < 2:
        raise MigrationError(f"an Arrhenius fit needs at least two temperatures with hops, got {int(keep.sum())}")
    T, k, n = T[keep], k[keep], n[keep]
    x = 1.0 / (KB_EV * T)
    y = np.log(k)
    A = np.stack([np.ones_like(x), -x], axis=1)
    w = n  # 1 / sigma^2
    cov = np.linalg.inv(A.T @ (A * w[:, None]))
    lnnu, ea = cov @ (A.T @ (w * y))
    chi2 = float(np.sum(w * (y - A @ np.array([lnnu, ea])) ** 2))
    return ArrheniusFit(float(np.exp(lnnu)), float(ea), float(np.sqrt(cov[1, 1])), float(np.sqrt(cov[0, 0])), chi2,
                        int(len(T) - 2), tuple(float(t) for t in T))
