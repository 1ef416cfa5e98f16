"""Vacancy migration (mtpjax.migration): the JAX string method against ASE's climbing-image NEB, mtpjax's EAM against
ASE's own EAM calculator, LJ argon against the reference of ../shared/README.md, forward against backward; end points
relaxed by mtpjax.relax against ASE's FIRE; the hop detector on vacancies moved by hand; the Arrhenius fit against
exact rates and the analytic two-point error."""
from pathlib import Path

import numpy as np
import pytest

from mtpjax import migration as M
from mtpjax.oracles.eam_tabulated import TabulatedEAM
from mtpjax.oracles.lj import LennardJones

EAM_FILE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "potentials" / "Mg_mm.eam.fs"
EPS = 0.01032  # eV: argon's epsilon (../shared/README.md)
#: fcc LJ (2.5 sigma, unshifted) lattice parameter (Å) relaxed by relaxed_bulk (fixed here: tests stay quick).
A_LJ = 5.268628752
#: hcp lattice of the Sun EAM (Å) relaxed by relaxed_bulk.
A_MG, C_MG = 3.184214159, 5.184427524

needs_eam = pytest.mark.skipif(not EAM_FILE.exists(), reason="the Sun 2006 Mg EAM file is not in ../shared")


def eam_pair():
    from ase.calculators.eam import EAM

    return TabulatedEAM.from_file(EAM_FILE), (lambda: EAM(potential=str(EAM_FILE)))


@pytest.fixture(scope="module")
def lj_small():
    """LJ fcc 2x2x2 cubic minus one (31 atoms), relaxed end points."""
    lj = LennardJones()
    perfect = M.supercell("Ar", "fcc", A_LJ, None, 2)
    i, f, k = M.relaxed_hop(lj, perfect)
    return lj, i, f


def test_hop_structures():
    """The hcp basal hop stays in its plane at distance a, the non-basal one leaves it at sqrt(a²/3 + c²/4); the fcc
    hop has length a/sqrt(2); one atom fewer; the same atom order in both states."""
    a, c = 3.2, 5.2
    perfect = M.supercell("Mg", "hcp", a, c, (3, 3, 2))
    for hop, length, dz in (("basal", a, 0.0), ("nonbasal", np.sqrt(a * a / 3 + c * c / 4), c / 2)):
        i, f, k = M.vacancy_hop(perfect, 0, hop)
        d = f.positions[k] - i.positions[k]
        assert len(i) == len(f) == len(perfect) - 1
        assert np.linalg.norm(d) == pytest.approx(length, abs=1e-9)
        assert abs(d[2]) == pytest.approx(dz, abs=1e-9)
        others = np.delete(np.arange(len(i)), k)
        assert np.allclose(i.positions[others], f.positions[others])
    i, f, k = M.vacancy_hop(M.supercell("Ar", "fcc", 5.0, None, 2))
    assert np.linalg.norm(f.positions[k] - i.positions[k]) == pytest.approx(5.0 / np.sqrt(2), abs=1e-9)
    with pytest.raises(M.MigrationError):
        M.nearest_neighbour(perfect, 0, "sideways")


def test_string_equals_ase_ci_neb_lj(lj_small):
    """The JAX climbing string on LJ fcc (31 atoms, 5 images) gives ASE's CI-NEB barrier within 2e-5 eV (2e-3 eps),
    and equal forward and backward barriers (the end points are equivalent), both ~6.46 eps in this small cell."""
    lj, i, f = lj_small
    neb = M.neb_barrier(lj, i, f, n_images=5)
    string = M.string_barrier(lj, i, f, n_images=5)
    assert string.barrier == pytest.approx(neb.barrier, abs=2e-5)
    assert neb.barrier == pytest.approx(neb.reverse_barrier, abs=1e-6)
    assert string.barrier == pytest.approx(string.reverse_barrier, abs=1e-6)
    assert 6.0 < neb.barrier / EPS < 7.0
    # the same top image (the string's images sit at equal arc length, NEB's not exactly: only the top is compared)
    assert np.argmax(string.energies) == np.argmax(neb.energies) == 3


def test_string_backwards(lj_small):
    """The string from the final to the initial state gives the same barrier (symmetry of the hop)."""
    lj, i, f = lj_small
    fwd = M.string_barrier(lj, i, f, n_images=3)
    back = M.string_barrier(lj, f, i, n_images=3)
    assert back.barrier == pytest.approx(fwd.barrier, abs=1e-5)
    assert np.allclose(back.energies[::-1], fwd.energies, atol=1e-5)


