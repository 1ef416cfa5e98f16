"""mtpjax.md.melting: the order parameter against published values, the solid/liquid classification, the two-phase
builder, a heating curve that melts, and (slow) the two-phase melting point of the Sun 2006 EAM against 914 K; the MTK
barostat on the cell lengths only (``npt_couple="aniso"``) against ASE's MaskedMTKNPT step for step, through the
``mtpjax md`` config, and (slow) its mean cell against the full-cell barostat's; a and c from orthohexagonal cells."""
import csv
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


@pytest.mark.slow
@needs_eam
def test_pressure_scan_aniso_cell_lengths(sun):
    """The E(p) scan in the orthohexagonal cell under the aniso barostat: the mean pressure follows the target, the
    volume falls, a and c come from the cell lengths and c/a rises under pressure as the Sun EAM's own does (0 K,
    ASE's EAM calculator relaxed with a cell filter: c/a 1.628 at 0 GPa, 1.688 at 6 GPa)."""
    rep = (3, 2, 3)
    atoms = M.orthogonal_hcp("Mg", 3.21, 5.21, rep)
    rows = M.pressure_scan(sun, atoms, [0.0, 6.0], steps=400, frames=2, cell_repeat=rep, npt_couple="aniso")
    for r, p in zip(rows, (0.0, 6.0)):
        assert abs(r.p_mean - p) < 0.6 and r.solid == 1.0
        assert np.isfinite(r.a_cell) and abs(r.a_cell / r.a_cell_y - 1) < 0.02
    assert rows[1].volume < 0.93 * rows[0].volume
    assert rows[1].c_cell / rows[1].a_cell > rows[0].c_cell / rows[0].a_cell + 0.02


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


# ------------------------------------------------------------------------ the anisotropic (orthogonal-cell) barostat


def _ortho_mg(repeat=(2, 1, 1), rattle=0.05, seed=3, temperature=300.0):
    import ase.units as u

    atoms = M.orthogonal_hcp("Mg", 3.2, 5.2, repeat)
    atoms.rattle(rattle, seed=seed)
    p = np.random.default_rng(seed).normal(size=atoms.positions.shape) * np.sqrt(atoms.get_masses()[:, None] * u.kB * temperature)
    atoms.set_momenta(p - p.mean(0))
    return atoms


def test_aniso_npt_matches_ase_masked_mtknpt_step_for_step():
    """MTK NPT with ``npt_couple="aniso"`` reproduces ASE's MaskedMTKNPT(mask=(True, True, True)) (the cell lengths
    only, 3 barostat degrees of freedom) on a rattled orthogonal hcp Mg cell (Zhou EAM) at 1 GPa, 40 steps of 2 fs:
    positions and cell to 1e-9 Å, the conserved quantity to 1e-9 eV; the cell's off-diagonal elements (and the cell
    momentum's) stay exactly zero while its lengths move."""
    import ase.units as u
    import jax
    import jax.numpy as jnp
    from ase.md.nose_hoover_chain import MaskedMTKNPT

    from mtpjax.md import make_integrator
    from mtpjax.oracles import ZhouEAM, get_calculator

    pot = ZhouEAM("Mg")
    atoms = _ortho_mg()
    b = atoms.copy()
    b.calc = get_calculator(pot)
    dyn = MaskedMTKNPT(b, timestep=2 * u.fs, temperature_K=300, pressure_au=1 * u.GPa, tdamp=50 * u.fs, pdamp=200 * u.fs,
                       mask=(True, True, True))

    def run(steps=40):
        integ, nfn = make_integrator(pot, atoms, "npt_mtk", timestep=2.0, temperature=300, pressure=1.0,
                                     thermostat_time=50, barostat_time=200, npt_couple="aniso")
        R, h = jnp.asarray(atoms.positions), jnp.asarray(atoms.cell.array)
        nbrs = nfn.allocate(R, cell=h)
        s = integ.init(jax.random.PRNGKey(0), R, h, atoms.get_masses(), nbrs, momenta=jnp.asarray(atoms.get_momenta()))
        step = jax.jit(integ.step)
        offdiag = []
        for _ in range(steps):
            s = step(s, nbrs)
            nbrs = nfn.update(s.position, nbrs, cell=s.cell)
            offdiag.append(float(np.abs(np.asarray(s.cell) - np.diag(np.diagonal(np.asarray(s.cell)))).max()))
        return s, float(integ.conserved(s, nbrs)), max(offdiag)

    s, conserved, offdiag = run()
    dyn.run(40)
    assert offdiag == 0.0
    assert np.abs(np.asarray(s.cell_momentum) - np.diag(np.diagonal(np.asarray(s.cell_momentum)))).max() == 0.0
    assert np.abs(np.asarray(s.position) - b.positions).max() < 1e-9
    assert np.abs(np.asarray(s.cell) - b.cell.array).max() < 1e-9
    assert np.abs(np.diagonal(np.asarray(s.cell)) - atoms.cell.lengths()).min() > 1e-3  # every length moved
    assert abs(conserved - dyn.get_conserved_energy()) < 1e-9
    with pytest.raises(mtpjax.errors.MtpjaxError, match="coupling"):
        make_integrator(pot, atoms, "npt_mtk", timestep=2.0, temperature=300, npt_couple="iso")


