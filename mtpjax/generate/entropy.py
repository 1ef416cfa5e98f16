"""ENTROPY: structures that maximise the entropy of the distribution of per-atom descriptors (Subramanyam & Perez,
*Information-entropy-driven generation of material-agnostic datasets for machine-learning interatomic potentials*,
npj Comput. Mater. 11, 218, 2025).

**Estimator.** For N per-atom descriptors q_i ∈ R^D the nearest-neighbour (Kozachenko–Leonenko type) estimate

    S = (1/N) Σ_i ln(N · δ_i),        δ_i = min_{j≠i} ‖q_i − q_j‖

(:func:`entropy`; dimensionless, the descriptors' unit only shifts S by a constant). Three details make it a
safe JAX function:

- *j = i* and padding: the squared distances d²_ij are computed from explicit differences and the excluded entries
  (the diagonal, padded atoms) are replaced by +inf with ``jnp.where`` *before* any square root or logarithm, so
  no 0/0 appears in the gradient; ln δ_i = ½ ln(d²_min + ε²) never takes a square root at all (the floor ε =
  :data:`FLOOR` keeps an atom with no distinct neighbour finite);
- coincident descriptors: symmetry-equivalent atoms have identical descriptors (every 2-atom cell: inversion
  through the midpoint maps one atom onto the other), so their δ would be 0 (S = −∞) with a zero gradient whatever
  the geometry. Pairs closer than :data:`COINCIDENT` (1e-5, descriptor units) are excluded like j = i: δ_i is the
  distance to the nearest *distinct* descriptor (duplicates say nothing about coverage). Generic points never
  coincide, so this changes nothing else;
- the min: with ``temperature`` τ = 0 (default) the exact min. It is piecewise smooth: its gradient is the
  gradient of the current nearest pair, exact wherever the nearest neighbour of every atom is unique (almost
  everywhere, and always for a generic point; the finite-difference test uses such points); at ties
  ``jnp.min`` splits the cotangent among the tied entries (a valid subgradient). With τ > 0 the min over j of
  ln δ_ij is replaced by the soft-min −τ ln Σ_j exp(−ln δ_ij / τ), smooth everywhere, with
  min − τ ln(N − 1) ≤ soft-min ≤ min (τ is dimensionless because it acts on log-distances).

Fixed points (the descriptors of earlier batches) enter through :func:`entropy_with_fixed`: the same S of the union,
with the fixed points' distances among themselves computed once (:func:`fixed_terms`).

**Descriptors.** q_i = B_α(i) / s_α: the scalar basis functions of an MTP (the MTP's own code path:
:func:`mtpjax.model.pair_geometry`, :func:`mtpjax.model.radial_values`, :func:`mtpjax.contraction.basic_moments`,
:func:`mtpjax.contraction.scalar_basis`; checked against the model's site energies in the tests), of an untrained
single-species MTP of a given level and cutoff built by the fitter's own constructor
(:func:`mtpjax.fit.linear.initial_mtp`, MLIP's Chebyshev start), the radial ``scaling`` set so that Σ_j
scaling·(R_cut − r_ij)² = 1 on the fcc lattice at Ω0. Each component is divided by its RMS s_α over a fixed
calibration set (a rattled fcc supercell at Ω0, seeded), so that no basis function dominates the distance.

**Objective** (:func:`objective`), minimised over positions and cells of a batch of structures jointly (the
entropy couples every atom of the batch, and the atoms of earlier batches enter as fixed descriptors):

    L = −S(q of the batch ∪ reference) + repulsion · (1/N) Σ_i Σ_j (1 − r_ij/d_rep)²₊ + energy_weight · (Ē − E_ref)

with Ē the oracle's energy per atom (eV/atom) of the batch: ``energy_weight`` w (1/eV) > 0 gives Subramanyam &
Perez's E − kS form with k = 1/w eV. The repulsion (dimensionless weight; d_rep = 1.1 d_min,
:data:`REPULSION_MARGIN`) keeps atoms apart: without it the entropy grows without bound as atoms collide and
descriptors diverge (the entropy alone drives atoms together until the repulsion balances it). Structures that
still have atoms closer than d_min are discarded (``min_distance``).

**Positions and cell.** Per structure, reference positions u (Å, in a reference cell C0 of volume n·Ω0) and a
log-strain X = Σ_k e·tanh(y_k) E_k + (w/3) I with E_k the five orthonormal traceless symmetric matrices
(|shape component| ≤ e = ``shape_strain``) and w = ln v_lo + (ln v_hi − ln v_lo)·sigmoid(z), so the volume per atom
stays within ``volume_range`` × Ω0 by construction; F = exp(X), positions u·F, cell C0·F (rows).

**Optimiser.** optax's Adam (``learning_rate``, ``steps``), not :mod:`mtpjax.relax`: the relaxation module
minimises the energy of a potential (the :class:`mtpjax.potential.Potential` protocol, a sum of site energies per
structure, converged by forces and stresses), structure by structure; the entropy is neither a sum over
structures nor a sum of local site terms (every atom's nearest neighbour in descriptor space may sit in any
structure of the batch), and it has no force/stress convergence criterion. Neighbour lists are rebuilt on the
host (:func:`mtpjax.neighbors.pairs`, exact cutoff, every periodic image) at every step, so every value and
gradient is exact for the current geometry (structures are small; the lists are padded to a few shapes).

**Stage.** :func:`run_stage` (the ``ENTROPY`` subset of ``mtpjax generate``, ``[entropy]`` table of
:class:`mtpjax.generate.config.EntropyConfig`): batches in order, one checkpoint each.

**Start.** Random cells and positions (:func:`initial_state`), atoms at least 1.1 d_min apart where the draws
allow. **Seeds.** Structure (n atoms, copy c) starts from ``SeedSequence([seed, 6, n, c])`` (stream 6 =
:data:`ENTROPY_STREAM`); the calibration set from ``SeedSequence([seed, 6, 0])``. The optimisation is deterministic.

Units: Å, eV, eV/atom; volumes are fractions of the oracle's Ω0 (Å³/atom).
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import MtpjaxError
from ..neighbors import Neighbours, dense_neighbours, pairs, power_of_two
from ..potential import pair_vectors

#: Stream number of ENTROPY's random draws (after mtpjax.generate.structures.STREAMS 1-5).
ENTROPY_STREAM = 6
#: The repulsion acts below this multiple of d_min, so that its balance with the entropy (which favours short
#: distances: they make descriptors extreme) lies above d_min.
REPULSION_MARGIN = 1.1
#: ε of ln δ = ½ ln(δ² + ε²), descriptor units (q are O(1)): an atom with no distinct neighbour gives ln ε, not −inf.
FLOOR = 1e-6
#: Descriptors closer than this (descriptor units; q are O(1)) are the same point: symmetry-equivalent atoms, never
#: each other's nearest neighbour (they differ by ~1e-15 in memory, by 1e-9 to 1e-8 when read back from an extxyz
#: file, whose positions are rounded to 1e-8 Å).
COINCIDENT = 1e-5

# the five orthonormal traceless symmetric 3x3 matrices (shape part of the log-strain)
_SHAPE = np.array([
    np.diag([1.0, -1.0, 0.0]) / math.sqrt(2.0),
    np.diag([1.0, 1.0, -2.0]) / math.sqrt(6.0),
    (np.eye(3)[[0]].T @ np.eye(3)[[1]] + np.eye(3)[[1]].T @ np.eye(3)[[0]]) / math.sqrt(2.0),
    (np.eye(3)[[0]].T @ np.eye(3)[[2]] + np.eye(3)[[2]].T @ np.eye(3)[[0]]) / math.sqrt(2.0),
    (np.eye(3)[[1]].T @ np.eye(3)[[2]] + np.eye(3)[[2]].T @ np.eye(3)[[1]]) / math.sqrt(2.0),
])


# ------------------------------------------------------------------------------------------------ the estimator
@functools.partial(jax.jit, static_argnames=("temperature", "floor"))
def log_nn_distances(q, mask=None, temperature: float = 0.0, floor: float = FLOOR):
    """ln δ_i (N,) with δ_i = min_{j≠i, mask_j, q_j ≠ q_i} ‖q_i − q_j‖ for descriptors q (N, D); ``mask`` (N,) bool
    marks real points (padding: False; its rows come out 0). ``temperature`` τ > 0: soft-min over j of ln δ_ij (see
    the module docstring). A point with no distinct real neighbour gets ln ``floor``."""
    q = jnp.asarray(q)
    n = q.shape[0]
    mask = jnp.ones(n, bool) if mask is None else jnp.asarray(mask, bool)
    diff = q[:, None, :] - q[None, :, :]
    d2 = jnp.sum(diff * diff, axis=-1)
    excluded = jnp.eye(n, dtype=bool) | ~mask[None, :] | (d2 < COINCIDENT * COINCIDENT)
    d2 = jnp.where(excluded, jnp.inf, d2)  # before any log: no 0/0 on the diagonal
    if temperature > 0:
        logd = 0.5 * jnp.log(d2 + floor * floor)  # +inf where excluded: exp(-inf) = 0 below
        out = -temperature * jax.nn.logsumexp(-logd / temperature, axis=1)
    else:
        out = 0.5 * jnp.log(jnp.min(d2, axis=1) + floor * floor)
    out = jnp.where(jnp.isfinite(out), out, math.log(floor))  # no distinct neighbour at all
    return jnp.where(mask, out, 0.0)


@functools.partial(jax.jit, static_argnames=("temperature", "floor"))
def entropy(q, mask=None, temperature: float = 0.0, floor: float = FLOOR):
    """S = (1/N) Σ_i ln(N δ_i) of descriptors q (N, D) (real points: ``mask``; N counts them). Dimensionless."""
    q = jnp.asarray(q)
    mask = jnp.ones(q.shape[0], bool) if mask is None else jnp.asarray(mask, bool)
    n = jnp.sum(mask)
    return jnp.log(n) + jnp.sum(log_nn_distances(q, mask, temperature, floor)) / n


def fixed_terms(ref, ref_mask=None, temperature: float = 0.0, floor: float = FLOOR, rows: int = 256) -> np.ndarray:
    """The fixed points' own part of :func:`entropy_with_fixed` (host, float64, (M,)): per point j of ``ref`` (M, D),
    over the other real, distinct fixed points k: min_k d²_jk (τ = 0; +inf if none) or ln Σ_k exp(−ln δ_jk / τ)
    (τ > 0; −inf if none). Computed in blocks of ``rows``."""
    ref = np.asarray(ref, float)
    m = len(ref)
    ref_mask = np.ones(m, bool) if ref_mask is None else np.asarray(ref_mask, bool)
    out = np.empty(m)
    for a in range(0, m, rows):
        d2 = ((ref[a:a + rows, None, :] - ref[None, :, :]) ** 2).sum(-1)
        idx = np.arange(a, min(a + rows, m))
        excluded = ~ref_mask[None, :] | (d2 < COINCIDENT * COINCIDENT)
        excluded[np.arange(len(idx)), idx] = True
        d2 = np.where(excluded, np.inf, d2)
        if temperature > 0:
            with np.errstate(divide="ignore"):
                x = -0.5 * np.log(d2 + floor * floor) / temperature
            top = x.max(axis=1)
            safe = np.where(np.isfinite(top), top, 0.0)
            out[idx] = np.where(np.isfinite(top), safe + np.log(np.exp(x - safe[:, None]).sum(axis=1)), -np.inf)
        else:
            out[idx] = d2.min(axis=1)
    return out


def entropy_with_fixed(q, mask, ref, ref_mask, ref_terms, temperature: float = 0.0, floor: float = FLOOR):
    """:func:`entropy` of the union of varying points q (N, D) (real: ``mask``) and fixed points ``ref`` (M, D) (real:
    ``ref_mask``), without the (M, M) block: the fixed points' distances among themselves enter through ``ref_terms``
    = :func:`fixed_terms` (computed once), so the cost is N·(N + M)·D instead of (N + M)²·D. Equal to
    ``entropy(concatenate([q, ref]), concatenate([mask, ref_mask]), temperature)``."""
    q, ref = jnp.asarray(q), jnp.asarray(ref)
    mask, ref_mask = jnp.asarray(mask, bool), jnp.asarray(ref_mask, bool)
    n = q.shape[0]
    X = jnp.concatenate([q, ref], axis=0)
    diff = q[:, None, :] - X[None, :, :]
    d2 = jnp.sum(diff * diff, axis=-1)  # (N, N + M)
    excluded = (jnp.eye(n, X.shape[0], dtype=bool) | ~jnp.concatenate([mask, ref_mask])[None, :] | ~mask[:, None]
                | (d2 < COINCIDENT * COINCIDENT))
    d2 = jnp.where(excluded, jnp.inf, d2)
    dr = d2[:, n:].T  # (M, N): fixed point j to varying point i
    if temperature > 0:
        lse_q = jax.nn.logsumexp(-0.5 * jnp.log(d2 + floor * floor) / temperature, axis=1)
        lse_r = jnp.logaddexp(jnp.asarray(ref_terms), jax.nn.logsumexp(-0.5 * jnp.log(dr + floor * floor) / temperature, axis=1))
        lq, lr = -temperature * lse_q, -temperature * lse_r
    else:
        lq = 0.5 * jnp.log(jnp.min(d2, axis=1) + floor * floor)
        lr = 0.5 * jnp.log(jnp.minimum(jnp.asarray(ref_terms), jnp.min(dr, axis=1)) + floor * floor)
    fix = lambda x, m: jnp.where(m, jnp.where(jnp.isfinite(x), x, math.log(floor)), 0.0)
    total = jnp.sum(fix(lq, mask)) + jnp.sum(fix(lr, ref_mask))
    count = jnp.sum(mask) + jnp.sum(ref_mask)
    return jnp.log(count) + total / count


# ------------------------------------------------------------------------------------------------ descriptors
def descriptor_mtp(level: int, cutoff: float, min_dist: float, omega0: float | None = None, seed: int = 0,
                   radial_basis_size: int = 8):
    """An untrained single-species MTP (:func:`mtpjax.fit.linear.initial_mtp` of :func:`mtpjax.basis.generate_basis`)
    with R_cut = ``cutoff`` and r_min = ``min_dist`` (Å); with ``omega0`` (Å³/atom) its ``scaling`` makes
    Σ_j scaling·(R_cut − r_ij)² = 1 on the fcc lattice of that volume."""
    from ..basis import generate_basis
    from ..fit.linear import initial_mtp

    mtp = initial_mtp(generate_basis(level), 1, float(min_dist), float(cutoff), [], seed=seed,
                      radial_basis_size=radial_basis_size)
    if omega0 is not None:
        from ase.build import bulk

        fcc = bulk("Cu", "fcc", a=(4.0 * omega0) ** (1.0 / 3.0))
        i, j, s = pairs(fcc.positions, fcc.cell.array, fcc.pbc, cutoff)
        r = np.linalg.norm(fcc.positions[j] - fcc.positions[i] + s @ fcc.cell.array, axis=1)
        total = float(np.sum((cutoff - r) ** 2))
        if total > 0:
            mtp = eqx.tree_at(lambda m: m.scaling, mtp, jnp.asarray(1.0 / total, mtp.scaling.dtype))
    return mtp


def basis_from_pairs(mtp, R, species, nbrs: Neighbours):
    """The MTP's scalar basis functions B_α(i), (N, n_B), from pair vectors R (N, n_nb, 3) in Å: the model's own
    path (so that V_i = species_coeffs[z_i] + moment_coeffs · B(i)); rows of padding atoms (species −1) are 0."""
    from ..contraction import basic_moments, scalar_basis
    from ..model import pair_geometry, radial_values

    species = jnp.asarray(species)
    mask = jnp.asarray(nbrs.mask) & (species >= 0)[:, None]
    tj = species[jnp.asarray(nbrs.index)]
    r, u, inside = pair_geometry(mtp, R, mask)
    f = radial_values(mtp, r, inside, species, tj)
    B = scalar_basis(mtp.plan, basic_moments(mtp.plan, f, u)).T
    return jnp.where((species >= 0)[:, None], B, 0.0)


def _neighbours(structures, radius: float, n_nb: int | None = None):
    """Packed arrays (positions, cells, species 0 / −1, structure index, Neighbours) of ase.Atoms, one atom pad."""
    from ..batch import pack

    data = []
    for a in structures:
        data.append((a.positions, a.cell.array, np.zeros(len(a), np.int64), pairs(a.positions, a.cell.array, a.pbc, radius)))
    return pack(data, n_atoms_pad=power_of_two(sum(len(a) for a in structures), 8),
                n_structures_pad=len(structures), n_nb=n_nb)


def descriptors(mtp, structures, scales=None) -> np.ndarray:
    """Per-atom descriptors (Σ atoms, n_B) of ase.Atoms (one element), in atom order: B_α / ``scales``."""
    if not structures:
        return np.zeros((0, int(mtp.moment_coeffs.shape[0])))
    b = _neighbours(structures, mtp.cutoff)
    R = pair_vectors(jnp.asarray(b.positions), jnp.asarray(b.cells), b.nbrs, jnp.asarray(b.structure))
    B = np.asarray(_basis_jit(mtp, R, jnp.asarray(b.species), b.nbrs))[: sum(len(a) for a in structures)]
    return B if scales is None else B / scales


@eqx.filter_jit
def _basis_jit(mtp, R, species, nbrs):
    return basis_from_pairs(mtp, R, species, Neighbours(*map(jnp.asarray, nbrs)))


def calibration_scales(mtp, omega0: float, nn_distance: float, seed: int) -> np.ndarray:
    """s_α: the RMS of each basis function over a 3x3x3 fcc supercell at Ω0 (Å³/atom) rattled by 0.3 d_nn
    (Gaussian per component, ``SeedSequence([seed, 6, 0])``); 1 where that RMS is 0."""
    from ase.build import bulk

    a = bulk("Cu", "fcc", a=(4.0 * omega0) ** (1.0 / 3.0), cubic=False) * (3, 3, 3)
    r = np.random.default_rng(np.random.SeedSequence([int(seed), ENTROPY_STREAM, 0]))
    a.positions += r.normal(scale=0.3 * nn_distance, size=a.positions.shape)
    B = descriptors(mtp, [a])
    s = np.sqrt(np.mean(B * B, axis=0))
    return np.where(s > 0, s, 1.0)


# ------------------------------------------------------------------------------------------------ geometry
def deformation(y, z, shape_strain: float, log_volume_range):
    """F = exp(X) (B, 3, 3) of shape parameters y (B, 5) and volume parameters z (B,) (see the module docstring);
    det F = v/v0 ∈ ``volume_range`` (relative to the reference cell)."""
    lo, hi = log_volume_range
    w = lo + (hi - lo) * jax.nn.sigmoid(z)
    X = jnp.einsum("bk,kij->bij", shape_strain * jnp.tanh(y), jnp.asarray(_SHAPE)) + (w / 3.0)[:, None, None] * jnp.eye(3)
    return jax.vmap(jax.scipy.linalg.expm)(X)


@functools.partial(jax.jit, static_argnames=("shape_strain", "log_volume_range"))
def geometry(params, cells0, structure, shape_strain: float, log_volume_range):
    """(positions (N, 3) Å, cells (B, 3, 3) Å) of the optimisation parameters {u, y, z}."""
    F = deformation(params["y"], params["z"], shape_strain, log_volume_range)
    return jnp.einsum("nc,ncd->nd", params["u"], F[structure]), jnp.einsum("bcd,bde->bce", cells0, F)


# ------------------------------------------------------------------------------------------------ the objective
class Problem(eqx.Module):
    """Data of one jointly optimised batch: reference cells (B, 3, 3) Å, atom species (N,) (0 real, −1 padding),
    structure index (N,), descriptor scales (D,), fixed reference descriptors (M, D), which of them are real (M,)
    (padded to powers of two: few compiled shapes) and their :func:`fixed_terms` (arrays: traced), and the options
    (static)."""

    cells0: jax.Array
    species: jax.Array
    structure: jax.Array
    scales: jax.Array
    reference: jax.Array
    reference_mask: jax.Array
    reference_terms: jax.Array
    shape_strain: float = eqx.field(static=True)
    log_volume_range: tuple = eqx.field(static=True)
    d_min: float = eqx.field(static=True)
    repulsion: float = eqx.field(static=True)
    energy_weight: float = eqx.field(static=True)
    energy_reference: float = eqx.field(static=True)
    temperature: float = eqx.field(static=True)


def objective(params, nbrs: Neighbours, mtp, oracle, oracle_species, problem: Problem):
    """(L, aux) of the module docstring for parameters {u (N, 3) Å, y (B, 5), z (B,)} and neighbour lists valid
    for their geometry. aux: S (entropy of batch ∪ reference), repulsion term, Ē (eV/atom, NaN without oracle)."""
    species = jnp.asarray(problem.species)
    structure = jnp.asarray(problem.structure)
    real = species >= 0
    pos, cells = geometry(params, jnp.asarray(problem.cells0), structure, problem.shape_strain, problem.log_volume_range)
    R = pair_vectors(pos, cells, nbrs, structure)
    q = basis_from_pairs(mtp, R, species, nbrs) / jnp.asarray(problem.scales)
    S = entropy_with_fixed(q, real, problem.reference, problem.reference_mask, problem.reference_terms, problem.temperature)
    n_real = jnp.sum(real)
    r2 = jnp.sum(R * R, axis=-1)
    d_rep = REPULSION_MARGIN * problem.d_min
    close = jnp.asarray(nbrs.mask) & real[:, None] & (r2 < d_rep ** 2)
    r = jnp.sqrt(jnp.where(close, r2, d_rep ** 2))
    rep = problem.repulsion * jnp.sum(jnp.where(close, (1.0 - r / d_rep) ** 2, 0.0)) / n_real
    loss = -S + rep
    e_atom = jnp.nan
    if oracle is not None:
        from ..potential import site_energies

        types = jnp.where(real, jnp.asarray(oracle_species), -1)
        e_atom = jnp.sum(site_energies(oracle, pos, cells, types, nbrs, structure=structure)) / n_real
        loss = loss + problem.energy_weight * (e_atom - problem.energy_reference)
    return loss, {"S": S, "repulsion": rep, "energy": e_atom}


@eqx.filter_jit
def value_and_grad(params, nbrs, mtp, oracle, oracle_species, problem):
    """((L, aux), dL/dparams) of :func:`objective`, compiled (one program per shape and set of options)."""
    return jax.value_and_grad(objective, has_aux=True)(params, nbrs, mtp, oracle, oracle_species, problem)


@functools.lru_cache(maxsize=None)
def _adam(learning_rate: float):
    """optax's Adam, one object per learning rate (so that its compiled step is reused across batches)."""
    import optax

    return optax.adam(learning_rate)


