"""mtpjax.md: any JAX potential on jax-md. Every check has an independent reference: mtpjax's ASE calculator (its own
exact host neighbour list per structure), finite differences, ASE's MTKNPT integrator, or statistics with stated
bounds.

Systems: Lennard-Jones argon with ASE's smooth cutoff (``onset``; continuous energy and forces, so that the
integrators' conservation is not spoiled by a cutoff jump), the Zhou 2004 EAM for Mg, and MTPs (a level-8 MTP with
random coefficients; MLIP-3's fitted level-16 Mg MTP from ../shared).
"""
from __future__ import annotations

import csv

import numpy as np
import pytest
from ase.build import bulk

import mtpjax  # noqa: F401  (float64 before jax)
from conftest import SHARED, need, random_mtp

import jax
import jax.numpy as jnp

from mtpjax.errors import MtpjaxError
from mtpjax.md import MDInstability, efs_fn, energy_fn, make_integrator, run_md
from mtpjax.oracles import LennardJones, ZhouEAM, get_calculator

LJ = LennardJones(onset=7.0)  # argon, cutoff 8.5 Å, smooth from 7 Å


def argon(repeat=2, a=5.30):
    return bulk("Ar", "fcc", a=a, cubic=True).repeat(repeat)


def triclinic_mg(repeat=(1, 1, 1), rattle=0.05, seed=1):
    """hcp Mg sheared into a general triclinic cell (every cell vector narrower than twice any cutoff here)."""
    a = bulk("Mg", "hcp", a=3.2, c=5.2)
    a.set_cell(a.cell.array + np.array([[0.0, 0.0, 0.0], [0.35, 0.0, 0.0], [0.25, -0.15, 0.1]]), scale_atoms=True)
    a = a.repeat(repeat)
    a.rattle(rattle, seed=seed)
    return a


def reference(potential, atoms, species=None):
    """Energy, forces, stress (ASE's Voigt, eV/Å³) from mtpjax's ASE calculator on its own exact neighbour list."""
    b = atoms.copy()
    b.calc = mtpjax.PotentialCalculator(potential, species=species) if species else get_calculator(potential)
    return b.get_potential_energy(), b.get_forces(), b.get_stress()


def voigt(s):
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


def md_efs(potential, atoms, species=None, **kw):
    fn, nfn = energy_fn(potential, atoms, species=species, **kw)
    R, cell = jnp.asarray(atoms.positions), jnp.asarray(atoms.cell.array)
    nbrs = nfn.allocate(R, cell=cell)
    e, f, w = jax.jit(efs_fn(potential, atoms, species=species))(R, nbrs)
    return float(jax.jit(fn)(R, nbrs)), float(e), np.asarray(f), -np.asarray(w) / atoms.get_volume(), nbrs, fn, nfn


# ------------------------------------------------------------------------------------------------------------
# the energy function and its neighbour list


@pytest.mark.parametrize("name", ["zhou", "lj", "mtp8", "mtp16"])
def test_energy_forces_stress_match_calculator_on_small_triclinic_cells(name):
    """energy_fn / efs_fn equal the ASE calculator (exact host list) on a triclinic cell narrower than twice the
    cutoff (many images of each atom in the list), to 1e-10 eV and 1e-9 eV/Å."""
    if name == "zhou":
        pot, atoms, species = ZhouEAM("Mg"), triclinic_mg(), None
    elif name == "lj":
        pot, atoms, species = LJ, argon(1), None
        atoms.set_cell(atoms.cell.array + np.array([[0, 0, 0], [0.8, 0, 0], [0.3, 0.6, 0]]), scale_atoms=True)
        atoms.rattle(0.05, seed=2)
    elif name == "mtp8":
        pot, atoms, species = random_mtp(8, rcut=5.0), triclinic_mg(), ["Mg"]
    else:
        pot, atoms, species = mtpjax.load_mtp(need(SHARED / "bench" / "fit" / "mlip3_l16_rc6p5.almtp")), triclinic_mg(), ["Mg"]
    assert max(np.linalg.norm(atoms.cell.array, axis=1)) < 2 * pot.cutoff  # multi-image territory
    e_ref, f_ref, s_ref = reference(pot, atoms, species)
    e, e2, f, s, nbrs, *_ = md_efs(pot, atoms, species)
    assert abs(e - e_ref) < 1e-10 * max(1.0, abs(e_ref)) and abs(e2 - e_ref) < 1e-10 * max(1.0, abs(e_ref))
    np.testing.assert_allclose(f, f_ref, atol=1e-9)
    np.testing.assert_allclose(voigt(s), s_ref, atol=1e-10)


