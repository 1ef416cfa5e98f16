"""The phonon DOS at finite temperature (mtpjax.md.vdos): the VACF analysis on analytic signals, the low-temperature
MD DOS of hcp Mg (Sun 2006 EAM) against the normal modes of the same cell from phonopy, and the softening with
temperature."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED, need

from mtpjax.errors import MtpjaxError
from mtpjax.md import vdos as V

MG_EAM = SHARED / "data" / "potentials" / "Mg_mm.eam.fs"


def test_vacf_against_a_direct_sum():
    """The FFT correlation equals the definition Σ_i m_i mean_t v_i(t)·v_i(t+τ), summed by hand."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(37, 4, 3))
    m = rng.uniform(1, 50, 4)
    c = V.vacf(v, m, 10)
    ref = [sum(m[i] * np.mean(np.sum(v[: 37 - t, i] * v[t:, i], axis=1)) for i in range(4)) for t in range(10)]
    np.testing.assert_allclose(c, ref, rtol=1e-12, atol=1e-12)


def test_vdos_of_harmonic_oscillators_peaks_and_counts():
    """Independent oscillators, analytic velocities: 4 atoms of mass 1 amu at 2.0 THz and 6 atoms of mass 40 amu at
    5.3 THz, each degree of freedom with the same mean kinetic energy (equipartition; random phases). The mass-weighted
    VDOS must peak at 2.0 and 5.3 THz (within the grid spacing) and hold 12 and 18 modes around them (2 %),
    30 = 3N in all: unweighted, the heavy atoms would carry 40× the light ones' weight."""
    rng = np.random.default_rng(1)
    dt, frames = 5.0, 8000  # fs; Nyquist 100 THz
    t = np.arange(frames) * dt * 1e-3  # ps
    m = np.array([1.0] * 4 + [40.0] * 6)
    nu = np.array([2.0] * 4 + [5.3] * 6)
    phase = rng.uniform(0, 2 * np.pi, (10, 3))
    v = np.sqrt(2.0 / m)[None, :, None] * np.cos(2 * np.pi * nu[None, :, None] * t[:, None, None] + phase[None])
    f, g = V.vdos(v, m, dt, max_lag=1000)
    assert np.trapezoid(g, f) == pytest.approx(30.0, rel=1e-9)
    lo, hi = f < 3.65, f >= 3.65
    assert np.trapezoid(g[lo], f[lo]) == pytest.approx(12.0, rel=0.02)
    assert np.trapezoid(g[hi], f[hi]) == pytest.approx(18.0, rel=0.02)
    df = f[1] - f[0]
    assert abs(f[lo][np.argmax(g[lo])] - 2.0) <= df
    assert abs(f[hi][np.argmax(g[hi])] - 5.3) <= df
    assert V.first_moment(f, g) == pytest.approx((12 * 2.0 + 18 * 5.3) / 30, rel=0.02)


def test_vdos_rejects_bad_input():
    with pytest.raises(MtpjaxError):
        V.vdos(np.zeros((10, 2, 3)), np.ones(2), 1.0)  # no motion
    with pytest.raises(MtpjaxError):
        V.vacf(np.ones((10, 2, 3)), np.ones(3), 5)  # masses do not match
    with pytest.raises(MtpjaxError):
        V.window("kaiser", 5)


def test_cell_modes_of_a_spring_chain():
    """A ring of 8 equal masses and springs k: ν_q = 2 sqrt(k/m) |sin(πq/8)| / 2π (textbook), along x; y, z free."""
    n, k, m = 8, 2.0, 12.0
    fc = np.zeros((n, n, 3, 3))
    for i in range(n):
        fc[i, i, 0, 0] = 2 * k
        fc[i, (i + 1) % n, 0, 0] = fc[i, (i - 1) % n, 0, 0] = -k
    f, _ = V.cell_modes(fc, np.full(n, m))
    ref = 2 * np.sqrt(k / m) * np.abs(np.sin(np.pi * np.arange(n) / n)) * V.EV_A2_AMU_TO_THZ
    np.testing.assert_allclose(np.sort(f)[-n:], np.sort(ref), atol=1e-6)  # sqrt of round-off at 0


@pytest.fixture(scope="module")
def mg():
    import mtpjax
    from ase.build import bulk

    pot = mtpjax.make_potential(str(need(MG_EAM)))
    return pot, bulk("Mg", "hcp", a=3.19, c=5.18).repeat((3, 3, 2))  # 36 atoms; forces vanish by symmetry