@eqx.filter_jit
def _adam_step(opt, grads, opt_state, params):
    import optax

    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


class NeighbourLists:
    """Host neighbour lists of a packed batch (structures of ``sizes`` atoms, consecutive) at its current geometry:
    every pair within ``radius`` (Å, every periodic image; positions need not lie in their cells), padded to
    ``n_pad`` atoms and to neighbour slots ``n_nb`` that only grow, by powers of two, so that few shapes compile
    (start it at :func:`expected_neighbours`: most batches then never grow)."""

    def __init__(self, radius: float, sizes, n_nb: int = 4):
        self.radius, self.sizes = float(radius), list(sizes)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.n_nb = max(int(n_nb), 4)

    def __call__(self, pos, cells, n_pad) -> Neighbours:
        """:class:`Neighbours` (numpy) for positions (≥ Σ sizes, 3) and cells (B, 3, 3) in Å."""
        ii, jj, ss = [], [], []
        for b, n in enumerate(self.sizes):
            o = self.offsets[b]
            x = pos[o:o + n]
            image = np.floor(np.linalg.solve(cells[b].T, x.T).T)
            xw = x - image @ cells[b]
            i, j, s = pairs(xw, cells[b], np.ones(3, bool), self.radius, name=f"structure {b}")
            ii.append(i + o), jj.append(j + o), ss.append(s - image[j] + image[i])  # shifts for the unwrapped x
        i, j, s = np.concatenate(ii), np.concatenate(jj), np.concatenate(ss).astype(np.int64)
        need = int(np.bincount(i, minlength=n_pad).max()) if len(i) else 0
        if need > self.n_nb:
            self.n_nb = power_of_two(need, 4)
        return dense_neighbours(i, j, s, int(self.offsets[-1]), n_atoms_pad=n_pad, n_nb=self.n_nb)