def test_reparametrise_equal_arc_length():
    """Images of a non-uniform straight path come out equally spaced; the climber and the end points stay."""
    import jax.numpy as jnp

    t = np.array([0.0, 0.05, 0.1, 0.7, 0.8, 1.0])
    X = jnp.asarray(t[:, None, None] * np.ones((1, 2, 3)))
    out = np.asarray(M.reparametrise(X, jnp.asarray(-1)))
    assert np.allclose(out[:, 0, 0], np.linspace(0, 1, 6), atol=1e-12)
    out = np.asarray(M.reparametrise(X, jnp.asarray(3)))
    assert np.allclose(out[:, 0, 0], [0, 0.7 / 3, 1.4 / 3, 0.7, 0.85, 1.0], atol=1e-12)


@needs_eam
@pytest.mark.parametrize("hop", M.HCP_HOPS)
def test_eam_hop_vs_ase_eam_small(hop):
    """Sun 2006 EAM, hcp 2x2x2 (15 atoms), one climbing image: mtpjax's TabulatedEAM (end points, CI-NEB) against
    ASE's own EAM calculator (independent code: forces at the end points, CI-NEB to 5e-3 eV/Å), within 1 meV; forward = backward. (The JAX string
    on the EAM: the slow test.)"""
    pot, ase_eam = eam_pair()
    perfect = M.supercell("Mg", "hcp", A_MG, C_MG, 2)
    i, f, _ = M.relaxed_hop(pot, perfect, 0, hop)
    for end in (i, f):  # mtpjax's end points are minima of ASE's EAM too
        end = end.copy()
        end.calc = ase_eam()
        assert np.abs(end.get_forces()).max() < 2e-3
    ref = M.neb_barrier(ase_eam, i, f, n_images=1, fmax=5e-3)  # ASE's EAM is slow (~0.1 s a call here)
    neb = M.neb_barrier(pot, i, f, n_images=1)
    assert neb.barrier == pytest.approx(ref.barrier, abs=1e-3)
    assert ref.barrier == pytest.approx(ref.reverse_barrier, abs=1e-4)
    assert neb.barrier == pytest.approx(neb.reverse_barrier, abs=1e-4)


