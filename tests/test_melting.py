"""mtpjax.md.melting: the order parameter against published values, the solid/liquid classification, the two-phase
builder, a heating curve that melts, and (slow) the two-phase melting point of the Sun 2006 EAM against 914 K."""
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

import mtpjax  # noqa: F401
from mtpjax.md import melting as M

EAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "potentials" / "Mg_mm.eam.fs"
needs_eam = pytest.mark.skipif(not EAM.exists(), reason="the Sun 2006 EAM file is not in ../shared")


@pytest.fixture(scope="module")
def sun():
    from mtpjax.oracles import make_potential

    return make_potential(str(EAM))


def test_order_parameter_perfect_crystals():
    # Steinhardt q6 of perfect crystals (Steinhardt, Nelson, Ronchetti 1983; ideal c/a for hcp): fcc 0.57452,
    # hcp 0.48476; every atom equivalent, so the Lechner-Dellago average is the same number
    fcc = M.order_parameter(bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3))
    hcp = M.order_parameter(bulk("Mg", "hcp", a=3.2, c=3.2 * np.sqrt(8 / 3)).repeat((3, 3, 2)))
    assert np.allclose(fcc, 0.57452, atol=2e-5)
    assert np.allclose(hcp, 0.48476, atol=2e-5)
    # the orthorhombic 4-atom hcp cell is the same crystal: 12 neighbours at a, the same order
    o = M.orthogonal_hcp("Mg", 3.2, 3.2 * np.sqrt(8 / 3), (2, 2, 2))
    idx, vec = M.nearest_neighbours(o)
    assert np.allclose(np.linalg.norm(vec, axis=-1), 3.2)
    assert np.allclose(M.order_parameter(o), 0.48476, atol=2e-5)
    assert np.allclose(np.diag(o.cell.array), [6.4, 6.4 * np.sqrt(3), 2 * 3.2 * np.sqrt(8 / 3)])


def test_order_parameter_rotation_invariant_and_disorder():
    rng = np.random.default_rng(1)
    a = bulk("Mg", "hcp", a=3.21, c=5.21).repeat((4, 4, 3))
    a.rattle(0.1, seed=2)
    q = M.order_parameter(a)
    b = a.copy()
    b.rotate(37, (1, 2, 3), rotate_cell=True)
    assert np.allclose(M.order_parameter(b), q, atol=1e-10)
    # random positions (an ideal gas, the extreme of disorder) are all classified liquid
    gas = a.copy()
    gas.positions = rng.uniform(size=(len(a), 3)) @ a.cell.array
    gas.positions[:] = gas.positions  # keep ASE happy
    assert M.solid_fraction(gas) == 0.0
    assert M.solid_fraction(a) == 1.0


def test_hcp_lattice_parameters_any_cell_and_orientation():
    a0, c0 = 3.21, 5.23
    h = bulk("Mg", "hcp", a=a0, c=c0).repeat((4, 4, 3))
    assert M.hcp_lattice_parameters(h) == pytest.approx((a0, c0), abs=1e-9)
    # another supercell of the same crystal (a1 -> a1 - a2), rotated: the cell lengths change, a and c do not
    g = h.copy()
    cell = g.cell.array.copy()
    cell[0] -= cell[1]
    g.set_cell(cell, scale_atoms=False)
    g.wrap()
    g.rotate(50, (1, 2, 0.3), rotate_cell=True)
    assert not np.allclose(g.cell.lengths()[:2] / 4, a0)
    assert M.hcp_lattice_parameters(g) == pytest.approx((a0, c0), abs=1e-9)
    # thermal-size displacements (0.1 Å): bond-vector means, not bond lengths, so no bias beyond the noise
    g.rattle(0.1, seed=4)
    assert M.hcp_lattice_parameters(g) == pytest.approx((a0, c0), abs=5e-3)