def expected_neighbours(radius: float, volume_per_atom: float) -> int:
    """Neighbour slots to start with: 1.5 × the mean number of atoms within ``radius`` (Å) at ``volume_per_atom``
    (Å³), rounded up to a power of two."""
    return power_of_two(int(1.5 * 4.0 / 3.0 * math.pi * radius ** 3 / volume_per_atom) + 1, 4)


@dataclass
class Result:
    """One optimised batch: ase.Atoms per structure (input order), S before and after, the loss history (per step:
    loss, S, repulsion, energy), wall time (s), the neighbour slots used."""

    structures: list
    S_initial: float
    S_final: float
    history: list
    wall_s: float
    n_nb: int = 4


def initial_state(tasks, omega0: float, volume_range, shape_strain: float, seed: int, d_min: float = 0.0,
                  attempts: int = 200):
    """(u (Σn, 3) Å, y (B, 5), z (B,), C0 (B, 3, 3)) of tasks (n atoms, copy): a cubic reference cell of volume n·Ω0,
    shape parameters uniform in ±1 (|shape component| ≤ tanh(1)·e), volume per atom uniform in ``volume_range``·Ω0,
    and atoms placed one by one at uniform fractional positions, each redrawn (up to ``attempts`` times; then the
    farthest draw) until it is at least 1.1 ``d_min`` (Å) from the atoms placed before and their periodic images,
    so that the repulsion starts at zero. Draws from ``SeedSequence([seed, 6, n, copy])``."""
    lo, hi = np.log(volume_range[0]), np.log(volume_range[1])
    d_rep = REPULSION_MARGIN * d_min
    images = np.array(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij")).reshape(3, -1).T
    us, ys, zs, cs = [], [], [], []
    for n, c in tasks:
        r = np.random.default_rng(np.random.SeedSequence([int(seed), ENTROPY_STREAM, int(n), int(c)]))
        C0 = np.eye(3) * (n * omega0) ** (1.0 / 3.0)
        y = r.uniform(-1.0, 1.0, size=5)
        v = r.uniform(*volume_range)
        t = np.clip((np.log(v) - lo) / (hi - lo), 1e-3, 1 - 1e-3) if hi > lo else 0.5
        z = np.log(t / (1.0 - t))
        cell = C0 @ np.asarray(deformation(jnp.asarray(y[None]), jnp.asarray([z]), shape_strain, (lo, hi)))[0]
        frac = np.zeros((0, 3))
        for _ in range(n):
            best, best_d = None, -1.0
            for _ in range(max(int(attempts), 1)):
                f = r.uniform(size=3)
                d = np.inf if not len(frac) else float(
                    np.linalg.norm(((frac[:, None, :] - f + images[None]) @ cell).reshape(-1, 3), axis=1).min())
                if d > best_d:
                    best, best_d = f, d
                if d >= d_rep:
                    break
            frac = np.vstack([frac, best])
        us.append(frac @ C0)
        ys.append(y)
        zs.append(z)
        cs.append(C0)
    return np.concatenate(us), np.array(ys), np.array(zs), np.array(cs)


def prepare(tasks, omega0: float, *, scales, d_min: float, volume_range=(0.8, 1.5), shape_strain: float = 0.3,
            repulsion: float = 30.0, energy_weight: float = 0.0, energy_reference: float = 0.0, temperature: float = 0.0,
            reference=None, seed: int = 0):
    """(initial parameters {u, y, z}, :class:`Problem`) of a batch of tasks ((n atoms, copy) pairs): the seeded
    starting structures of :func:`initial_state`, packed (atoms padded to a power of two, at least 8; reference
    descriptors (M, D) likewise). Arguments as :func:`optimise`."""
    sizes = [n for n, _ in tasks]
    n_atoms = sum(sizes)
    n_pad = power_of_two(n_atoms, 8)
    u, y, z, C0 = initial_state(tasks, omega0, volume_range, shape_strain, seed, d_min)
    species = np.full(n_pad, -1, np.int64)
    species[:n_atoms] = 0
    structure = np.zeros(n_pad, np.int64)
    structure[:n_atoms] = np.repeat(np.arange(len(tasks)), sizes)
    D = int(np.asarray(scales).shape[0])
    reference = np.zeros((0, D)) if reference is None else np.asarray(reference, float)
    m_pad = power_of_two(len(reference), 8)
    problem = Problem(cells0=jnp.asarray(C0), species=jnp.asarray(species), structure=jnp.asarray(structure),
                      scales=jnp.asarray(np.asarray(scales, float)),
                      reference=jnp.asarray(np.pad(reference, ((0, m_pad - len(reference)), (0, 0)))),
                      reference_mask=jnp.asarray(np.arange(m_pad) < len(reference)),
                      reference_terms=jnp.asarray(fixed_terms(np.pad(reference, ((0, m_pad - len(reference)), (0, 0))),
                                                              np.arange(m_pad) < len(reference), temperature)),
                      shape_strain=float(shape_strain),
                      log_volume_range=(float(np.log(volume_range[0])), float(np.log(volume_range[1]))),
                      d_min=float(d_min), repulsion=float(repulsion), energy_weight=float(energy_weight),
                      energy_reference=float(energy_reference), temperature=float(temperature))
    params = {"u": jnp.asarray(np.pad(u, ((0, n_pad - n_atoms), (0, 0)))), "y": jnp.asarray(y), "z": jnp.asarray(z)}
    return params, problem


def optimise(tasks, element: str, omega0: float, *, mtp, scales, d_min: float, volume_range=(0.8, 1.5),
             shape_strain: float = 0.3, steps: int = 200, learning_rate: float = 0.05, repulsion: float = 30.0,
             energy_weight: float = 0.0, oracle=None, energy_reference: float = 0.0, temperature: float = 0.0,
             reference=None, seed: int = 0, n_nb: int | None = None) -> Result:
    """Maximise the entropy of one batch of structures (tasks: (n atoms, copy) pairs), jointly, by Adam.

    ``omega0`` (Å³/atom) with ``volume_range`` (fractions of it) bounds the volume per atom; ``shape_strain`` the
    shape's log-strain components. ``mtp``, ``scales``: the descriptor (:func:`descriptor_mtp`,
    :func:`calibration_scales`); ``d_min`` (Å): the minimum distance (the repulsion acts below 1.1 d_min);
    ``reference`` (M, D): fixed descriptors of earlier structures (their atoms count in S); ``energy_weight``
    (1/eV) > 0 needs ``oracle`` (a JAX potential) and adds w·(Ē − ``energy_reference``) (eV/atom); ``temperature``:
    soft-min (0: exact). ``n_nb``: starting neighbour slots (default :func:`expected_neighbours` at the smallest
    volume; grown as needed). Returns the final structures (ase.Atoms of ``element``, positions wrapped) and S before
    and after (S of the batch ∪ reference).
    """
    from ase import Atoms

    from ..evaluate import types_for_symbols
    from ..potential import Potential

    if energy_weight > 0 and not isinstance(oracle, Potential):
        raise MtpjaxError("ENTROPY: energy_weight > 0 needs a JAX oracle (mtpjax.potential.Potential), "
                          f"not {type(oracle).__name__}")
    if energy_weight == 0:
        oracle = None
    t0 = time.perf_counter()
    sizes = [n for n, _ in tasks]
    if sum(sizes) + (0 if reference is None else len(reference)) < 2:
        raise MtpjaxError("ENTROPY: the entropy needs at least two atoms (a batch of one 1-atom structure has none)")
    params, problem = prepare(tasks, omega0, scales=scales, d_min=d_min, volume_range=volume_range,
                              shape_strain=shape_strain, repulsion=repulsion, energy_weight=energy_weight,
                              energy_reference=energy_reference, temperature=temperature, reference=reference, seed=seed)
    n_pad = problem.species.shape[0]
    oracle_species = 0 if oracle is None else int(types_for_symbols([element], getattr(oracle, "species", None),
                                                                     oracle.n_species, "ENTROPY")[0])
    radius = max(mtp.cutoff, REPULSION_MARGIN * d_min, oracle.cutoff if oracle is not None else 0.0)
    if n_nb is None:
        n_nb = expected_neighbours(radius, volume_range[0] * omega0)
    lists = NeighbourLists(radius, sizes, n_nb)
    opt = _adam(float(learning_rate))
    opt_state = opt.init(params)
    history = []

    def evaluate(params):
        pos, cells = jax.device_get(geometry(params, problem.cells0, problem.structure,
                                             shape_strain=problem.shape_strain, log_volume_range=problem.log_volume_range))
        nbrs = Neighbours(*map(jnp.asarray, lists(np.asarray(pos), np.asarray(cells), n_pad)))
        return value_and_grad(params, nbrs, mtp, oracle, oracle_species, problem), pos, cells

    for step in range(int(steps) + 1):
        ((loss, aux), grads), pos, cells = evaluate(params)
        loss, aux = float(loss), {k: float(v) for k, v in aux.items()}
        if not np.isfinite(loss):
            raise MtpjaxError(f"ENTROPY: the objective became {loss} at step {step} (aux {aux})")
        history.append({"step": step, "loss": loss, **aux})
        if step == steps:
            break
        params, opt_state = _adam_step(opt, grads, opt_state, params)
    out = []
    for b, (n, c) in enumerate(tasks):
        o = lists.offsets[b]
        a = Atoms(f"{element}{n}", positions=np.asarray(pos[o:o + n]), cell=np.asarray(cells[b]), pbc=True)
        a.wrap()
        out.append(a)
    return Result(out, history[0]["S"], history[-1]["S"], history, time.perf_counter() - t0, lists.n_nb)


def tasks_of(n_atoms, copies: int) -> list[tuple[int, int]]:
    """(n, copy) for every n in the inclusive range ``n_atoms`` and copy < ``copies``."""
    return [(n, c) for n in range(int(n_atoms[0]), int(n_atoms[1]) + 1) for c in range(int(copies))]


# ------------------------------------------------------------------------------------------------ the stage
def run_stage(cfg, oracle, oracle_id: dict, ref: dict, dmin: float, store, chunks, hook, recipe_version: int):
    """The ENTROPY stage of :func:`mtpjax.generate.pipeline.run`: ``(structures or Failures, stats)``.

    The (n, copy) tasks of ``cfg.entropy`` are cut into batches of ``batch_structures``, optimised in order by
    :func:`optimise`; the descriptors of the structures kept from earlier batches enter each batch's entropy as fixed
    points. Each batch is a checkpoint ``ENTROPY/<key>`` in ``store`` (:class:`mtpjax.generate.checkpoint.Store`),
    keyed by everything it depends on (seed, element, Ω0, d_min, the [entropy] table, the earlier batches' structures,
    the oracle when ``energy_weight`` > 0), so a resumed run recomputes only unfinished batches. Structures with atoms
    closer than ``dmin`` (Å) are discarded (``min_distance``).
    """
    from .checkpoint import content_hash
    from .structures import Failure, min_distance, tag

    e = cfg.entropy
    omega0, dnn = float(ref["omega0"]), float(ref["nn_distance"])
    cutoff = e.descriptor_cutoff * dnn
    mtp = descriptor_mtp(e.descriptor_level, cutoff, dmin, omega0, seed=cfg.seed)
    scales = calibration_scales(mtp, omega0, dnn, cfg.seed)
    todo = tasks_of(e.n_atoms, e.copies)
    batches = [todo[i:i + e.batch_structures] for i in range(0, len(todo), e.batch_structures)]
    uses_oracle = e.energy_weight > 0
    e_ref = float(ref.get("energy") or 0.0)
    out, kept, refs, per_batch = [], [], [], []
    for k, batch in enumerate(batches):
        key = content_hash("ENTROPY", recipe_version, cfg.seed, cfg.element, omega0, dmin, repr(e),
                           oracle_id if uses_oracle else None, e_ref if uses_oracle else None, batch, kept)
        got = store.load("ENTROPY", key)
        if got is None:
            res = optimise(batch, cfg.element, omega0, mtp=mtp, scales=scales, d_min=dmin, volume_range=e.volume_range,
                           shape_strain=e.shape_strain, steps=e.steps, learning_rate=e.learning_rate,
                           repulsion=e.repulsion, energy_weight=e.energy_weight, oracle=oracle, energy_reference=e_ref,
                           temperature=e.temperature, reference=np.concatenate(refs) if refs else None, seed=cfg.seed)
            # (neighbour slots start afresh in every batch: padding changes the last bits, and a resumed run must
            # give the same bits as an uninterrupted one)
            structures = []
            for (n, c), a in zip(batch, res.structures):
                ident, index = f"n{n}-c{c}", len(out) + len(structures)
                d = min_distance(a, dmin)
                if d < dmin:
                    structures.append(Failure(index, f"ENTROPY/{ident}", "min_distance", f"atoms {d:.3f} Å apart (< {dmin:.3f} Å)"))
                    continue
                a.info.update(key=np.array([0, n, c]), entropy_batch=k)
                structures.append(tag(a, "ENTROPY", ident, "", cfg.randspg.symprec))
            got = {"structures": structures, "S_initial": res.S_initial, "S_final": res.S_final, "wall_s": round(res.wall_s, 3),
                   "loss_initial": res.history[0]["loss"], "loss_final": res.history[-1]["loss"]}
            store.save("ENTROPY", key, got)
            chunks["ENTROPY:computed"] += 1
            hook("chunk_done", stage="ENTROPY", chunk=k)
        else:
            chunks["ENTROPY:cached"] += 1
        out += got["structures"]
        new = [a for a in got["structures"] if not isinstance(a, Failure)]
        kept += new
        if new:
            refs.append(descriptors(mtp, new, scales))
        per_batch.append({k2: got[k2] for k2 in ("S_initial", "S_final", "wall_s")})
    q = np.concatenate(refs) if refs else np.zeros((0, len(scales)))
    stats = {"batches": per_batch, "descriptor": {"level": e.descriptor_level, "cutoff": round(cutoff, 6), "dimension": len(scales)},
             "S_set": float(entropy(q)) if len(q) > 1 else None, "optimiser": "optax.adam"}
    return out, stats
