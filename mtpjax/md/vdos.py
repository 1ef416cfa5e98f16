"""Phonon density of states at finite temperature from MD: the vibrational DOS (VDOS) from the velocity
autocorrelation function, against the 0 K harmonic DOS of phonopy, for any JAX potential (MTP and oracle through the
same code).

The VDOS of N atoms (velocities v_i(t), masses m_i) is the Fourier transform of the mass-weighted velocity
autocorrelation function C(τ) = Σ_i m_i ⟨v_i(t)·v_i(t + τ)⟩_t:

    g(ν) = (2 · 3N / C(0)) ∫ C(τ) w(τ) cos(2πντ) dτ   (τ over −τ_max..τ_max, ν ≥ 0 in THz),

with a window w (Hann by default, w(τ) = ½(1 + cos πτ/τ_max)) that trades resolution (about 1/τ_max) for leakage.
The normalisation makes the trapezoid integral over 0..ν_Nyquist exactly 3N on the discrete grid. In equipartition
every mode carries kT/2 of kinetic energy on average, so g counts modes, and in the harmonic limit g is the phonon
DOS of the simulated cell (its commensurate q-points), weighted by the energy each mode happens to carry in the run.
dynasor (PyPI; not installed here, no internet) computes the same velocity correlation functions and spectra from a
trajectory; numpy's FFT is enough for this one.

- :func:`vacf`, :func:`vdos`, :func:`first_moment`: the analysis of a (frames, N, 3) velocity array;
- :func:`make_sampler`, :func:`sample_velocities`: an NVE run (the integrator of :func:`mtpjax.md.make_integrator`,
  jax-md's velocity Verlet) in a jitted ``lax.scan`` that records the velocities every ``every`` steps
  (``run_md``'s callback sees log rows only); the neighbour list is the one of :mod:`mtpjax.md.energy`,
  re-allocated outside jit on overflow;
- :func:`harmonic_phonopy`, :func:`harmonic_dos`, :func:`cell_modes`: 0 K force constants of a cell by phonopy's
  finite displacements with mtpjax's ASE calculator, the mesh DOS, and the modes of the cell itself (its Γ point);
- :func:`finite_temperature_dos`: per temperature, Langevin NVT equilibration (:func:`mtpjax.md.run_md`; optionally
  NPT first, then the mean cell), NVE sampling in ``segments`` independent pieces, the averaged VDOS on a frequency
  grid, and the harmonic DOS on the same grid.

Units: THz (frequencies), K, fs (times), eV, Å, amu; velocities in Å/fs.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import MtpjaxError

#: sqrt(eV / (Å² amu)) / 2π in THz: the frequency of a force constant k (eV/Å²) on a mass m (amu) is
#: sqrt(k/m) × this.
EV_A2_AMU_TO_THZ = float(np.sqrt(1.602176634e-19 / (1e-20 * 1.66053906660e-27)) / (2 * np.pi) / 1e12)
#: The windows of :func:`vdos`.
WINDOWS = ("hann", "none")


class VDOSError(MtpjaxError):
    """Bad input to the VDOS analysis or a failed sampling run."""


# ----------------------------------------------------------------------------------------------------------------
# the analysis


def vacf(velocities, masses, max_lag: int) -> np.ndarray:
    """The mass-weighted velocity autocorrelation C(τ) = Σ_i m_i ⟨v_i(t)·v_i(t+τ)⟩_t for lags τ = 0..max_lag−1 frames
    (amu·(Å/fs)² for velocities in Å/fs), averaged over all time origins (each lag over the frames − τ origins it
    has), by zero-padded FFT. ``velocities``: (frames, N, 3); ``masses``: (N,) amu."""
    v = np.asarray(velocities, dtype=np.float64)
    m = np.asarray(masses, dtype=np.float64)
    if v.ndim != 3 or v.shape[2] != 3 or m.shape != (v.shape[1],):
        raise VDOSError(f"vacf: velocities (frames, N, 3) and masses (N,) expected, got {v.shape} and {m.shape}")
    n = v.shape[0]
    if not 1 <= max_lag <= n:
        raise VDOSError(f"vacf: max_lag must be within 1..frames ({n}), got {max_lag}")
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(v * np.sqrt(m)[None, :, None], n=nfft, axis=0)
    c = np.fft.irfft(np.sum(np.abs(f) ** 2, axis=(1, 2)), n=nfft)[:max_lag]
    return c / (n - np.arange(max_lag))


def window(name: str, n: int) -> np.ndarray:
    """The one-sided window w(τ), τ = 0..n−1 frames: ``hann`` ½(1 + cos πτ/n) or ``none`` (1)."""
    if name == "hann":
        return 0.5 * (1.0 + np.cos(np.pi * np.arange(n) / n))
    if name == "none":
        return np.ones(n)
    raise VDOSError(f"unknown window {name!r}; choose one of {', '.join(WINDOWS)}")


def vdos(velocities, masses, dt: float, *, max_lag: int | None = None, window_name: str = "hann", pad: int = 4,
         n_modes: float | None = None):
    """``(frequencies THz, g states/THz)`` of a velocity series (frames, N, 3) sampled every ``dt`` fs (see the module
    docstring): ν = 0..1/(2 dt) on a grid of spacing 1/(pad·2·max_lag·dt), normalised so that the trapezoid integral
    over the grid is ``n_modes`` (default 3N). ``max_lag`` (frames; default a quarter of the series): the longest lag
    of the correlation, i.e. the resolution (Hann: about 1/(max_lag·dt) full width)."""
    v = np.asarray(velocities, dtype=np.float64)
    if not dt > 0:
        raise VDOSError(f"vdos: the sampling interval must be > 0 fs, got {dt}")
    max_lag = max(2, v.shape[0] // 4) if max_lag is None else int(max_lag)
    c = vacf(v, masses, max_lag) * window(window_name, max_lag)
    if not c[0] > 0:
        raise VDOSError("vdos: the velocities are all zero (C(0) = 0)")
    nfft = max(2 * max_lag, int(pad) * 2 * max_lag)
    sym = np.zeros(nfft)
    sym[:max_lag] = c
    sym[nfft - max_lag + 1:] = c[1:][::-1]
    spec = np.fft.rfft(sym).real  # C(0) + 2 Σ C(τ) w(τ) cos(2πkτ/nfft)
    freq = np.fft.rfftfreq(nfft, d=dt) * 1e3  # 1/fs -> THz
    n_modes = 3.0 * v.shape[1] if n_modes is None else float(n_modes)
    # Σ_{k=0}^{nfft-1} spec_k = nfft·C(0) and spec is symmetric, so its one-sided trapezoid integral is C(0)·nfft·Δν/2
    g = spec * (2.0 * n_modes / (c[0] * nfft * (freq[1] - freq[0])))
    return freq, g


def first_moment(frequencies, dos, fmin: float = 0.0) -> float:
    """⟨ν⟩ = ∫ ν g dν / ∫ g dν (THz) over ν ≥ ``fmin``, trapezoid rule."""
    f, g = np.asarray(frequencies, float), np.asarray(dos, float)
    keep = f >= fmin
    return float(np.trapezoid(f[keep] * g[keep], f[keep]) / np.trapezoid(g[keep], f[keep]))


def on_grid(frequencies, dos, grid) -> np.ndarray:
    """A DOS resampled (linearly) onto ``grid`` (THz); zero outside its range."""
    return np.interp(np.asarray(grid, float), np.asarray(frequencies, float), np.asarray(dos, float), left=0.0, right=0.0)


# ----------------------------------------------------------------------------------------------------------------
# sampling


@dataclass
class Sample:
    """An NVE sampling run: ``velocities`` (frames, N, 3) Å/fs every ``dt`` fs; ``masses`` (N,) amu; ``atoms``: the
    final frame (positions, momenta); ``temperature``: the mean kinetic temperature (K) of the frames;
    ``energy_drift``: max |E(t) − E(0)| per atom over the chunk ends (eV/atom); ``reallocations``, ``wall_s``."""

    velocities: np.ndarray
    masses: np.ndarray
    dt: float
    atoms: object
    temperature: float
    energy_drift: float
    reallocations: int = 0
    wall_s: float = 0.0


def make_sampler(potential, atoms, *, timestep: float = 2.0, every: int = 5, chunk_frames: int = 200, species=None,
                 skin: float | None = None, capacity_multiplier: float | None = None, **kw):
    """``sample(atoms, steps) -> Sample``: NVE MD (jax-md's velocity Verlet through :func:`mtpjax.md.make_integrator`)
    of ``atoms`` (an ``ase.Atoms`` like the one given here, with momenta: ``atoms.get_momenta()``, e.g.
    ``run_md(...).atoms``) for ``steps`` steps of ``timestep`` fs, recording the velocities every ``every`` steps
    (``steps // every`` frames, sampling interval ``every × timestep`` fs). The steps run in a jitted ``lax.scan`` of
    ``chunk_frames`` frames, compiled once per sampler (reuse it across segments and temperatures); after each chunk
    the neighbour list's overflow flag is checked (re-allocation outside jit and the chunk again) and the frame must
    be finite. ``kw`` goes to :func:`mtpjax.md.make_integrator`."""
    import ase.units
    import jax
    import jax.numpy as jnp

    from .integrators import make_integrator, masses_of

    if every < 1 or chunk_frames < 1:
        raise VDOSError(f"make_sampler: every and chunk_frames must be >= 1, got {every}, {chunk_frames}")
    integ, neighbor_fn = make_integrator(potential, atoms, "nve", timestep=timestep, temperature=0.0, species=species,
                                         skin=skin, capacity_multiplier=capacity_multiplier, **kw)

    def run(state, nbrs, frames: int):
        def frame(carry, _):
            def body(_, c):
                s, nb = c
                s = integ.step(s, nb)
                return s, neighbor_fn.update(s.position, nb, cell=integ.cell(s, nb))

            carry = jax.lax.fori_loop(0, every, body, carry)
            return carry, carry[0].momentum

        (s, nb), p = jax.lax.scan(frame, (state, nbrs), None, length=frames)
        return s, nb, p, integ.conserved(s, nb)

    run = jax.jit(run, static_argnums=2)
    conserved = jax.jit(integ.conserved)
    capacity = [0, 0]  # the widest Verlet and candidate lists so far: one compiled shape for all samples

    def sample(atoms, steps: int) -> Sample:
        if steps < every:
            raise VDOSError(f"sample_velocities: need steps >= every ({every}), got {steps}")
        t0 = time.perf_counter()
        mass = masses_of(atoms)
        R = jnp.asarray(atoms.positions, jnp.float64)
        cell = jnp.asarray(atoms.cell.array, jnp.float64)
        nbrs = neighbor_fn.allocate(R, cell=cell)
        if capacity[0] > nbrs.capacity or capacity[1] > nbrs.candidate_capacity:
            nbrs = neighbor_fn.allocate(R, cell=cell, capacity=max(capacity[0], nbrs.capacity),
                                        candidate_capacity=max(capacity[1], nbrs.candidate_capacity))
        state = integ.init(jax.random.PRNGKey(0), R, cell, jnp.asarray(mass), nbrs,
                           momenta=jnp.asarray(atoms.get_momenta()))
        e0 = float(conserved(state, nbrs))
        n_frames = steps // every
        out, drift, realloc, done = [], 0.0, 0, 0
        while done < n_frames:
            n = min(chunk_frames, n_frames - done)
            for _ in range(8):
                new_state, new_nbrs, p, e = run(state, nbrs, n)
                if not bool(new_nbrs.overflow):
                    break
                realloc += 1
                nbrs = neighbor_fn.reallocate(state.position, cell, new_nbrs)
            else:
                raise VDOSError("sample_velocities: the neighbour list overflowed 8 times in one chunk")
            p = np.asarray(p)
            if not (np.isfinite(p).all() and np.isfinite(float(e))) or bool(new_nbrs.failed):
                raise VDOSError(f"sample_velocities: the NVE run became unstable within frames {done}..{done + n} "
                                "(lower the time step)")
            out.append(p)
            drift = max(drift, abs(float(e) - e0) / len(atoms))
            state, nbrs, done = new_state, new_nbrs, done + n
        capacity[:] = max(capacity[0], nbrs.capacity), max(capacity[1], nbrs.candidate_capacity)
        p = np.concatenate(out)
        vel = p / mass[None, :, None] * ase.units.fs  # Å per ASE time unit -> Å/fs
        temp = float(np.mean(np.sum(p**2 / mass[None, :, None], axis=(1, 2))) / (3 * len(atoms) * ase.units.kB))
        final = atoms.copy()
        final.calc = None
        final.positions = np.asarray(state.position)
        final.set_momenta(np.asarray(state.momentum))
        return Sample(vel, mass, every * timestep, final, temp, drift, realloc, time.perf_counter() - t0)

    return sample


def sample_velocities(potential, atoms, *, steps: int, timestep: float = 2.0, every: int = 5, **kw) -> Sample:
    """One NVE sampling run of ``steps`` steps (see :func:`make_sampler`, which takes ``kw``)."""
    return make_sampler(potential, atoms, timestep=timestep, every=every, **kw)(atoms, steps)


# ----------------------------------------------------------------------------------------------------------------
# the 0 K harmonic reference


def harmonic_phonopy(potential, atoms, *, supercell=(1, 1, 1), primitive_matrix="auto", displacement: float = 0.01):
    """A :class:`phonopy.Phonopy` with force constants of ``atoms`` (its unit cell; its positions must be an
    equilibrium, forces zero) × ``supercell``, by phonopy's finite displacements (``displacement`` Å) with forces
    from :func:`mtpjax.get_calculator` (eV/Å); masses are ``atoms.get_masses()`` (amu), frequencies THz.
    ``primitive_matrix``: phonopy's (``"auto"``: found by symmetry; ``"P"``: the cell itself). The full force
    constants (N·det(supercell), same, 3, 3) are ``ph.force_constants`` (:func:`cell_modes` takes them)."""
    from ase import Atoms
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    from ..oracles import get_calculator

    unit = PhonopyAtoms(symbols=list(atoms.get_chemical_symbols()), cell=np.asarray(atoms.cell.array),
                        scaled_positions=atoms.get_scaled_positions(), masses=list(atoms.get_masses()))
    with warnings.catch_warnings():  # phonopy 4 warns that "auto" is no longer v3's identity: asked for here
        warnings.filterwarnings("ignore", message="primitive_matrix defaulted")
        ph = Phonopy(unit, supercell_matrix=np.diag(supercell) if np.ndim(supercell) == 1 else supercell,
                     primitive_matrix=primitive_matrix)
    ph.generate_displacements(distance=displacement)
    calc = get_calculator(potential)
    forces = []
    for sc in ph.supercells_with_displacements:
        a = Atoms(sc.symbols, cell=sc.cell, positions=sc.positions, pbc=True)
        a.calc = calc
        forces.append(a.get_forces())
    ph.forces = np.array(forces)
    ph.produce_force_constants()
    ph.symmetrize_force_constants()
    return ph


def harmonic_dos(ph, grid, *, mesh=(12, 12, 12), sigma: float = 0.1, n_modes: float | None = None) -> np.ndarray:
    """phonopy's total DOS (Γ-centred ``mesh``, Gaussian smearing ``sigma`` THz) on ``grid`` (THz, evenly spaced),
    scaled to integrate to ``n_modes`` (default 3 × the atoms of phonopy's unit cell)."""
    grid = np.asarray(grid, float)
    ph.run_mesh(list(mesh), is_gamma_center=True)
    pitch = float(grid[1] - grid[0])
    ph.run_total_dos(sigma=sigma, freq_min=float(grid[0]) - pitch, freq_max=float(grid[-1]) + pitch, freq_pitch=pitch)
    d = ph.total_dos
    g = on_grid(d.frequency_points, d.dos, grid)
    n_modes = 3.0 * len(ph.unitcell) if n_modes is None else float(n_modes)
    return g * n_modes / (3.0 * len(ph.primitive))


def cell_modes(force_constants, masses):
    """The normal modes of a periodic cell from its full force constants Φ (N, N, 3, 3) eV/Å² (phonopy's
    ``force_constants`` with the cell as supercell): ``(frequencies (3N,) THz, eigenvectors (3N, 3N))``, columns
    the mass-weighted eigenvectors; imaginary modes come out negative."""
    fc = np.asarray(force_constants, float)
    n = fc.shape[0]
    m = np.repeat(np.asarray(masses, float), 3)
    d = fc.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n) / np.sqrt(np.outer(m, m))
    w2, vec = np.linalg.eigh(0.5 * (d + d.T))
    return np.sign(w2) * np.sqrt(np.abs(w2)) * EV_A2_AMU_TO_THZ, vec


# ----------------------------------------------------------------------------------------------------------------
# the study


@dataclass
class FiniteTemperatureDOS:
    """The VDOS per temperature on one frequency grid: ``frequencies`` (THz), ``dos`` {T (K): g (states/THz, ∫ = 3N)},
    ``harmonic`` (the 0 K phonopy DOS on the same grid, or None), ``mean_frequency`` {T: ⟨ν⟩ THz} (and ``"0K"``
    for the harmonic mesh DOS, ``"cell"`` for the plain mean of the 3N − 3 non-zero normal modes of the MD cell
    itself, the q-points MD samples: the harmonic limit of the MD's ⟨ν⟩ with equal mode energies), ``temperature``
    {T: the measured mean NVE temperature, K}, ``energy_drift`` {T: eV/atom}, ``cell`` {T: the cell (3, 3) Å
    sampled}, ``wall_s`` {T: s}."""

    frequencies: np.ndarray
    dos: dict
    harmonic: np.ndarray | None = None
    mean_frequency: dict = field(default_factory=dict)
    temperature: dict = field(default_factory=dict)
    energy_drift: dict = field(default_factory=dict)
    cell: dict = field(default_factory=dict)
    wall_s: dict = field(default_factory=dict)
    n_atoms: int = 0


def mean_cell(log) -> np.ndarray:
    """The mean cell (3, 3) Å of the second half of an MD log's rows (a, b, c, angles; ASE's standard orientation)."""
    from ase.geometry import cellpar_to_cell

    rows = log[len(log) // 2:]
    par = np.mean([[r[k] for k in ("a_A", "b_A", "c_A", "alpha_deg", "beta_deg", "gamma_deg")] for r in rows], axis=0)
    return cellpar_to_cell(par)


def finite_temperature_dos(potential, atoms, temperatures, *, timestep: float = 2.0, equilibration: int = 2000,
                           steps: int = 10000, every: int = 5, segments: int = 1, resegment: int = 500,
                           max_lag_fs: float = 2000.0, window_name: str = "hann", frequencies=None,
                           harmonic: bool = True, mesh=(12, 12, 12), sigma: float = 0.1, pressure: float | None = None,
                           npt_steps: int = 4000, thermostat_time: float = 100.0, seed: int = 0, species=None,
                           progress: bool = False, **md_kw) -> FiniteTemperatureDOS:
    """The phonon DOS of ``potential`` on ``atoms`` (an ``ase.Atoms`` at a 0 K equilibrium; its cell is the MD cell)
    at each of ``temperatures`` (K), against the 0 K harmonic DOS.

    Per temperature: (optional, ``pressure`` in GPa) ``npt_steps`` of NPT (MTK, full cell) and then the mean cell of
    their second half with the positions scaled; ``equilibration`` steps of Langevin NVT (``thermostat_time`` fs;
    initial draw at 2T) with :func:`mtpjax.md.run_md`; then ``segments`` NVE runs of ``steps`` steps each
    (:func:`sample_velocities`, velocities every ``every`` steps), separated by ``resegment`` steps of Langevin that
    redraw the mode energies; the VDOS (:func:`vdos`, correlation up to ``max_lag_fs``) of the segments averaged.
    ``frequencies``: the grid (THz; default 0..1.4 × the harmonic maximum in 0.02 THz, or 0..20 THz). The harmonic
    DOS (:func:`harmonic_phonopy` on ``atoms``, primitive cell by symmetry, ``mesh``, smearing ``sigma`` THz) is
    scaled to 3N of ``atoms``. ``md_kw`` goes to :func:`mtpjax.md.run_md` and the NVE sampler (e.g. ``skin``)."""
    from .run import run_md

    temperatures = [float(t) for t in temperatures]
    if any(not t > 0 for t in temperatures):
        raise VDOSError(f"finite_temperature_dos: temperatures must be > 0 K, got {temperatures}")
    if segments < 1:
        raise VDOSError("finite_temperature_dos: segments must be >= 1")
    n = len(atoms)
    ph = harmonic_phonopy(potential, atoms) if harmonic else None
    if frequencies is None:
        if ph is not None:
            ph.run_mesh(list(mesh), is_gamma_center=True)
            fmax = 1.4 * float(np.max(ph.mesh.frequencies))
        else:
            fmax = 20.0
        frequencies = np.arange(0.0, fmax + 1e-9, 0.02)
    grid = np.asarray(frequencies, float)
    out = FiniteTemperatureDOS(grid, {}, n_atoms=n)
    if ph is not None:
        out.harmonic = harmonic_dos(ph, grid, mesh=mesh, sigma=sigma, n_modes=3 * n)
        out.mean_frequency["0K"] = first_moment(grid, out.harmonic)
        modes, _ = cell_modes(ph.force_constants, atoms.get_masses())
        out.mean_frequency["cell"] = float(np.mean(np.sort(modes)[3:]))
    dt_sample = every * timestep
    max_lag = max(2, int(round(max_lag_fs / dt_sample)))
    if steps // every < max_lag:
        raise VDOSError(f"finite_temperature_dos: {steps} NVE steps give {steps // every} frames, fewer than the "
                        f"{max_lag} lags of max_lag_fs = {max_lag_fs} fs")
    sampler = make_sampler(potential, atoms, timestep=timestep, every=every, species=species,
                           **{k: v for k, v in md_kw.items() if k in ("skin", "capacity_multiplier")})
    for k, temp in enumerate(temperatures):
        t0 = time.perf_counter()
        start = atoms.copy()
        start.calc = None
        common = dict(timestep=timestep, temperature=temp, thermostat_time=thermostat_time, species=species,
                      log_every=50, progress=progress, **md_kw)
        if pressure is not None:
            r = run_md(potential, start, ensemble="npt_mtk", steps=npt_steps, pressure=pressure, seed=seed + 1000 * k,
                       initial_temperature=2 * temp, **common)
            start = r.atoms.copy()
            start.calc = None
            start.set_cell(mean_cell(r.log), scale_atoms=True)
        r = run_md(potential, start, ensemble="nvt_langevin", steps=equilibration, seed=seed + 1000 * k + 1,
                   initial_temperature=2 * temp if pressure is None else None, **common)
        acc, temps, drift = np.zeros_like(grid), [], 0.0
        for s in range(segments):
            if s:
                r = run_md(potential, r.atoms, ensemble="nvt_langevin", steps=resegment, seed=seed + 1000 * k + 2 + s,
                           momenta=r.atoms.get_momenta(), **common)
            sample = sampler(r.atoms, steps)
            f, g = vdos(sample.velocities, sample.masses, sample.dt, max_lag=max_lag, window_name=window_name)
            acc += on_grid(f, g, grid)
            temps.append(sample.temperature)
            drift = max(drift, sample.energy_drift)
            r.atoms = sample.atoms
        out.dos[temp] = acc / segments
        out.mean_frequency[temp] = first_moment(grid, out.dos[temp])
        out.temperature[temp] = float(np.mean(temps))
        out.energy_drift[temp] = drift
        out.cell[temp] = np.asarray(start.cell.array)
        out.wall_s[temp] = time.perf_counter() - t0
    return out
