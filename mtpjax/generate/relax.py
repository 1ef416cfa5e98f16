"""Low-precision relaxations with an oracle: VOLMIN, CELLMIN and INTMIN.

Three modes, each run on the previous stage's output:

- ``volume``: isotropic scaling of the cell, fractional coordinates fixed (converged when |p| < smax, GPa);
- ``cell``: cell shape and volume (symmetric strain), fractional coordinates fixed (all |σ_ij| < smax, GPa);
- ``positions``: atomic positions at fixed cell (all |f_i| < fmax, eV/Å).

JAX oracles are relaxed many structures at once: the structures are packed into one padded disjoint union
(:mod:`mtpjax.batch`) and FIRE (Bitzek et al., PRL 97, 170201 (2006), as in ASE) runs per structure inside
one jitted loop of ``steps_per_round`` steps. The degrees of freedom are reference positions u (Å) and a
per-structure strain e: the real pair vectors are (u_j - u_i + shift·C0)(I + e), with C0 the stage's starting
cell. The cell's generalised coordinate is c·e with c = V^(1/3) (Å), so one FIRE ``maxstep`` (Å) bounds atom
moves and strains (maxstep / c) alike. Neighbour lists are built on the host (any cell size: periodic images)
with ``cutoff + skin``; a FIRE step that could bring a pair not in the list inside the cutoff is refused
inside the loop (that structure waits), and its list is rebuilt before the next round, so no energy is ever
computed from a stale list. The bound: a list built at (u_b, F_b) stays valid while
σ_min(F_b⁻¹F)·(cutoff + skin) − 2·max|u − u_b|·‖F‖₂ ≥ cutoff.

Other oracles are relaxed one by one with ASE's FIRE (volume/cell: ``FrechetCellFilter`` with all atoms
fixed, hydrostatic for ``volume``) and the same convergence criteria.

A structure fails (and is returned as a :class:`Failure`) when the oracle errors or is non-finite
(``oracle_error``, ``non_finite``), atoms come closer than ``min_distance`` (``collapsed``), V/V_start leaves
[1/f, f] (``volume``), or it does not converge in ``max_steps`` (``not_converged``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import jax
import jax.numpy as jnp
import numpy as np

from ..batch import pack
from ..errors import StructureError
from ..evaluate import types_for_symbols
from ..neighbors import pairs
from ..potential import pair_vectors
from ..units import EV_PER_A3_TO_GPA
from . import oracle as _oracle
from .config import RelaxConfig
from .structures import Failure

MODES = ("volume", "cell", "positions")

# statuses of a structure (inside the loop and on the host)
ACTIVE, CONVERGED, REBUILD, NON_FINITE, COLLAPSED, VOLUME, NOT_CONVERGED = range(7)
REASONS = {NON_FINITE: "non_finite", COLLAPSED: "collapsed", VOLUME: "volume", NOT_CONVERGED: "not_converged"}

#: Smallest padded batch (atoms, structures): smaller batches cost the same and would compile new shapes.
MIN_ATOMS = 256
# ASE's FIRE constants
FIRE = dict(dt=0.1, dtmax=1.0, n_min=5, finc=1.1, fdec=0.5, astart=0.1, fa=0.99)


def relax(oracle, structures, mode: str, cfg: RelaxConfig, min_distance: float = 0.0, progress=None) -> list:
    """Relaxed copies of ``structures`` (ase.Atoms) or :class:`Failure` items, in input order.

    ``mode``: volume, cell or positions (see the module docstring); ``min_distance`` (Å): atoms closer than this
    count as collapsed. ``progress(n)`` is called as structures finish.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if _oracle.is_jax(oracle):
        return relax_batched(oracle, structures, mode, cfg, min_distance, progress)
    calc = _oracle.calculator(oracle)
    out = []
    for k, a in enumerate(structures):
        out.append(relax_ase(calc, a, mode, cfg, min_distance, k))
        if progress:
            progress(1)
    return out