def test_one_atom_cell_far_smaller_than_cutoff():
    """A 1-atom bcc cell (dozens of images of the atom in its list): energy and stress as the calculator's."""
    pot = ZhouEAM("Mg")
    atoms = bulk("Mg", "bcc", a=3.6)
    e_ref, f_ref, s_ref = reference(pot, atoms)
    e, _, f, s, nbrs, *_ = md_efs(pot, atoms)
    assert nbrs.max_count > 50  # images of the one atom
    assert abs(e - e_ref) < 1e-10
    np.testing.assert_allclose(voigt(s), s_ref, atol=1e-10)


def test_forces_and_stress_are_derivatives_of_the_energy_function():
    """Forces = -dE/dx and virial = -dE/dε by central finite differences of energy_fn itself (the list held fixed;
    the skin covers the 1e-4 Å steps)."""
    atoms = triclinic_mg(rattle=0.1, seed=5)
    pot = ZhouEAM("Mg")
    fn, nfn = energy_fn(pot, atoms)
    R, cell = jnp.asarray(atoms.positions), jnp.asarray(atoms.cell.array)
    nbrs = nfn.allocate(R, cell=cell)
    e, f, w = efs_fn(pot, atoms)(R, nbrs)
    h = 1e-4
    for i, k in [(0, 0), (1, 2), (0, 1)]:
        d = jnp.zeros_like(R).at[i, k].set(h)
        fd = -(fn(R + d, nbrs) - fn(R - d, nbrs)) / (2 * h)
        assert abs(float(fd) - float(f[i, k])) < 1e-6
    for a, b in [(0, 0), (2, 2), (0, 1), (1, 2)]:
        eps = jnp.zeros((3, 3)).at[a, b].set(h)
        strained = lambda sgn: fn(R @ (jnp.eye(3) + sgn * eps), nbrs, cell=cell @ (jnp.eye(3) + sgn * eps))  # noqa: E731
        fd = -(strained(1) - strained(-1)) / (2 * h)
        assert abs(float(fd) - float(w[a, b])) < 1e-6


def test_a_box_change_rebuilds_the_list_and_energies_stay_exact():
    """Compressing the box (atoms scaled with it) so that listed distances shrink by more than the skin allows
    (15 %; and 10 %, where the list is still complete but would not be in two more such steps) rebuilds it inside the
    jit-side update; 4 % compression and uniform expansion keep it. Energies after every update equal the
    calculator's on the same structure; the energy function given the old list where it may miss pairs (15 %) returns
    NaN, not a wrong number."""
    pot = ZhouEAM("Mg")
    atoms = triclinic_mg(repeat=(2, 2, 1))
    fn, nfn = energy_fn(pot, atoms, skin=1.0, capacity_multiplier=2.0)  # room for the 15 % compression's neighbours
    R, cell = jnp.asarray(atoms.positions), jnp.asarray(atoms.cell.array)
    nbrs = nfn.allocate(R, cell=cell)
    for scale, rebuilt in [(1.03, False), (0.96, False), (0.90, True), (0.85, True)]:
        b = atoms.copy()
        b.set_cell(atoms.cell.array * scale, scale_atoms=True)
        new = nfn.update(jnp.asarray(b.positions), nbrs, cell=jnp.asarray(b.cell.array))
        assert int(new.n_builds) == int(rebuilt) and not bool(new.did_buffer_overflow), scale
        assert abs(float(fn(jnp.asarray(b.positions), new)) - reference(pot, b)[0]) < 1e-9
        stale = fn(jnp.asarray(b.positions), nbrs, cell=jnp.asarray(b.cell.array))  # the old list, not updated
        assert np.isnan(float(stale)) if scale < 0.88 else abs(float(stale) - reference(pot, b)[0]) < 1e-9
    # a shear of the cell alone, positions fixed in fractional coordinates, the same
    b = atoms.copy()
    b.set_cell(atoms.cell.array + np.array([[0, 0, 0], [0.6, 0, 0], [0, 0, 0]]), scale_atoms=True)
    new = nfn.update(jnp.asarray(b.positions), nbrs, cell=jnp.asarray(b.cell.array))
    assert abs(float(fn(jnp.asarray(b.positions), new)) - reference(pot, b)[0]) < 1e-9