@needs_eam
def test_two_phase_builder_and_hot_liquid(sun):
    from mtpjax.md import run_md

    crystal = M.orthogonal_hcp("Mg", 3.25, 5.3, (3, 2, 6))
    crystal.rattle(0.05, seed=0)
    # a short hot Langevin run at fixed cell melts the copy (liquid: qbar6 well below the threshold)
    liquid = run_md(sun, crystal, ensemble="nvt_langevin", steps=500, timestep=2.0, temperature=2500.0,
                    thermostat_time=50.0, log_every=50).atoms
    q_liquid = M.order_parameter(liquid)
    assert np.mean(q_liquid) < 0.22 and M.solid_fraction(liquid) < 0.1
    start = M.two_phase_cell(crystal, liquid)
    assert np.allclose(start.cell.array, crystal.cell.array)
    n_solid = int(np.sum(crystal.get_scaled_positions()[:, 2] < 0.5))
    assert int(start.arrays["phase"].sum()) == n_solid == len(crystal) // 2
    assert len(crystal) // 2 < len(start) <= len(crystal)
    z = start.get_scaled_positions()[:, 2]
    solid = start.arrays["phase"] == 1
    assert np.all(z[solid] < 0.5) and np.all(z[~solid] >= 0.5)
    # no liquid atom closer than 2.3 Å to a solid one; the crystal half is classified solid, the liquid half liquid
    d = start.get_all_distances(mic=True)
    assert d[np.ix_(solid, ~solid)].min() >= 2.3
    s = M.solid_mask(start)
    assert s[solid].mean() > 0.7 and s[~solid].mean() < 0.2
    with pytest.raises(M.MeltingError):
        M.two_phase_cell(crystal, liquid[:-1])


@needs_eam
def test_heating_curve_melts_superheated_crystal(sun):
    atoms = bulk("Mg", "hcp", a=3.21, c=5.21).repeat((3, 3, 3))
    rows = M.heating_curve(sun, atoms, [500.0, 1800.0], steps_per_T=300, frames=2)
    assert rows[0].energy < rows[1].energy
    assert rows[0].solid == 1.0 and rows[1].solid < 0.1
    assert rows[0].q6 > 0.38 and rows[1].q6 < 0.22
    # the Sun EAM's hcp Mg at 500 K: a a little above its 0 K 3.184 Å, c/a close to ideal (1.62-1.63)
    assert 3.18 < rows[0].a < 3.3 and 1.6 < rows[0].c / rows[0].a < 1.66
    assert abs(rows[0].T_mean - 500) < 100 and abs(rows[0].p_mean) < 0.5
    det = M.detect_melting(rows)
    assert det is not None and det[1:3] == (500.0, 1800.0) and det[3] > 0.05
    assert M.detect_melting(rows[:1]) is None


def test_coexistence_bracket_logic():
    runs = [M.CoexistenceRun(temperature=T, solid_rate=r) for T, r in ((850, 0.02), (900, 0.005), (950, -0.015), (1000, -0.03))]
    tm = M.coexistence_melting_point(runs)
    assert tm["bracket"] == (900.0, 950.0) and tm["consistent"]
    assert tm["estimate"] == pytest.approx(900 + 50 * 0.005 / 0.02)
    with pytest.raises(M.MeltingError):
        M.coexistence_melting_point(runs[:2])


def test_detect_melting_rule():
    def rows(T, e, s):
        return [M.StateRow(t, 0, t, 0, x, 0, 0, 0, 0, 0, y, 0, 0) for t, x, y in zip(T, e, s)]

    T = [300, 500, 700, 900, 1000, 1100, 1200]
    # a solid rising 0.25 meV/K, half molten at 1100 K, liquid at 1200 K with 0.09 eV/atom of latent heat
    e = [-1.5 + 2.5e-4 * (t - 300) for t in T]
    e[5] += 0.045
    e[6] += 0.09
    det = M.detect_melting(rows(T, e, [1, 1, 1, 1, 0.9, 0.4, 0.0]))
    assert det[:3] == (5, 1000.0, 1100.0) and det[3] == pytest.approx(0.09)
    # the order parameter drops without an energy jump (e.g. a misclassified solid): not melting
    e_smooth = [-1.5 + 2.5e-4 * (t - 300) for t in T]
    assert M.detect_melting(rows(T, e_smooth, [1, 1, 1, 1, 0.9, 0.4, 0.0])) is None
    assert M.detect_melting(rows(T, e, [1] * 7)) is None


@pytest.mark.slow
@needs_eam
def test_sun_eam_two_phase_melting_point(sun):
    """The Sun 2006 EAM melts at 914 K (its authors' coexistence runs): a run 60 K below grows the solid and one 60 K
    above shrinks it."""
    crystal = M.orthogonal_hcp("Mg", 3.25, 5.31, (4, 3, 10))
    start, info = M.prepare_two_phase(sun, crystal, temperature=914.0, equil_steps=1000, melt_steps=1500,
                                      quench_steps=300)
    below = M.two_phase_run(sun, start, 854.0, steps=4000, start_temperature=914.0)
    above = M.two_phase_run(sun, start, 974.0, steps=4000, start_temperature=914.0)
    assert below.solid_rate > 0 and above.solid_rate < 0
    tm = M.coexistence_melting_point([below, above])
    assert tm["bracket"] == (854.0, 974.0)