# ----------------------------------------------------------------------------------------------- JAX, batched
@dataclass
class _State:
    """Host state of one structure during a batched relaxation."""

    index: int
    name: str
    types: np.ndarray
    C0: np.ndarray  # stage's starting cell (rows, Å)
    u: np.ndarray  # reference positions (Å)
    c: float  # cell coordinate scale V^(1/3) (Å)
    e: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    vu: np.ndarray | None = None
    ve: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    dt: float = FIRE["dt"]
    alpha: float = FIRE["astart"]
    npos: int = 0
    steps: int = 0
    status: int = ACTIVE
    pairs: tuple | None = None
    u_b: np.ndarray | None = None
    Finv_b: np.ndarray | None = None
    steps_at_build: int = -1
    failure: Failure | None = None

    @property
    def F(self):
        return np.eye(3) + self.e


def _energy(u, e, potential, C0, species, nbrs, structure):
    R = pair_vectors(u, C0, nbrs, structure)
    R = jnp.einsum("inc,icd->ind", R, (jnp.eye(3) + e)[structure])
    sites = potential.site_energies_from_pairs(R, species, nbrs)
    sites = jnp.where(species >= 0, sites, 0.0)
    return jnp.sum(sites), (sites, R)


def _seg(x, structure, B, op=jax.ops.segment_sum):
    return op(x, structure, num_segments=B)