def test_aniso_npt_through_md_command(tmp_path, capsys):
    """``mtpjax md`` with ``npt_couple = "aniso"`` on 16 atoms of orthogonal hcp Mg (Zhou EAM, 300 K, 300 steps of
    2 fs): every logged cell stays exactly orthogonal while its lengths move, the extended energy stays within
    2e-4 eV/atom of its start (the total energy moves 10x more), and a coupling that does not exist is a config error."""
    from mtpjax.cli import main

    start = tmp_path / "start.extxyz"
    mtpjax.write_structures([_ortho_mg(repeat=(2, 1, 2), rattle=0.02)], start, format="extxyz")
    cfg = tmp_path / "md.toml"
    cfg.write_text(f'[md]\npotential = "zhou:Mg"\nstructure = "{start}"\nensemble = "npt_mtk"\nnpt_couple = "aniso"\n'
                   'temperature = 300.0\ntimestep = 2.0\nsteps = 300\nlog_every = 10\ntrajectory_every = 100\n'
                   'barostat_time = 200.0\noutput = "out"\n')
    assert main(["md", str(cfg)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "thermo.csv")))
    assert all(float(r[k]) == 90.0 for r in rows for k in ("alpha_deg", "beta_deg", "gamma_deg"))
    for f in mtpjax.read_structures(tmp_path / "out" / "trajectory.extxyz"):
        h = f.cell.array
        assert np.all(h[~np.eye(3, dtype=bool)] == 0.0)
    lengths = np.array([[float(r[k]) for k in ("a_A", "b_A", "c_A")] for r in rows])
    assert np.ptp(lengths, axis=0).min() > 1e-3
    cons, tot = (np.array([float(r[k]) for r in rows]) for k in ("conserved_eV", "total_energy_eV"))
    assert np.abs(cons - cons[0]).max() / 16 < 2e-4
    assert np.ptp(tot) > 10 * np.ptp(cons)
    cfg.write_text(cfg.read_text().replace('"aniso"', '"iso"'))
    assert main(["md", str(cfg)]) == 2
    assert "npt_couple" in capsys.readouterr().err


def test_cell_lattice_parameters_of_orthohexagonal_cells():
    """a = Lx/nx = Ly/(√3 ny), c = Lz/nz of :func:`orthogonal_hcp` supercells (exact, by construction), means over
    frames; NaN once the cell is no longer orthogonal, or its basal plane no longer hexagonal (Lx/nx and Ly/(√3 ny)
    3 % apart)."""
    for rep in ((4, 2, 4), (3, 5, 2)):
        cells = [M.orthogonal_hcp("Mg", a, c, rep).cell for a, c in ((3.2, 5.2), (3.3, 5.3))]
        a, a_y, c = M.cell_lattice_parameters([x.lengths() for x in cells], rep, [x.angles() for x in cells])
        assert abs(a - 3.25) < 1e-12 and abs(a_y - 3.25) < 1e-12 and abs(c - 5.25) < 1e-12
    ortho = M.orthogonal_hcp("Mg", 3.2, 5.2, (1, 1, 1)).cell.lengths()
    assert np.isnan(M.cell_lattice_parameters(ortho, (1, 1, 1), [90.0, 90.0, 90.01])).all()
    assert np.isnan(M.cell_lattice_parameters(ortho * [1.03, 1, 1], (1, 1, 1))).all()
    assert abs(M.cell_lattice_parameters(ortho * [1.01, 1, 1], (1, 1, 1))[0] - 3.232) < 1e-12


@pytest.mark.slow
def test_aniso_mean_cell_matches_full_cell_barostat():
    """hcp Mg (Zhou EAM, orthogonal 4x2x3 = 96 atoms) at 500 K and p = 0, 6 ps after 1 ps: at zero shear stress the
    lengths-only barostat samples the same mean a and c as the full-cell one (its own run, its own velocities),
    within 0.3 %; the full-cell run's cell does shear (its angles leave 90°), the aniso run's does not."""
    from mtpjax.md import run_md
    from mtpjax.oracles import ZhouEAM

    pot, rep = ZhouEAM("Mg"), (4, 2, 3)
    atoms = M.orthogonal_hcp("Mg", 3.21, 5.21, rep)
    out = {}
    for couple, seed in (("aniso", 1), ("full", 2)):
        r = run_md(pot, atoms, ensemble="npt_mtk", steps=3500, timestep=2.0, temperature=500.0, pressure=0.0,
                   barostat_time=500.0, log_every=10, seed=seed, npt_couple=couple)
        keep = r.column("time_fs") > 1000
        ang = np.stack([r.column(k)[keep] for k in ("alpha_deg", "beta_deg", "gamma_deg")], axis=1)
        out[couple] = (r.column("a_A")[keep].mean() / rep[0], r.column("c_A")[keep].mean() / rep[2], np.abs(ang - 90).max())
    (a1, c1, d1), (a2, c2, d2) = out["aniso"], out["full"]
    assert d1 == 0.0 and d2 > 1e-3
    assert abs(a1 / a2 - 1) < 3e-3 and abs(c1 / c2 - 1) < 3e-3, out