@needs_eam
@pytest.mark.slow
def test_eam_basal_nonbasal_vs_ase_eam():
    """As the quick test on the potential's relaxed lattice (relaxed_bulk) in a 3x3x2 cell (35 atoms), 3 images:
    barriers within 1 meV of ASE's EAM (measured: 0.6111 eV basal, 0.6207 eV non-basal, equal to 1e-12 eV)."""
    pot, ase_eam = eam_pair()
    a, c = M.lattice_parameters(M.relaxed_bulk(pot, "Mg", "hcp", 3.19, 5.2), "hcp")
    assert (a, c) == pytest.approx((A_MG, C_MG), abs=1e-5)
    perfect = M.supercell("Mg", "hcp", a, c, (3, 3, 2))
    for hop in M.HCP_HOPS:
        ref = M.neb_barrier(ase_eam, *M.relaxed_hop(ase_eam, perfect, 0, hop)[:2], n_images=3)
        i, f, _ = M.relaxed_hop(pot, perfect, 0, hop)
        assert M.neb_barrier(pot, i, f, n_images=3).barrier == pytest.approx(ref.barrier, abs=1e-3)
        assert M.string_barrier(pot, i, f, n_images=3).barrier == pytest.approx(ref.barrier, abs=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("shift, reference", [(False, 6.34), (True, 5.90)])
def test_lj_argon_reference(shift, reference):
    """LJ argon, 2.5 sigma cutoff (unshifted / shifted), fcc 4x4x4 cubic minus one (255 atoms) on the potential's
    relaxed lattice, 9-image CI-NEB (7 intermediate images): the barrier of ../shared/README.md within 0.05 eps; the
    JAX string within 1e-4 eV of ASE's CI-NEB."""
    lj = LennardJones(shift=shift)
    case = M.HopCase("fcc Ar", "fcc", "Ar", (4, 4, 4), a=A_LJ)
    i, f, _, _ = M.hop_end_points(lj, case)
    assert len(i) == 255
    neb = M.neb_barrier(lj, i, f, n_images=7)
    assert neb.barrier / EPS == pytest.approx(reference, abs=0.05)
    assert M.string_barrier(lj, i, f, n_images=7).barrier == pytest.approx(neb.barrier, abs=1e-4)


# ------------------------------------------------------------------------------------------------ relaxation


@needs_eam
def test_relax_positions_matches_ase_fire():
    """relax_positions (mtpjax.relax, batched FIRE on jax-md) gives the relaxed energy and positions of ASE's own
    FIRE over mtpjax's calculator (independent optimiser; both to fmax 1e-3 eV/Å) within 1e-5 eV and 5e-3 Å, for a
    JAX potential and for a calculator factory (mtpjax.relax's ASE route); forces below fmax."""
    from ase.optimize import FIRE

    from mtpjax.calculator import PotentialCalculator

    pot, _ = eam_pair()
    i, _, _ = M.vacancy_hop(M.supercell("Mg", "hcp", A_MG, C_MG, 2), 0, "basal")
    ref = i.copy()
    ref.calc = PotentialCalculator(pot)
    assert FIRE(ref, logfile=None).run(fmax=1e-3, steps=5000)
    e_unrelaxed = float(PotentialCalculator(pot).get_potential_energy(i))
    for how in (pot, lambda: PotentialCalculator(pot)):
        out = M.relax_positions(how, i)
        assert out.info["energy"] == pytest.approx(ref.get_potential_energy(), abs=1e-5)
        assert out.info["energy"] < e_unrelaxed - 1e-3  # it did relax
        assert np.abs(out.positions - ref.positions).max() < 5e-3
        out.calc = PotentialCalculator(pot)
        assert np.linalg.norm(out.get_forces(), axis=1).max() < 1e-3


# ------------------------------------------------------------------------------------------------ hop detector


def _frames_by_hand(cell, perfect, occupied_sequence, rng, noise=0.15):
    """Frames of N = M - 1 atoms: frame k puts atom n on site occupied_sequence[k][n] (fractional sites of
    ``perfect`` in ``cell``), plus Gaussian noise (Å) and random whole lattice translations (wrapping)."""
    sites = M.site_fractions(perfect)
    frames = []
    for occ in occupied_sequence:
        x = sites[occ] @ cell + rng.normal(0.0, noise, (len(occ), 3))
        x += rng.integers(-1, 2, (len(occ), 3)) @ cell
        frames.append(x)
    return np.stack(frames)


def test_hop_detector_synthetic():
    """A vacancy moved by hand in a strained hcp cell: a basal hop, then a non-basal one, are found at the frames and
    with the vectors put in; a two-frame excursion (an atom into the vacancy and back) and a frame with an atom on
    an occupied site (two empty sites: undetermined) do not count; with persist=1 the excursion counts as two."""
    a, c = 3.2, 5.2
    perfect = M.supercell("Mg", "hcp", a, c, (3, 3, 2))
    strain = np.array([[1.02, 0.03, 0.0], [0.0, 0.99, 0.01], [0.0, 0.0, 1.01]])
    cell = perfect.cell.array @ strain
    m = len(perfect)
    j_b = M.nearest_neighbour(perfect, 0, "basal")
    j_n = M.nearest_neighbour(perfect, j_b, "nonbasal")
    j_x = M.nearest_neighbour(perfect, 0, "nonbasal")
    base = list(range(1, m))  # atom n sits on site n + 1: site 0 is empty
    def moved(occ, atom_site, to):  # noqa: E306
        occ = list(occ)
        occ[occ.index(atom_site)] = to
        return occ
    at0 = base
    excursion = moved(base, j_x, 0)  # vacancy on j_x for two frames
    after_basal = moved(base, j_b, 0)  # vacancy on j_b
    after_nonbasal = moved(after_basal, j_n, j_b)  # vacancy on j_n
    doubled = moved(after_basal, 5 if j_b != 5 else 6, 7 if j_b != 7 else 8)  # two atoms on one site
    seq = [at0] * 5 + [excursion] * 2 + [at0] * 4 + [after_basal] * 3 + [doubled] + [after_basal] * 2 + \
        [after_nonbasal] * 6
    X = _frames_by_hand(cell, perfect, seq, np.random.default_rng(1))
    vac, n_empty = M.vacancy_sites(X, cell, M.site_fractions(perfect))
    expected = [0] * 5 + [j_x] * 2 + [0] * 4 + [j_b] * 3 + [-1] + [j_b] * 2 + [j_n] * 6
    assert vac.tolist() == expected
    assert n_empty[14] == 2 and set(n_empty[np.arange(23) != 14]) == {1}
    nn = M.nearest_distance(perfect)
    assert nn == pytest.approx(min(a, np.sqrt(a * a / 3 + c * c / 4)), abs=1e-9)
    hops = M.detect_hops(vac, M.site_fractions(perfect), cell, nn, persist=3)
    assert [(h.frame, h.source, h.target, h.kind) for h in hops] == [(11, 0, j_b, "basal"), (17, j_b, j_n, "nonbasal")]
    s = M.site_fractions(perfect)
    for h, (src, dst) in zip(hops, ((0, j_b), (j_b, j_n))):
        d = s[dst] - s[src]
        assert np.allclose(h.vector, (d - np.round(d)) @ cell, atol=1e-12)
    assert [h.kind for h in M.detect_hops(vac, s, cell, nn, persist=1)] == ["nonbasal", "nonbasal", "basal", "nonbasal"]
    # count_hops: the same through frames (fixed strained cell), the first hop inside the equilibration left out
    counted, events, determined = M.count_hops(X, cell, perfect, sample_fs=100.0, equilibration_fs=1200.0)
    assert len(events) == 2 and [h.frame for h in counted] == [17] and determined == pytest.approx(22 / 23)


def test_hop_kind():
    """Basal (in the plane), non-basal (out of it), other (a second-neighbour distance)."""
    a, c = 3.2, 5.2
    cell = M.supercell("Mg", "hcp", a, c, 3).cell.array
    assert M.hop_kind([a, 0, 0], cell, a) == "basal"
    assert M.hop_kind([0, a / np.sqrt(3), c / 2], cell, a) == "nonbasal"
    assert M.hop_kind([a * np.sqrt(3), 0, 0], cell, a) == "other"
    assert M.hop_kind([a, 0, 0], cell, a, structure="fcc") == "nn"
    with pytest.raises(M.MigrationError):
        M.detect_hops([0, 0], np.zeros((2, 3)), cell, a, persist=0)
    with pytest.raises(M.MigrationError):
        M.vacancy_sites(np.zeros((1, 3, 3)), cell, np.zeros((3, 3)))


# --------------------------------------------------------------------------------------------------- Arrhenius


def test_arrhenius_fit_exact_and_two_point_error():
    """Exact rates nu exp(-Ea/kT) give back nu and Ea (chi2 = 0); with two temperatures the error is the analytic
    sqrt(1/n1 + 1/n2) / |1/kT1 - 1/kT2|; a temperature without hops is left out; fewer than two raise."""
    import ase.units

    T = np.array([700.0, 750.0, 800.0, 850.0, 900.0])
    nu, ea = 7.3e13, 0.63
    k = nu * np.exp(-ea / (ase.units.kB * T))
    fit = M.arrhenius_fit(T, k, [5, 9, 20, 31, 60])
    assert fit.activation_energy == pytest.approx(ea, rel=1e-10)
    assert fit.prefactor == pytest.approx(nu, rel=1e-9)
    assert fit.chi2 == pytest.approx(0.0, abs=1e-15) and fit.dof == 3
    assert fit.rate(777.0) == pytest.approx(nu * np.exp(-ea / (ase.units.kB * 777.0)), rel=1e-9)
    n = np.array([12, 30])
    two = M.arrhenius_fit(T[[0, 4]], k[[0, 4]] * np.exp([0.1, -0.05]), n)
    x = 1.0 / (ase.units.kB * T[[0, 4]])
    assert two.activation_energy_err == pytest.approx(np.sqrt(1 / 12 + 1 / 30) / abs(x[0] - x[1]), rel=1e-10)
    assert two.activation_energy == pytest.approx(ea + 0.15 / (x[1] - x[0]), rel=1e-10)  # the line through both
    three = M.arrhenius_fit(np.r_[T[[0, 4]], 650.0], np.r_[k[[0, 4]], 0.0], [12, 30, 0])
    assert three.temperatures == (700.0, 900.0) and three.activation_energy == pytest.approx(ea, rel=1e-10)
    with pytest.raises(M.MigrationError):
        M.arrhenius_fit([700.0, 800.0], [1e9, 0.0], [4, 0])


@needs_eam
@pytest.mark.slow
def test_hop_rates_eam_sees_hops():
    """Sun EAM, hcp 4x4x3 minus one (95 atoms) at 950 K, Nosé-Hoover, 20 ps: the vacancy hops (measured: 4 hops in
    19 ps after 1 ps of equilibration), every hop a nearest-neighbour one, every frame determined, the thermostat at
    its temperature within 5 %."""
    pot, _ = eam_pair()
    perfect = M.supercell("Mg", "hcp", A_MG, C_MG, (4, 4, 3))
    (r,) = M.hop_rates(pot, perfect, [950.0], 10000, timestep=2.0, equilibration=1000.0)
    assert r.hops >= 1 and r.n_atoms == 95 and r.time_ps == pytest.approx(19.0)
    assert set(r.kinds) <= {"basal", "nonbasal"}
    assert r.determined > 0.99
    assert r.mean_temperature == pytest.approx(950.0, rel=0.05)
    assert r.rate == pytest.approx(r.hops / 19e-12) and r.rate_err == pytest.approx(np.sqrt(r.hops) / 19e-12)