@jax.jit
def _round(potential, state, C0, species, structure, nbrs, c, u_b, Finv_b, prm):
    """Up to ``prm['K']`` FIRE steps of every ACTIVE structure of a packed batch; returns the new state.

    Everything but the array shapes is traced (mode included), so one program per shape serves all three stages.
    """
    B = C0.shape[0]
    atom = species >= 0
    eye = jnp.eye(3)
    grad = jax.value_and_grad(_energy, argnums=(0, 1), has_aux=True)
    V0 = jnp.abs(jnp.linalg.det(C0))
    mode = prm["mode"]  # 0 volume, 1 cell, 2 positions
    cutoff, skin, maxstep = prm["cutoff"], prm["skin"], prm["maxstep"]

    def body(carry):
        k, (u, e, vu, ve, dt, alpha, npos, steps, status) = carry
        (_, (sites, R)), (gu, ge) = grad(u, e, potential, C0, species, nbrs, structure)
        ge = -ge  # -dE/de (eV)
        fu = jnp.where(atom[:, None] & (mode == 2), -gu, 0.0)  # eV/Å (F = I in positions mode)
        F = eye + e
        detF = jnp.linalg.det(F)
        sigma = -jnp.einsum("bji,bjk->bik", F, ge) / (V0 * detF)[:, None, None] * EV_PER_A3_TO_GPA  # GPa, F^T dE/dF / V
        sigma = 0.5 * (sigma + jnp.swapaxes(sigma, 1, 2))
        resid = jnp.stack([jnp.abs(jnp.trace(sigma, axis1=1, axis2=2)) / 3 / prm["smax"],
                           jnp.max(jnp.abs(sigma), axis=(1, 2)) / prm["smax"],
                           _seg(jnp.linalg.norm(fu, axis=1), structure, B, jax.ops.segment_max) / prm["fmax"]])[mode]
        finite = (_seg(jnp.where(atom, jnp.isfinite(sites) & jnp.isfinite(gu).all(1), True).astype(jnp.int32), structure, B,
                       jax.ops.segment_min) > 0) & jnp.isfinite(ge).all((1, 2))
        r = jnp.where(nbrs.mask, jnp.linalg.norm(R, axis=-1), jnp.inf)
        rmin = _seg(jnp.where(atom, r.min(axis=1), jnp.inf), structure, B, jax.ops.segment_min)
        active = status == ACTIVE
        status = jnp.where(active & ~finite, NON_FINITE,
                 jnp.where(active & (rmin < prm["dmin"]), COLLAPSED,
                 jnp.where(active & (resid < 1.0), CONVERGED,
                 jnp.where(active & (steps >= prm["max_steps"]), NOT_CONVERGED, status))))
        go = status == ACTIVE
        # FIRE on (u, c·e) with forces (fu, P(-dE/de)/c); P projects on isotropic (volume) or symmetric (cell) strains
        p_vol = (jnp.trace(ge, axis1=1, axis2=2) / 3)[:, None, None] * eye
        p_cell = 0.5 * (ge + jnp.swapaxes(ge, 1, 2))
        fe = jnp.where(mode == 0, p_vol, jnp.where(mode == 1, p_cell, 0.0)) / c[:, None, None]
        fu = jnp.where(finite[structure][:, None], fu, 0.0)
        fe = jnp.where(finite[:, None, None], fe, 0.0)
        dot = lambda a, b: _seg(jnp.sum(a * b, 1), structure, B)  # noqa: E731
        vf = dot(fu, vu) + jnp.sum(fe * ve, (1, 2))
        ff = jnp.sqrt(dot(fu, fu) + jnp.sum(fe * fe, (1, 2)))
        vv = jnp.sqrt(dot(vu, vu) + jnp.sum(ve * ve, (1, 2)))
        downhill = vf > 0
        mix = jnp.where(downhill, alpha * vv / jnp.where(ff > 0, ff, 1.0), 0.0)
        keep = jnp.where(downhill, 1 - alpha, 0.0)
        vu_n = keep[structure][:, None] * vu + mix[structure][:, None] * fu
        ve_n = keep[:, None, None] * ve + mix[:, None, None] * fe
        speed_up = downhill & (npos > FIRE["n_min"])
        dt_n = jnp.where(downhill, jnp.where(speed_up, jnp.minimum(dt * FIRE["finc"], FIRE["dtmax"]), dt), dt * FIRE["fdec"])
        alpha_n = jnp.where(downhill, jnp.where(speed_up, alpha * FIRE["fa"], alpha), FIRE["astart"])
        npos_n = jnp.where(downhill, npos + 1, 0)
        vu_n = vu_n + dt_n[structure][:, None] * fu
        ve_n = ve_n + dt_n[:, None, None] * fe
        du, dX = dt_n[structure][:, None] * vu_n, dt_n[:, None, None] * ve_n
        norm = jnp.sqrt(dot(du, du) + jnp.sum(dX * dX, (1, 2)))
        scale = jnp.where(norm > maxstep, maxstep / jnp.where(norm > 0, norm, 1.0), 1.0)
        u_n = u + scale[structure][:, None] * du
        e_n = e + scale[:, None, None] * dX / c[:, None, None]
        # would the new state still be covered by the neighbour list (no pair from beyond cutoff + skin inside)?
        F_n = eye + e_n
        sv = jnp.linalg.svd(jnp.einsum("bij,bjk->bik", Finv_b, F_n), compute_uv=False)
        disp = _seg(jnp.where(atom, jnp.linalg.norm(u_n - u_b, axis=1), 0.0), structure, B, jax.ops.segment_max)
        covered = sv[:, -1] * (cutoff + skin) - 2 * disp * jnp.linalg.svd(F_n, compute_uv=False)[:, 0] >= cutoff
        det_n = jnp.linalg.det(F_n)
        vfac = prm["vfac"]
        status = jnp.where(go & ~covered, REBUILD, jnp.where(go & ((det_n > vfac) | (det_n < 1 / vfac)), VOLUME, status))
        ok = go & covered & (status == ACTIVE)
        oka = ok[structure][:, None]
        okb = ok[:, None, None]
        new = (jnp.where(oka, u_n, u), jnp.where(okb, e_n, e), jnp.where(oka, vu_n, vu), jnp.where(okb, ve_n, ve),
               jnp.where(ok, dt_n, dt), jnp.where(ok, alpha_n, alpha), jnp.where(ok, npos_n, npos),
               steps + ok.astype(steps.dtype), status)
        return k + 1, new

    def cond(carry):
        k, st = carry
        return (k < prm["K"]) & jnp.any(st[-1] == ACTIVE)

    return jax.lax.while_loop(cond, body, (0, state))[1]


def _pow2(n, minimum):
    """Smallest power of two >= n (and >= minimum): few distinct shapes, so few compilations."""
    return max(minimum, 1 << max(int(n) - 1, 0).bit_length())


def _groups(states, batch_atoms: int):
    """Split structures (in order) into batches that fill power-of-two atom buckets: all that is left if that
    fills its bucket to 2/3, else the largest power of two <= the atoms left (at most ``batch_atoms``)."""
    groups, k = [], 0
    left = sum(len(s.u) for s in states)
    while k < len(states):
        cap = _pow2(left, MIN_ATOMS)
        if cap > batch_atoms or 3 * left < 2 * cap:
            cap = max(min(batch_atoms, 1 << (left.bit_length() - 1)), MIN_ATOMS)
        group, n = [], 0
        while k < len(states) and (not group or n + len(states[k].u) <= cap):
            group.append(states[k])
            n += len(states[k].u)
            k += 1
        groups.append(group)
        left -= n
    return groups