def test_overflow_is_flagged_and_reallocation_restores_the_energy():
    """A list allocated with exactly the neighbours it needs overflows when the box is compressed: the update flags
    it, and a re-allocation outside jit gives the calculator's energy again."""
    pot = LJ
    atoms = argon(2)
    fn, nfn = energy_fn(pot, atoms)
    R, cell = jnp.asarray(atoms.positions), jnp.asarray(atoms.cell.array)
    nbrs = nfn.allocate(R, cell=cell, capacity=int(nfn.allocate(R, cell=cell).max_count))
    b = atoms.copy()
    b.set_cell(atoms.cell.array * 0.93, scale_atoms=True)
    Rb, cb = jnp.asarray(b.positions), jnp.asarray(b.cell.array)
    new = nfn.update(Rb, nbrs, cell=cb)
    assert bool(new.did_buffer_overflow) and int(new.max_count) > nbrs.capacity
    again = nfn.allocate(Rb, cell=cb)
    assert not bool(again.did_buffer_overflow)
    assert abs(float(fn(Rb, again)) - reference(pot, b)[0]) < 1e-10


def test_verlet_list_is_refiltered_on_the_device_and_candidates_rebuilt_on_the_host():
    """The two levels: moving atoms past the Verlet skin (0.3 Å) but within the candidates' extra skin refilters the
    candidates on the device (no host build); moving one atom past the candidates' bound rebuilds them on the host. After
    each update the list holds exactly the host builder's pairs within cutoff + skin (vesin at these positions, an
    independent build), and the energy is the calculator's."""
    from mtpjax.md.energy import filter_pairs
    from mtpjax.neighbors import pairs

    pot = ZhouEAM("Mg")
    atoms = triclinic_mg(repeat=(2, 2, 2), rattle=0.0)
    fn, nfn = energy_fn(pot, atoms, skin=0.3, outer_skin=1.0)
    R, cell = jnp.asarray(atoms.positions), jnp.asarray(atoms.cell.array)
    nbrs = nfn.allocate(R, cell=cell)
    assert nbrs.candidate_capacity > nbrs.capacity
    rng = np.random.default_rng(3)
    step = rng.normal(size=R.shape)
    step = 0.2 * step / np.linalg.norm(step, axis=1, keepdims=True)  # every atom 0.2 Å: past skin / 2 = 0.15 Å
    far = np.zeros(R.shape)
    far[5] = [0.9, 0.0, 0.0]  # one atom 0.9 Å: past the candidates' outer_skin / 2 = 0.5 Å
    for move, host in [(step, 0), (step + far, 1)]:
        b = atoms.copy()
        b.positions = atoms.positions + move
        new = nfn.update(jnp.asarray(b.positions), nbrs)
        assert int(new.n_builds) == 1 and int(new.n_host_builds) == host and not bool(new.did_buffer_overflow)
        i, j, shift = pairs(b.positions, b.cell.array, True, nfn.list_cutoff)
        got = {(a, int(new.neighbours.index[a, k]), *np.asarray(new.neighbours.shift[a, k]).astype(int))
               for a in range(len(b)) for k in range(new.capacity) if bool(new.neighbours.mask[a, k])}
        assert got == {(int(a), int(c), *s) for a, c, s in zip(i, j, np.asarray(shift).astype(int))}
        pad = ~np.asarray(new.neighbours.mask)  # dense_neighbours' padding: the listed pairs first, then index 0, shift 0
        assert not np.any(np.diff(pad.astype(int), axis=1) < 0)
        assert not np.any(np.asarray(new.neighbours.index)[pad]) and not np.any(np.asarray(new.neighbours.shift)[pad])
        assert abs(float(fn(jnp.asarray(b.positions), new)) - reference(pot, b)[0]) < 1e-9
    # the filter drops what does not fit and says how many there were
    _, count = filter_pairs(nbrs.candidates, R, cell, nfn.list_cutoff, 4)
    assert int(count) == int(nbrs.max_count) > 4


