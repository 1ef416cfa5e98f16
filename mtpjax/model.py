"""The Moment Tensor Potential as an equinox module and pure JAX energy functions.

Units: Å, eV, eV/Å; the virial is in eV (MLIP's ``PlusStress`` = -V·σ = -dE/dε).

    V_i = species_coeffs[z_i] + sum_k moment_coeffs[k] * B_k(i),     E = sum_i V_i

with B_k the scalar contractions of the moments M_{mu,nu}(i) = sum_j f_mu(r_ij) u_ij^{(x)nu} and the
Chebyshev radial functions f_mu(r) = sum_b c_{mu b} * scaling * T_b(xi(r)) * (R_cut - r)^2 (see
``shared/docs/mtp-spec.md``). Forces and the virial come from ``jax.grad`` of the energy.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .contraction import ContractionPlan, basic_moments, scalar_basis
from .errors import FormatError
from .io import eqxfile
from .neighbors import Neighbours
from .potential import (  # noqa: F401  (the generic energy functions, re-exported for MTP users)
    energy,
    energy_forces_virial,
    energy_forces_virial_sites,
    pair_vectors,
    site_energies,
    virial_to_plus_stress,
)


class MTP(eqx.Module):
    """MTP parameters (a pytree) and its static basis.

    Leaves: ``radial_coeffs`` (S, S, K, R) indexed [central type, neighbour type, mu, beta] (not symmetrised),
    ``species_coeffs`` (S,) eV, ``moment_coeffs`` (n_B,) eV, ``scaling``, ``min_dist`` and ``max_dist`` (Å).
    Static: ``plan`` (the basis index arrays), ``species`` (optional element symbol of each type).
    """

    radial_coeffs: jax.Array
    species_coeffs: jax.Array
    moment_coeffs: jax.Array
    scaling: jax.Array
    min_dist: jax.Array
    max_dist: jax.Array
    plan: ContractionPlan = eqx.field(static=True)
    species: tuple | None = eqx.field(static=True, default=None)

    @property
    def n_species(self) -> int:
        return self.radial_coeffs.shape[0]

    @property
    def cutoff(self) -> float:
        """The cutoff radius R_cut in Å (a host float, for neighbour lists)."""
        return float(self.max_dist)

    @property
    def radial_basis_size(self) -> int:
        return self.radial_coeffs.shape[-1]

    def site_energies_from_pairs(self, R, types, nbrs: Neighbours, **kw):
        """Site energies (N,) in eV from pair vectors (the :class:`mtpjax.potential.Potential` protocol)."""
        return site_energies_from_pairs(self, R, types, nbrs, **kw)


# ----------------------------------------------------------------------------------------------------
# per-chunk site energies (atoms on the trailing axis inside the contraction)


def radial_basis_values(mtp: MTP, r, inside):
    """Q_beta(r) = scaling * T_beta(xi(r)) * (R_cut - r)^2, shape (R, ...) for distances r (...) in Å; zero where
    ``inside`` is False."""
    rmin, rcut = mtp.min_dist, mtp.max_dist
    xi = (2.0 * r - (rmin + rcut)) / (rcut - rmin)
    R = mtp.radial_basis_size
    cheb = [jnp.ones_like(xi), xi]
    for _ in range(2, R):
        cheb.append(2.0 * xi * cheb[-1] - cheb[-2])
    env = jnp.where(inside, mtp.scaling * (rcut - r) ** 2, 0.0)
    return jnp.stack(cheb[:R]) * env


def pair_geometry(mtp: MTP, R, mask):
    """(distances r, unit vectors u (3, ...), inside) of pair vectors R (..., 3); pairs outside the cutoff or masked
    get a dummy unit vector and ``inside`` False."""
    rcut = mtp.max_dist
    Rt = jnp.moveaxis(R, -1, 0)
    inside = mask & (jnp.sum(Rt * Rt, axis=0) < rcut * rcut)
    Rt = jnp.where(inside, Rt, jnp.array([1.0, 0.0, 0.0], R.dtype).reshape((3,) + (1,) * (Rt.ndim - 1)))
    r = jnp.sqrt(jnp.sum(Rt * Rt, axis=0))
    return r, Rt / r, inside


def radial_values(mtp: MTP, r, inside, ti, tj):
    """f_mu(r_ij) (K, c, n_nb) for distances r (c, n_nb), central types ti (c,), neighbour types tj (c, n_nb)."""
    Q = radial_basis_values(mtp, r, inside)  # (R, c, n_nb)
    S = mtp.n_species
    if S == 1:
        return jnp.einsum("kb,bin->kin", mtp.radial_coeffs[0, 0], Q)
    oh_i = jax.nn.one_hot(ti, S, dtype=Q.dtype)  # (c, S); padded atoms (-1) -> zeros
    oh_j = jax.nn.one_hot(tj, S, dtype=Q.dtype)  # (c, n_nb, S)
    Ci = jnp.einsum("is,szkb->izkb", oh_i, mtp.radial_coeffs)  # (c, S, K, R)
    return jnp.einsum("inz,bin,izkb->kin", oh_j, Q, Ci)


def _chunk_basic_moments(mtp: MTP, R, ti, tj, mask, use_custom_vjp: bool):
    """Basic moments (n_basic, c) of a chunk of c atoms with pair vectors R (c, n_nb, 3).

    Pairs sit on the trailing (contiguous) axes: u (3, c, n_nb), f (K, c, n_nb), monomials (n_mono, c, n_nb).
    """
    r, u, inside = pair_geometry(mtp, R, mask)  # (c, n_nb), (3, c, n_nb)
    f = radial_values(mtp, r, inside, ti, tj)  # (K, c, n_nb)
    return basic_moments(mtp.plan, f, u, use_custom_vjp)


def _chunk_moment_energies(mtp: MTP, basic, use_custom_vjp: bool):
    """sum_k moment_coeffs[k] B_k (c,) from the basic moments (n_basic, c) of c atoms."""
    return mtp.moment_coeffs @ scalar_basis(mtp.plan, basic, use_custom_vjp)


#: CPU pair-stage chunks (see :func:`default_chunks`): the most atoms per chunk, the working set (bytes) a chunk is
#: kept within while 4 atoms fit in it, and the cap of the larger chunks taken when they do not (several threads).
PAIR_CHUNK = 24
PAIR_CHUNK_SMALL_BYTES = 384 << 10
PAIR_CHUNK_BYTES = 8 << 20
#: With one CPU thread: the working set of both stages' chunks (bytes) and the most atoms per chunk.
SERIAL_CHUNK_BYTES = 512 << 10
SERIAL_CHUNK = 64


def cpu_threads() -> int:
    """The CPU threads XLA can use in this process: 1 when ``XLA_FLAGS`` turns its multi-threading off, else the cores
    this process may run on (``taskset`` and cgroup pinning included)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if re.search(r"xla_cpu_multi_thread_eigen=false|intra_op_parallelism_threads=1\b", flags):
        return 1
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_chunks(plan: ContractionPlan, n_atoms: int, n_nb: int, pair_chunk: int | None = None) -> tuple[int, int]:
    """Atoms per chunk for the pair stage (basic moments) and for the contraction stage.

    On CPU, as measured by ``scripts/bench_chunks.py`` (docs/benchmarks/chunks.md, levels 8-24, 18-106 neighbour
    slots, 432 and 4056 atoms), the pair stage's working set being ~4 n_mono n_nb doubles per atom (monomials and
    their cotangents):

    - with one thread (:func:`cpu_threads`: a process pinned to one core, or XLA's threads turned off), chunks of
      up to :data:`SERIAL_CHUNK` atoms within :data:`SERIAL_CHUNK_BYTES`: small chunks are the fastest there;
    - with several, the working set is kept within :data:`PAIR_CHUNK_SMALL_BYTES` while a chunk of 4 atoms fits in
      it (low levels, short lists); when it does not, small chunks are the slowest choice (XLA's threads get too
      little work each) and the chunk is :data:`PAIR_CHUNK` atoms, fewer where its working set would pass
      :data:`PAIR_CHUNK_BYTES` (level 24 at long cutoffs). Never more than :data:`PAIR_CHUNK` atoms.

    The contraction stage is kept near 512 KiB (n_moments doubles per atom), a multiple of the pair chunk. Chunks
    are multiples of 4 atoms (one AVX2 float64 vector), split evenly over the atoms. ``pair_chunk`` overrides the
    pair stage's rule. On accelerators, one chunk of all atoms for both.
    """
    n = max(n_atoms, 1)
    if jax.default_backend() != "cpu":
        return n, n

    def fit(bytes_per_atom, budget, c_max):
        c_max = max(4, int(np.clip(budget // max(bytes_per_atom, 1), 4, c_max)) // 4 * 4)
        c = -(-n // -(-n // c_max))  # equal chunks, least padding
        return min(-(-c // 4) * 4, -(-n // 4) * 4)

    pair_bytes = 8 * 4 * len(plan.monomials) * max(n_nb, 1)
    if pair_chunk is not None:
        c_pairs = min(int(pair_chunk), n)
    elif cpu_threads() == 1:
        c_pairs = fit(pair_bytes, SERIAL_CHUNK_BYTES, SERIAL_CHUNK)
    else:
        small = 4 * pair_bytes <= PAIR_CHUNK_SMALL_BYTES
        c_pairs = fit(pair_bytes, PAIR_CHUNK_SMALL_BYTES if small else PAIR_CHUNK_BYTES, PAIR_CHUNK)
    c_atoms = max(c_pairs, fit(8 * plan.n_moments, 1 << 19, 64) // c_pairs * c_pairs)
    return c_pairs, c_atoms


def _chunked_map(fn, xs, c):
    """fn over chunks of c atoms of the arrays xs (leading axis: atoms, a multiple of c); results concatenated."""
    n = jax.tree.leaves(xs)[0].shape[0]
    if n == c:
        return fn(*xs)[None]
    return jax.lax.map(lambda a: fn(*a), jax.tree.map(lambda x: x.reshape((n // c, c) + x.shape[1:]), xs))


def site_energies_from_pairs(mtp: MTP, R, species, nbrs: Neighbours, *, chunk: int | tuple | None = None, use_custom_vjp: bool = True):
    """Site energies V_i (eV), shape (N,), from pair vectors R (N, n_nb, 3). Species -1 marks padding atoms.

    ``chunk``: atoms per chunk, one int for both stages or (pair stage, contraction stage); default
    :func:`default_chunks`.
    """
    n, n_nb = R.shape[0], R.shape[1]
    if chunk is None:
        c_pairs, c_atoms = default_chunks(mtp.plan, n, n_nb)
    elif isinstance(chunk, int):
        c_pairs = c_atoms = chunk
    else:
        c_pairs, c_atoms = chunk
    if c_atoms % c_pairs:
        raise ValueError(f"the contraction chunk ({c_atoms}) must be a multiple of the pair chunk ({c_pairs})")
    species = jnp.asarray(species)
    tj = species[nbrs.index]
    mask = nbrs.mask & (species >= 0)[:, None]
    ti = species
    pad = -n % c_atoms
    if pad:
        R = jnp.pad(R, ((0, pad), (0, 0), (0, 0)))
        tj = jnp.pad(tj, ((0, pad), (0, 0)))
        mask = jnp.pad(mask, ((0, pad), (0, 0)))
        ti = jnp.pad(species, (0, pad), constant_values=-1)
    n_pad = n + pad
    basic = _chunked_map(lambda *a: _chunk_basic_moments(mtp, *a, use_custom_vjp), (R, ti, tj, mask), c_pairs)
    basic = jnp.moveaxis(basic, 1, 0).reshape(-1, n_pad)  # (n_basic, atoms)
    basic = jnp.moveaxis(basic.reshape(-1, n_pad // c_atoms, c_atoms), 1, 0)  # (chunks, n_basic, c_atoms)
    if n_pad == c_atoms:
        V = _chunk_moment_energies(mtp, basic[0], use_custom_vjp)
    else:
        V = jax.lax.map(lambda b: _chunk_moment_energies(mtp, b, use_custom_vjp), basic)
    V = V.reshape(-1)[:n] + jax.nn.one_hot(species, mtp.n_species, dtype=R.dtype) @ mtp.species_coeffs
    return jnp.where(species >= 0, V, 0.0)


# ----------------------------------------------------------------------------------------------------
# construction


def mtp_from_arrays(
    *,
    radial_coeffs,
    species_coeffs,
    moment_coeffs,
    scaling,
    min_dist,
    max_dist,
    alpha_index_basic,
    alpha_index_times,
    alpha_moment_mapping,
    alpha_moments_count,
    species=None,
) -> MTP:
    """Build an :class:`MTP` from MLIP's arrays (radial_coeffs shaped (S, S, K, R))."""
    rc = jnp.asarray(radial_coeffs, dtype=jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    plan = ContractionPlan.from_arrays(alpha_index_basic, alpha_index_times, alpha_moment_mapping, alpha_moments_count, rc.shape[2])
    dt = rc.dtype
    return MTP(
        radial_coeffs=rc,
        species_coeffs=jnp.asarray(species_coeffs, dt),
        moment_coeffs=jnp.asarray(moment_coeffs, dt),
        scaling=jnp.asarray(scaling, dt),
        min_dist=jnp.asarray(min_dist, dt),
        max_dist=jnp.asarray(max_dist, dt),
        plan=plan,
        species=tuple(species) if species is not None else None,
    )


def mtp_from_mtpfile(f, species=None) -> MTP:
    """An :class:`MTP` from a parsed, trained :class:`mtpjax.io.MTPFile`."""
    from .errors import MtpjaxError

    if not f.is_trained:
        raise MtpjaxError("the potential is an untrained template (no radial, species or moment coefficients): fit it first")
    if f.radial_basis_type != "RBChebyshev":
        raise MtpjaxError(f"radial basis {f.radial_basis_type!r} is not supported (only RBChebyshev)")
    return mtp_from_arrays(
        radial_coeffs=f.radial_coeffs,
        species_coeffs=f.species_coeffs,
        moment_coeffs=f.moment_coeffs,
        scaling=f.scaling,
        min_dist=f.min_dist,
        max_dist=f.max_dist,
        alpha_index_basic=f.alpha_index_basic,
        alpha_index_times=f.alpha_index_times,
        alpha_moment_mapping=f.alpha_moment_mapping,
        alpha_moments_count=f.alpha_moments_count,
        species=species,
    )


def mtp_to_mtpfile(mtp: MTP, potential_name: str = "MTP1m", tail: bytes = b""):
    """The :class:`mtpjax.io.MTPFile` of an :class:`MTP` (for :func:`mtpjax.io.write_mtp`)."""
    from .io import MTPFile

    basic, times, mapping, nm = mtp.plan.source
    S, _, K, R = mtp.radial_coeffs.shape
    return MTPFile(
        potential_name=potential_name,
        scaling=float(mtp.scaling),
        species_count=S,
        min_dist=float(mtp.min_dist),
        max_dist=float(mtp.max_dist),
        radial_basis_size=R,
        radial_funcs_count=K,
        radial_coeffs=np.asarray(mtp.radial_coeffs, dtype=np.float64),
        alpha_moments_count=int(nm),
        alpha_index_basic=basic,
        alpha_index_times=times,
        alpha_moment_mapping=mapping,
        species_coeffs=np.asarray(mtp.species_coeffs, dtype=np.float64),
        moment_coeffs=np.asarray(mtp.moment_coeffs, dtype=np.float64),
        tail=tail,
    )


# ----------------------------------------------------------------------------------------------------
# mtpjax's own potential format (``.mtpjax``; also importable from :mod:`mtpjax.io.native`): one JSON header
# line (format version, basis index arrays, species, free-form metadata), then the equinox-serialised parameters
# bit for bit, so a saved MTP loads back exactly.

NATIVE_FORMAT = "mtpjax-potential"
NATIVE_VERSION = 1
NATIVE_SUFFIX = ".mtpjax"


def write_native(mtp: MTP, path, metadata: dict | None = None) -> None:
    """Write an :class:`MTP` as ``.mtpjax`` (atomically, :mod:`mtpjax.io.eqxfile`) with optional JSON-serialisable
    ``metadata``."""
    basic, times, mapping, nm = mtp.plan.source
    header = {
        "species": list(mtp.species) if mtp.species else None,
        "radial_coeffs_shape": list(mtp.radial_coeffs.shape),
        "n_basis": int(mtp.moment_coeffs.shape[0]),
        "alpha_moments_count": int(nm),
        "alpha_index_basic": np.asarray(basic).tolist(),
        "alpha_index_times": np.asarray(times).tolist(),
        "alpha_moment_mapping": np.asarray(mapping).tolist(),
        "metadata": metadata or {},
    }
    eqxfile.write(path, NATIVE_FORMAT, NATIVE_VERSION, header, mtp)


def read_native(path, species=None):
    """Read a ``.mtpjax`` file: returns (MTP, metadata dict). ``species`` overrides the stored element list.
    Raises :class:`mtpjax.errors.FormatError` naming the file for anything but an intact ``.mtpjax`` file."""

    def like(header):
        S, _, K, R = header["radial_coeffs_shape"]
        return mtp_from_arrays(
            radial_coeffs=np.zeros((S, S, K, R)),
            species_coeffs=np.zeros(S),
            moment_coeffs=np.zeros(header["n_basis"]),
            scaling=1.0,
            min_dist=0.0,
            max_dist=1.0,
            alpha_index_basic=np.asarray(header["alpha_index_basic"], dtype=np.int64).reshape(-1, 4),
            alpha_index_times=np.asarray(header["alpha_index_times"], dtype=np.int64).reshape(-1, 4),
            alpha_moment_mapping=np.asarray(header["alpha_moment_mapping"], dtype=np.int64),
            alpha_moments_count=header["alpha_moments_count"],
            species=species if species is not None else header["species"],
        )

    header, mtp = eqxfile.read(Path(path), NATIVE_FORMAT, NATIVE_VERSION, like, what="an mtpjax potential")
    return mtp, header.get("metadata", {})


def load_mtp(path, species=None) -> MTP:
    """Read a trained potential: MLIP's ``.mtp``/``.almtp`` or mtpjax's ``.mtpjax``. ``species``: element symbol of
    each type (optional)."""
    from .errors import MtpjaxError
    from .io import read_mtp

    if str(path).endswith(NATIVE_SUFFIX):
        return read_native(path, species)[0]

    try:
        return mtp_from_mtpfile(read_mtp(path), species=species)
    except MtpjaxError as err:
        if str(path) in str(err):
            raise
        raise type(err)(f"{path}: {err}") from err


def save_mtp(mtp: MTP, path, potential_name: str = "MTP1m", metadata: dict | None = None) -> None:
    """Write an :class:`MTP`: as mtpjax's own ``.mtpjax`` (exact, with ``metadata``) when ``path`` ends so, else as an
    MLIP ``.mtp``/``.almtp`` text file (readable by MLIP and LAMMPS-MLIP)."""
    from .io import write_mtp

    if str(path).endswith(NATIVE_SUFFIX):
        return write_native(mtp, path, metadata)

    write_mtp(mtp_to_mtpfile(mtp, potential_name), path)