def relax_batched(potential, structures, mode: str, cfg: RelaxConfig, min_distance: float = 0.0, progress=None) -> list:
    """Batched FIRE of a JAX potential (see the module docstring); returns Atoms or Failure per structure."""
    rc, skin = float(potential.cutoff), float(cfg.skin)
    out: list = [None] * len(structures)
    states = []
    for k, a in enumerate(structures):
        name = str(a.info.get("id", f"structure {k}"))
        try:
            types = types_for_symbols(a.get_chemical_symbols(), getattr(potential, "species", None), potential.n_species, name)
        except StructureError as err:
            out[k] = Failure(k, name, "unknown_element", str(err))
            continue
        C0 = a.cell.array.copy()
        states.append(_State(k, name, types, C0, a.positions.copy(), abs(np.linalg.det(C0)) ** (1 / 3),
                             vu=np.zeros((len(a), 3))))
    widest: dict = {}

    def finish(s: _State, reason=None, message=""):
        if reason is not None:
            s.failure = Failure(s.index, s.name, reason, message)
        if progress:
            progress(1)

    if progress and len(states) < len(structures):
        progress(len(structures) - len(states))
    while True:
        active = [s for s in states if s.status == ACTIVE]
        if not active:
            break
        for s in active:
            if s.pairs is None:
                if s.steps_at_build == s.steps:  # refused right after a rebuild: a step is larger than the skin allows
                    s.status = -1
                    finish(s, "neighbour_list", f"one FIRE step exceeds the neighbour skin {skin} Å")
                    continue
                F = s.F
                try:
                    s.pairs = pairs(s.u @ F, s.C0 @ F, True, rc + skin, s.name)
                except StructureError as err:
                    s.status = -1
                    finish(s, "collapsed", str(err))
                    continue
                s.u_b, s.Finv_b, s.steps_at_build = s.u.copy(), np.linalg.inv(F), s.steps
        active = [s for s in active if s.status == ACTIVE]
        groups = _groups(active, cfg.batch_atoms)
        for group in groups:
            _run_group(potential, group, mode, cfg, min_distance, rc, skin, widest)
            for s in group:
                if s.status == REBUILD:
                    s.status, s.pairs = ACTIVE, None
                elif s.status in REASONS:
                    finish(s, REASONS[s.status], f"{mode} relaxation: {REASONS[s.status]} after {s.steps} steps")
                elif s.status == CONVERGED:
                    finish(s)
    for s in states:
        if s.failure is not None:
            out[s.index] = s.failure
        else:
            a = structures[s.index].copy()
            a.calc = None
            F = s.F
            a.set_cell(s.C0 @ F, scale_atoms=False)
            a.positions = s.u @ F
            out[s.index] = a
    return out