def test_run_reallocates_after_overflow_and_continues():
    """NPT at 3 GPa compresses argon (by > 3 % in 0.8 ps) from a list with a tiny capacity (exactly its neighbours): the run detects the
    overflow, re-allocates outside jit, reruns the chunk and goes on; the final frame's energy is the calculator's."""
    atoms = argon(2)
    fn, nfn = energy_fn(LJ, atoms)
    tight = int(nfn.allocate(jnp.asarray(atoms.positions), cell=jnp.asarray(atoms.cell.array)).max_count)
    r = run_md(LJ, atoms, ensemble="npt_mtk", steps=160, timestep=5.0, temperature=40.0, pressure=3.0,
               barostat_time=200.0, thermostat_time=100.0, log_every=20, capacity=tight)
    assert r.reallocations >= 1 and r.capacity > tight
    assert r.column("volume_A3")[-1] < 0.97 * atoms.get_volume()
    assert abs(r.atoms.get_potential_energy() - reference(LJ, r.atoms)[0]) < 1e-9


# ------------------------------------------------------------------------------------------------------------
# integrators


def test_nve_energy_drift_is_bounded_and_frames_are_exact():
    """NVE of 32 argon atoms at ~40 K, dt 5 fs, 1000 steps (5 ps; several rebuilds): |E(t) - E(0)| stays below
    1e-4 eV/atom (velocity Verlet's fluctuation, no secular drift); every trajectory frame's energy equals the
    calculator's (the list was never stale)."""
    atoms = argon(2)
    atoms.rattle(0.02, seed=0)
    r = run_md(LJ, atoms, ensemble="nve", steps=1000, timestep=5.0, temperature=80.0, log_every=50)
    etot = r.column("total_energy_eV")
    assert r.builds >= 1
    assert np.abs(etot - etot[0]).max() / len(atoms) < 1e-4
    assert np.mean(r.column("temperature_K")[5:]) > 20.0  # it did move
    e_ref, f_ref, s_ref = reference(LJ, r.atoms)
    assert abs(r.atoms.get_potential_energy() - e_ref) < 1e-9
    np.testing.assert_allclose(r.atoms.get_forces(), f_ref, atol=1e-9)