def test_low_temperature_md_dos_matches_phonopy_modes_of_the_cell(mg):
    """hcp Mg, Sun EAM, 36 atoms at 20 K (Langevin, then NVE; jax-md through mtpjax.md): the MD VDOS's first moment
    against the cell's own normal modes (phonopy finite-displacement force constants of the same 36-atom cell,
    diagonalised), weighted by the energy each mode carries in the run (the projection of the mass-weighted
    velocities on the eigenvectors): within 0.5 % (the anharmonicity at 20 K and the window's leakage are smaller);
    and within 2 % of the plain mean of the 3N − 3 non-zero modes (the weights are random in a short harmonic run).
    NVE energy conserved to 1e-5 eV/atom."""
    from mtpjax.md import run_md

    pot, atoms = mg
    ph = V.harmonic_phonopy(pot, atoms, primitive_matrix="P")
    freq, vec = V.cell_modes(ph.force_constants, atoms.get_masses())
    assert freq.min() > -1e-3  # stable cell
    r = run_md(pot, atoms, ensemble="nvt_langevin", steps=600, timestep=2.0, temperature=20.0, initial_temperature=40.0,
               thermostat_time=50.0, log_every=100, seed=3)
    s = V.sample_velocities(pot, r.atoms, steps=3000, timestep=2.0, every=5)
    assert s.velocities.shape == (600, 36, 3)
    assert s.energy_drift < 1e-5
    assert 8.0 < s.temperature < 40.0
    f, g = V.vdos(s.velocities, s.masses, s.dt, max_lag=150)
    q = (s.velocities * np.sqrt(s.masses)[None, :, None]).reshape(len(s.velocities), -1) @ vec  # mode velocities
    w = np.mean(q**2, axis=0)
    weighted = float(np.sum(w * freq) / np.sum(w))
    md = V.first_moment(f, g)
    assert md == pytest.approx(weighted, rel=0.005)
    assert md == pytest.approx(np.mean(np.sort(freq)[3:]), rel=0.02)


def test_dos_softens_with_temperature(mg):
    """hcp Mg, Sun EAM, 36 atoms at the fixed 0 K cell: the mean frequency at 600 K lies below the one at 20 K by more
    than 3 % (measured: 6.11 → 5.66 THz, −7 %; at fixed volume the softening is the intrinsic anharmonicity of the
    EAM, large for Mg near 2/3 of its melting point), and the 20 K MD mean stays within 3 % of the 0 K phonopy mesh
    DOS's (the 36-atom cell samples only its commensurate q-points; the mesh the whole zone) and within 2 % of the
    plain mean of the cell's own non-zero modes (random mode energies in one short run). Both DOS hold 3N modes on
    the grid (1 %)."""
    pot, atoms = mg
    r = V.finite_temperature_dos(pot, atoms, [20.0, 600.0], steps=3000, every=5, equilibration=600, max_lag_fs=750.0,
                                 mesh=(8, 8, 8), frequencies=np.arange(0.0, 12.0, 0.02))
    cold, hot = r.mean_frequency[20.0], r.mean_frequency[600.0]
    assert hot < 0.97 * cold
    assert cold == pytest.approx(r.mean_frequency["0K"], rel=0.03)
    assert cold == pytest.approx(r.mean_frequency["cell"], rel=0.02)
    for g in (r.harmonic, r.dos[20.0], r.dos[600.0]):
        assert np.trapezoid(g, r.frequencies) == pytest.approx(3 * len(atoms), rel=0.01)
    assert 450.0 < r.temperature[600.0] < 750.0


def test_segments_average_towards_the_cell_modes(mg):
    """Three NVE segments at 20 K, separated by Langevin stretches that redraw the mode energies: the
    averaged VDOS's mean frequency within 1.5 % of the plain mean of the cell's non-zero normal modes (phonopy), and
    3N modes on the grid."""
    pot, atoms = mg
    r = V.finite_temperature_dos(pot, atoms, [20.0], steps=1500, segments=3, resegment=300, every=5, equilibration=400,
                                 max_lag_fs=750.0, mesh=(4, 4, 4), frequencies=np.arange(0.0, 12.0, 0.02))
    assert r.mean_frequency[20.0] == pytest.approx(r.mean_frequency["cell"], rel=0.015)
    assert np.trapezoid(r.dos[20.0], r.frequencies) == pytest.approx(3 * len(atoms), rel=0.01)