def _run_group(potential, group, mode, cfg, min_distance, rc, skin, widest):
    n_tot = sum(len(s.u) for s in group)
    n_pad = _pow2(n_tot, MIN_ATOMS)
    b_pad = max(_pow2(len(group), 1), n_pad // 4)  # tied to the atoms bucket (one shape per atoms bucket)
    max_nb = max(int(np.bincount(s.pairs[0], minlength=len(s.u)).max()) if len(s.pairs[0]) else 0 for s in group)
    n_nb = max(_pow2(max_nb, 16), widest.get("n_nb", 0))
    widest["n_nb"] = n_nb  # the widest of this call only: padding depends on the input alone (deterministic results)
    b = pack([(s.u, s.C0, s.types, s.pairs) for s in group], n_pad, b_pad, n_nb)

    def per_structure(get, fill, shape=()):
        x = np.full((b_pad, *shape), fill, dtype=np.asarray(fill).dtype)
        for k, s in enumerate(group):
            x[k] = get(s)
        return x

    def per_atom(get):
        x = np.zeros((n_pad, 3))
        x[: n_tot] = np.concatenate([get(s) for s in group])
        return x

    eye = np.eye(3)
    state = (b.positions, per_structure(lambda s: s.e, 0.0, (3, 3)), per_atom(lambda s: s.vu),
             per_structure(lambda s: s.ve, 0.0, (3, 3)), per_structure(lambda s: s.dt, 0.0),
             per_structure(lambda s: s.alpha, 0.0), per_structure(lambda s: s.npos, 0),
             per_structure(lambda s: s.steps, 0), per_structure(lambda s: ACTIVE, CONVERGED))
    cells = b.cells.copy()
    cells[len(group):] = eye
    args = (cells, b.species, b.structure, b.nbrs, per_structure(lambda s: s.c, 1.0), per_atom(lambda s: s.u_b),
            per_structure(lambda s: s.Finv_b, 0.0, (3, 3)) + np.where(np.arange(b_pad) >= len(group), 1.0, 0.0)[:, None, None] * eye)
    prm = dict(mode=MODES.index(mode), K=int(cfg.steps_per_round), cutoff=rc, skin=skin, fmax=float(cfg.fmax),
               smax=float(cfg.smax), maxstep=float(cfg.maxstep), max_steps=int(cfg.max_steps),
               vfac=float(cfg.max_volume_factor), dmin=float(min_distance))
    res = _round(potential, jax.tree.map(jnp.asarray, state), *jax.tree.map(jnp.asarray, args),
                 {k: jnp.asarray(v) for k, v in prm.items()})
    u, e, vu, ve, dt, alpha, npos, steps, status = (np.asarray(x) for x in res)
    o = 0
    for k, s in enumerate(group):
        sl = slice(o, o + len(s.u))
        o += len(s.u)
        s.u, s.vu, s.e, s.ve = u[sl].copy(), vu[sl].copy(), e[k].copy(), ve[k].copy()
        s.dt, s.alpha, s.npos, s.steps, s.status = float(dt[k]), float(alpha[k]), int(npos[k]), int(steps[k]), int(status[k])


# ----------------------------------------------------------------------------------------------- ASE, one by one
def relax_ase(calc, atoms, mode: str, cfg: RelaxConfig, min_distance: float = 0.0, index: int = 0):
    """Relax one structure with ASE's FIRE and an ASE calculator; Atoms or :class:`Failure`."""
    from ase.constraints import FixAtoms
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE as AseFIRE

    from .structures import min_distance as dmin_of

    name = str(atoms.info.get("id", f"structure {index}"))
    a = atoms.copy()
    a.calc = calc
    v0 = a.get_volume()
    if mode == "positions":
        target = a
    else:
        a.set_constraint(FixAtoms(indices=list(range(len(a)))))
        target = FrechetCellFilter(a, hydrostatic_strain=(mode == "volume"))
    opt = AseFIRE(target, logfile=None, maxstep=cfg.maxstep)
    try:
        for _ in opt.irun(fmax=0.0, steps=cfg.max_steps):
            e, f = a.get_potential_energy(), a.get_forces(apply_constraint=False)
            s = a.get_stress(voigt=False) * EV_PER_A3_TO_GPA
            if not (np.isfinite(e) and np.isfinite(f).all() and np.isfinite(s).all()):
                return Failure(index, name, "non_finite", f"{mode} relaxation: non-finite energy, force or stress")
            if min_distance > 0 and dmin_of(a, min_distance) < min_distance:
                return Failure(index, name, "collapsed", f"{mode} relaxation: atoms closer than {min_distance:.3g} Å")
            ratio = a.get_volume() / v0
            if ratio > cfg.max_volume_factor or ratio < 1 / cfg.max_volume_factor:
                return Failure(index, name, "volume", f"{mode} relaxation: V/V_start = {ratio:.3g}")
            resid = (abs(np.trace(s)) / 3 / cfg.smax if mode == "volume" else np.abs(s).max() / cfg.smax if mode == "cell"
                     else np.linalg.norm(f, axis=1).max() / cfg.fmax)
            if resid < 1:
                break
        else:
            return Failure(index, name, "not_converged", f"{mode} relaxation: not converged in {cfg.max_steps} steps")
    except Exception as err:  # any error of the oracle discards this structure only
        return Failure(index, name, "oracle_error", f"{type(err).__name__}: {err}")
    a.set_constraint()
    out = atoms.copy()
    out.calc = None
    out.set_cell(a.cell.array, scale_atoms=False)
    out.positions = a.positions
    return out