@pytest.mark.parametrize("ensemble", ["nvt_langevin", "nvt_nose_hoover"])
def test_nvt_mean_temperature_within_statistical_bounds(ensemble):
    """108 argon atoms at 60 K, 3000 steps of 5 fs: the mean temperature of the last 2/3 lies within 4 standard
    errors of 60 K, the standard error from 10 block means; the instantaneous spread is near the canonical
    T sqrt(2 / 3N) (within a factor 2)."""
    atoms = argon(3)
    target = 60.0
    r = run_md(LJ, atoms, ensemble=ensemble, steps=3000, timestep=5.0, temperature=target, initial_temperature=2 * target,
               thermostat_time=100.0, log_every=10, seed=3)
    t = r.column("temperature_K")[len(r.log) // 3:]
    blocks = np.array([b.mean() for b in np.array_split(t, 10)])
    se = blocks.std(ddof=1) / np.sqrt(len(blocks))
    assert abs(t.mean() - target) < 4 * se + 0.5, (t.mean(), se)
    canonical = target * np.sqrt(2 / (3 * len(atoms)))
    assert 0.5 * canonical < t.std() < 2 * canonical


def test_nose_hoover_invariant_is_conserved():
    """Nosé–Hoover NVT: jax-md's extended energy drifts by less than 2e-4 eV/atom over 1000 steps while the
    physical energy E_pot + K changes by far more (the thermostat works)."""
    atoms = argon(2)
    r = run_md(LJ, atoms, ensemble="nvt_nose_hoover", steps=1000, timestep=5.0, temperature=60.0, initial_temperature=120.0,
               thermostat_time=50.0, log_every=50)
    c, e = r.column("conserved_eV"), r.column("total_energy_eV")
    assert np.abs(c - c[0]).max() / len(atoms) < 2e-4
    assert np.ptp(e) > 10 * np.ptp(c)


def test_npt_matches_ase_mtknpt_step_for_step():
    """The full-cell MTK integrator reproduces ASE's MTKNPT (same splitting, 9 cell degrees of freedom) on a
    rattled triclinic Mg cell at 1 GPa: positions and cell agree to 1e-9 Å after 40 steps, and so does the
    conserved quantity (to 1e-9 eV)."""
    import ase.units as u
    from ase.md.nose_hoover_chain import MTKNPT

    pot = ZhouEAM("Mg")
    atoms = triclinic_mg(repeat=(2, 2, 1), rattle=0.05, seed=3)
    rng = np.random.default_rng(0)
    p = rng.normal(size=atoms.positions.shape) * np.sqrt(atoms.get_masses()[:, None] * u.kB * 300)
    p -= p.mean(0)
    atoms.set_momenta(p)
    b = atoms.copy()
    b.calc = get_calculator(pot)
    dyn = MTKNPT(b, timestep=2 * u.fs, temperature_K=300, pressure_au=1 * u.GPa, tdamp=50 * u.fs, pdamp=200 * u.fs)
    integ, nfn = make_integrator(pot, atoms, "npt_mtk", timestep=2.0, temperature=300, pressure=1.0, thermostat_time=50,
                                 barostat_time=200, npt_cell_dof=9)
    R, h = jnp.asarray(atoms.positions), jnp.asarray(atoms.cell.array)
    nbrs = nfn.allocate(R, cell=h)
    s = integ.init(jax.random.PRNGKey(0), R, h, atoms.get_masses(), nbrs, momenta=jnp.asarray(p))
    step = jax.jit(integ.step)
    for _ in range(40):
        s = step(s, nbrs)
        nbrs = nfn.update(s.position, nbrs, cell=s.cell)
    dyn.run(40)
    assert np.abs(np.asarray(s.position) - b.positions).max() < 1e-9
    assert np.abs(np.asarray(s.cell) - b.cell.array).max() < 1e-9
    assert np.abs(np.asarray(s.cell) - atoms.cell.array).max() > 1e-3  # the cell did move
    assert abs(float(integ.conserved(s, nbrs)) - dyn.get_conserved_energy()) < 1e-9


def test_npt_conserved_quantity_and_mean_pressure():
    """NPT (MTK, full cell) of 108 argon atoms at 60 K and 0.2 GPa, 2000 steps of 5 fs: the extended energy drifts by
    less than 3e-4 eV/atom, and the mean pressure and temperature of the last 2/3 lie within 4 block standard errors
    (10 blocks) of their targets."""
    atoms = argon(3)
    target = 0.2
    r = run_md(LJ, atoms, ensemble="npt_mtk", steps=2000, timestep=5.0, temperature=60.0, initial_temperature=120.0,
               pressure=target, thermostat_time=100.0, barostat_time=400.0, log_every=10, seed=1)
    c = r.column("conserved_eV")
    assert np.abs(c - c[0]).max() / len(atoms) < 3e-4
    p = r.column("pressure_GPa")[len(r.log) // 3:]
    blocks = np.array([b.mean() for b in np.array_split(p, 10)])
    se = blocks.std(ddof=1) / np.sqrt(len(blocks))
    assert abs(p.mean() - target) < 4 * se + 0.01, (p.mean(), se)
    t = r.column("temperature_K")[len(r.log) // 3:]
    blocks = np.array([b.mean() for b in np.array_split(t, 10)])
    assert abs(t.mean() - 60.0) < 4 * blocks.std(ddof=1) / np.sqrt(len(blocks)) + 0.5, t.mean()


# ------------------------------------------------------------------------------------------------------------
# the driver: instability, files, the command


def test_exploding_run_stops_with_a_message_and_keeps_the_last_good_frame(tmp_path):
    """Two argon atoms 1.6 Å apart (LJ repulsion ~ 300 eV): the run blows up; it stops with MDInstability naming the
    reason, the trajectory ends with the last good frame (finite, the step the error names) and the log keeps only
    good rows."""
    atoms = argon(2)
    atoms.positions[1] = atoms.positions[0] + [1.6, 0.0, 0.0]
    traj, log = tmp_path / "t.extxyz", tmp_path / "thermo.csv"
    with pytest.raises(MDInstability, match="unstable between steps") as err:
        run_md(LJ, atoms, ensemble="nve", steps=400, timestep=5.0, temperature=40.0, log_every=5, trajectory=traj,
               trajectory_every=100, log=log)
    assert any(w in str(err.value) for w in ("max_temperature", "closer than", "non-finite", "overlap"))
    last = err.value.atoms
    assert np.isfinite(last.positions).all()
    frames = mtpjax.read_structures(traj)
    assert frames[-1].info["step"] == err.value.step
    np.testing.assert_allclose(frames[-1].positions, last.positions)
    rows = list(csv.DictReader(open(log)))
    assert int(rows[-1]["step"]) == err.value.step
    assert all(np.isfinite(float(r["temperature_K"])) for r in rows)


def test_traj_output_holds_frames_with_momenta_and_energies(tmp_path):
    """An ASE .traj trajectory: one frame per trajectory_every steps, momenta as the run's, energies the calculator's;
    a list as ``trajectory`` gets the same frames in memory."""
    atoms = argon(1)
    traj = tmp_path / "run.traj"
    r = run_md(LJ, atoms, ensemble="nvt_langevin", steps=40, timestep=5.0, temperature=40.0, log_every=10,
               trajectory=traj, trajectory_every=20)
    frames = mtpjax.read_structures(traj)
    assert len(frames) == 3
    np.testing.assert_allclose(frames[-1].get_momenta(), r.atoms.get_momenta())
    assert abs(frames[-1].get_potential_energy() - reference(LJ, frames[-1])[0]) < 1e-10
    # a list instead of a path: the same frames in memory (the same run: same seed), no file
    kept = []
    run_md(LJ, atoms, ensemble="nvt_langevin", steps=40, timestep=5.0, temperature=40.0, log_every=10,
           trajectory=kept, trajectory_every=20)
    assert [f.info["step"] for f in kept] == [0, 20, 40]
    for f, g in zip(kept, frames):
        np.testing.assert_allclose(f.positions, g.positions, atol=1e-12)
        assert f.get_potential_energy() == pytest.approx(g.get_potential_energy(), abs=1e-12)


def test_bad_settings_are_refused():
    atoms = argon(1)
    with pytest.raises(MtpjaxError, match="multiple of log_every"):
        run_md(LJ, atoms, steps=10, log_every=3, trajectory="x.extxyz", trajectory_every=10)
    with pytest.raises(MtpjaxError, match="unknown ensemble"):
        run_md(LJ, atoms, ensemble="npt_berendsen", steps=1)
    atoms.pbc = (True, True, False)
    with pytest.raises(MtpjaxError, match="periodic"):
        run_md(LJ, atoms, steps=1)


def test_md_command_end_to_end(tmp_path, capsys):
    """``mtpjax md CONFIG`` on 16 atoms of hcp Mg with the Zhou EAM (NPT, full cell): the files appear, the log has
    its rows, the trajectory's frames carry the calculator's energies, the command line overrides the file; a
    misspelt key is an error naming the file and the key (exit 2)."""
    from mtpjax.cli import main

    cfg = tmp_path / "md.toml"
    cfg.write_text('[md]\npotential = "zhou:Mg"\nelement = "Mg"\ncrystal = "hcp"\na = 3.21\nc = 5.21\nrepeat = [2, 2, 2]\n'
                   'ensemble = "npt_mtk"\ntemperature = 300.0\ntimestep = 2.0\nsteps = 100\nlog_every = 10\n'
                   'trajectory_every = 50\noutput = "out"\n')
    assert main(["md", str(cfg), "--steps", "60", "--trajectory-every", "20"]) == 0
    out = tmp_path / "out"
    rows = list(csv.DictReader(open(out / "thermo.csv")))
    assert [int(r["step"]) for r in rows] == list(range(0, 61, 10))
    frames = mtpjax.read_structures(out / "trajectory.extxyz")
    assert [f.info["step"] for f in frames] == [0, 20, 40, 60]
    for f in frames[::3]:  # extended XYZ keeps positions to 1e-8 Å: energies to ~1e-8 eV
        assert abs(f.get_potential_energy() - reference(ZhouEAM("Mg"), f)[0]) < 1e-6
    summary = mtpjax.io.files.read_json(out / "summary.json")
    assert summary["steps"] == 60 and summary["n_atoms"] == 16
    cfg.write_text(cfg.read_text().replace("timestep", "time_step"))
    assert main(["md", str(cfg)]) == 2
    assert "time_step" in capsys.readouterr().err


@pytest.mark.slow
def test_npt_mean_cell_matches_ase_mtknpt():
    """hcp Mg (Zhou EAM, 4x4x3 = 96 atoms) at 300 K and 0 GPa, 4 ps after 1 ps of equilibration: the mean a and c of
    mtpjax's full-cell MTK agree with ASE's MTKNPT (its own run, its own random velocities) within 0.3 %."""
    import ase.units as u
    from ase.md.nose_hoover_chain import MTKNPT

    pot = ZhouEAM("Mg")
    atoms = bulk("Mg", "hcp", a=3.21, c=5.21).repeat((4, 4, 3))
    r = run_md(pot, atoms, ensemble="npt_mtk", steps=2500, timestep=2.0, temperature=300.0, pressure=0.0,
               thermostat_time=100.0, barostat_time=500.0, log_every=10, npt_cell_dof=9)
    keep = r.column("time_fs") > 1000
    a_md, c_md = r.column("a_A")[keep].mean() / 4, r.column("c_A")[keep].mean() / 3
    b = atoms.copy()
    b.calc = get_calculator(pot)
    p = np.random.default_rng(7).normal(size=b.positions.shape) * np.sqrt(b.get_masses()[:, None] * u.kB * 300)
    b.set_momenta(p - p.mean(axis=0))  # Maxwell-Boltzmann at 300 K, no net momentum
    dyn = MTKNPT(b, timestep=2 * u.fs, temperature_K=300, pressure_au=0.0, tdamp=100 * u.fs, pdamp=500 * u.fs)
    cells = []
    dyn.attach(lambda: cells.append(b.cell.cellpar()[[0, 2]]), interval=10)
    dyn.run(2500)
    cells = np.array(cells[len(cells) * 2 // 5:])
    a_ase, c_ase = cells[:, 0].mean() / 4, cells[:, 1].mean() / 3
    assert abs(a_md / a_ase - 1) < 3e-3 and abs(c_md / c_ase - 1) < 3e-3, (a_md, a_ase, c_md, c_ase)
