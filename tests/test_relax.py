"""mtpjax.relax: the one relaxation module (batched FIRE on jax-md for JAX potentials, ASE's FIRE and
FrechetCellFilter for other oracles, the neighbour-list validity bound, the lattice equilibrium, the starting
volume), and the generator's VOLMIN / CELLMIN / INTMIN stages on top of it.

Independent references: ASE's own Lennard-Jones calculator (numpy) relaxed by ASE's FIRE; finite differences of the
energy; fresh neighbour lists; lattice sums; the oracle's row of reference_properties.csv.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLJ

from conftest import SHARED, need
from mtpjax.generate import pipeline
from mtpjax.generate.config import RandspgConfig, RelaxConfig
from mtpjax.generate.randspg import generate_one, tasks
from mtpjax.generate.structures import is_failure
from mtpjax.neighbors import pairs
from mtpjax.oracles import ASEOracle, LennardJones, TabulatedEAM, label, make_oracle
from mtpjax.relax import CELL_MODES, PHASES, equilibrium, guess_volume, hex_parameters, prototype, relax
from mtpjax.relax import batched, fire
from mtpjax.relax.result import cell_dofs, project

GPA = 160.21766208
SUN = SHARED / "data" / "potentials" / "Mg_mm.eam.fs"
EPS, SIGMA, RC, RO = 0.01032, 3.40, 8.5, 6.5
#: Lennard-Jones argon with a smooth cutoff (continuous energy and forces): mtpjax's and ASE's are the same function.
LJ = LennardJones(EPS, SIGMA, cutoff=RC, onset=RO)
MODES = ("fixed", "full", "volume", "shape", "normal", "mask")
XY_MASK = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], bool)  # xx, yy, xy free


def ase_lj(rc=RC, ro=RO):
    return AseLJ(epsilon=EPS, sigma=SIGMA, rc=rc, ro=ro, smooth=True)


def _start():
    """A strained, rattled 4-atom fcc argon cube (smaller than the cutoff: many periodic images)."""
    a = prototype("fcc", "Ar", 1.04 * guess_volume("Ar"), cubic=True)
    eps = np.array([[0.04, 0.01, 0.0], [0.01, -0.02, 0.005], [0.0, 0.005, 0.03]])
    a.set_cell(a.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    a.rattle(0.05, seed=2)
    a.info["name"] = "fcc Ar strained"
    return a


def _mode(m):
    return ("full", XY_MASK) if m == "mask" else (m, None)


def _fresh_efs(atoms, calc):
    a = atoms.copy()
    a.calc = calc
    return a.get_potential_energy(), a.get_forces(), a.get_stress(voigt=False)


@pytest.fixture(scope="module")
def start():
    return _start()


@pytest.fixture(scope="module")
def jax_results(start):
    """Every cell mode in one batched call (one compiled shape)."""
    cells, masks = zip(*(_mode(m) for m in MODES))
    res = relax(LJ, [start] * len(MODES), cell=list(cells), cell_mask=list(masks), fmax=1e-5, smax=1e-5, names=list(MODES))
    return dict(zip(MODES, res))


def test_lj_is_ases_lj(start):
    e, f, s = _fresh_efs(start, ase_lj())
    from mtpjax.calculator import PotentialCalculator

    e2, f2, s2 = _fresh_efs(start, PotentialCalculator(LJ))
    assert e == pytest.approx(e2, abs=1e-12) and np.abs(f - f2).max() < 1e-12 and np.abs(s - s2).max() < 1e-12


@pytest.mark.parametrize("mode", MODES)
def test_cell_modes_agree_with_ase_fire(start, jax_results, mode):
    """ASE's FIRE + FrechetCellFilter with ASE's own LJ (the ASE path of relax) reaches the same minimum."""
    cell, mask = _mode(mode)
    (ax,) = relax(ase_lj(), [start], cell=cell, cell_mask=mask, fmax=1e-5, smax=1e-5)
    jx = jax_results[mode]
    assert jx.ok and jx.converged and ax.ok and ax.converged, (jx.message, ax.message)
    assert jx.fmax <= 1e-5 and jx.smax <= 1e-5 and ax.fmax <= 1e-5 and ax.smax <= 1e-5
    assert jx.energy < jx.initial_energy
    assert jx.energy == pytest.approx(ax.energy, abs=1e-8)
    assert jx.atoms.get_volume() == pytest.approx(ax.atoms.get_volume(), rel=2e-5)  # smax 1e-5 GPa, B ~ 3 GPa
    np.testing.assert_allclose(jx.atoms.cell.cellpar(), ax.atoms.cell.cellpar(), atol=1e-4)
    assert ax.steps > 0 and jx.steps > 0 and jx.n_builds >= 1 and ax.n_builds == 0


def test_ase_path_filter_is_ases_step_for_step_with_one_blas_thread(start):
    """The ASE path's cell filter (mtpjax.relax.ase_fire) is ASE's FrechetCellFilter with its own matrix functions
    on one BLAS thread: 15 FIRE steps give the same cell and positions as the plain filter, and inside the limit every
    numpy/scipy BLAS runs one thread."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from threadpoolctl import threadpool_info

    from mtpjax.relax.ase_fire import _cell_filter, single_threaded_blas

    with single_threaded_blas():
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} <= {1}
    runs = []
    for make in (FrechetCellFilter, _cell_filter):
        a = start.copy()
        a.calc = ase_lj()
        FIRE(make(a), logfile=None, maxstep=0.2).run(fmax=0.0, steps=15)
        runs.append((a.cell.array.copy(), a.positions.copy()))
    np.testing.assert_allclose(runs[1][0], runs[0][0], atol=1e-12)
    np.testing.assert_allclose(runs[1][1], runs[0][1], atol=1e-12)
    assert np.abs(runs[1][0] - start.cell.array).max() > 1e-3  # the cell did move


@pytest.mark.parametrize("mode", MODES)
def test_zero_forces_and_stress_by_finite_differences(jax_results, mode):
    """Central differences of ASE's LJ energy at the relaxed structure: forces on the atoms and derivatives along the
    free strain components vanish (to the convergence tolerance plus the differencing error)."""
    r = jax_results[mode]
    a = r.atoms.copy()
    a.calc = ase_lj()
    h, d = 1e-4, 1e-6
    x0, c0 = a.positions.copy(), a.cell.array.copy()

    def energy(x=x0, eps=np.zeros((3, 3))):
        a.set_cell(c0 @ (np.eye(3) + eps), scale_atoms=False)
        a.positions = x @ (np.eye(3) + eps)
        return a.get_potential_energy()

    f = np.zeros_like(x0)
    for i in range(len(a)):
        for k in range(3):
            dx = np.zeros_like(x0)
            dx[i, k] = h
            f[i, k] = -(energy(x0 + dx) - energy(x0 - dx)) / (2 * h)
    W = np.zeros((3, 3))  # -dE/dε, symmetric strains
    for i in range(3):
        for j in range(i, 3):
            e = np.zeros((3, 3))
            e[i, j] = e[j, i] = d
            g = -(energy(eps=e) - energy(eps=-e)) / (2 * d)
            W[i, j] = W[j, i] = g if i == j else g / 2
    V = abs(np.linalg.det(c0))
    smask, hydro, constvol = cell_dofs(*_mode(mode))
    assert np.abs(f).max() < 1e-5 * 1.5 + 1e-7
    assert np.abs(project(W, smask, hydro, constvol)).max() / V * GPA < 1e-5 * 1.5 + 1e-6
    if mode != "fixed":  # what relax reports is what the finite differences see
        np.testing.assert_allclose(r.stress * V, -np.array([W[0, 0], W[1, 1], W[2, 2], W[1, 2], W[0, 2], W[0, 1]]),
                                   atol=1e-7)


def test_modes_keep_what_they_must(start, jax_results):
    c0 = start.cell.cellpar()
    vol = jax_results["volume"].atoms
    ratio = vol.cell.cellpar()[:3] / c0[:3]
    assert ratio == pytest.approx(np.full(3, ratio[0]), rel=1e-10)  # hydrostatic: shape kept
    np.testing.assert_allclose(vol.cell.cellpar()[3:], c0[3:], atol=1e-9)
    assert jax_results["shape"].atoms.get_volume() == pytest.approx(start.get_volume(), rel=1e-12)
    np.testing.assert_array_equal(jax_results["fixed"].atoms.cell.array, start.cell.array)
    nz = jax_results["normal"].atoms.cell.array  # only ε_zz: rows change only in z
    np.testing.assert_allclose(nz[:, :2], start.cell.array[:, :2], atol=1e-12)
    mk = jax_results["mask"].atoms.cell.array  # xx, yy, xy: the z components stay
    np.testing.assert_allclose(mk[:, 2], start.cell.array[:, 2], atol=1e-12)
    # pure cell relaxations keep fractional coordinates (the generator's VOLMIN and CELLMIN)
    res = relax(LJ, [start, start], cell=["volume", "full"], positions=False, fmax=1e-5, smax=1e-5)
    for r in res:
        assert r.ok and r.fmax == 0.0
        np.testing.assert_allclose(r.atoms.get_scaled_positions(wrap=False), start.get_scaled_positions(wrap=False),
                                   atol=1e-12)
    (ax,) = relax(ase_lj(), [start], cell="full", positions=False, fmax=1e-5, smax=1e-5)
    np.testing.assert_allclose(ax.atoms.get_scaled_positions(), start.get_scaled_positions(), atol=1e-9)
    assert ax.energy == pytest.approx(res[1].energy, abs=1e-8)
    # fix masks, batched and ASE (FixCartesian): frozen components do not move
    frozen = np.zeros((4, 3), bool)
    frozen[:, :2] = True
    for r in (relax(LJ, [start], fix=[frozen], fmax=1e-5)[0], relax(ase_lj(), [start], fix=[frozen], fmax=1e-5)[0]):
        assert r.ok
        np.testing.assert_allclose(r.atoms.positions[:, :2], start.positions[:, :2], atol=1e-12)
        assert np.abs(r.atoms.positions[:, 2] - start.positions[:, 2]).max() > 1e-3


def test_validity_bound_never_misses_a_pair():
    """list_valid (the one bound): whenever it holds, a list built at (u_b, F_b) with cutoff + skin contains every
    pair a fresh list finds inside the cutoff at (u, F)."""
    rng = np.random.default_rng(0)
    cutoff, skin = 5.0, 1.0
    C0 = np.diag([6.0, 5.5, 7.0]) + rng.uniform(-0.5, 0.5, (3, 3))
    ub = rng.uniform(0, 1, (8, 3)) @ C0
    Fb = np.eye(3) + rng.uniform(-0.05, 0.05, (3, 3))
    i, j, s = pairs(ub @ Fb, C0 @ Fb, True, cutoff + skin)
    built = set(zip(i.tolist(), j.tolist(), map(tuple, s.tolist())))
    n_valid = n_changed = 0
    for k in range(300):
        size = 0.25 * (k % 6 + 1) / 6
        u = ub + rng.normal(scale=size, size=ub.shape)
        F = Fb @ (np.eye(3) + rng.uniform(-size / 4, size / 4, (3, 3)))
        if not bool(fire.list_valid(u, F, ub, Fb, cutoff, cutoff + skin)):
            continue
        n_valid += 1
        i, j, s = pairs(u @ F, C0 @ F, True, cutoff)
        fresh = set(zip(i.tolist(), j.tolist(), map(tuple, s.tolist())))
        assert fresh <= built
        n_changed += fresh != {p for p in built if np.linalg.norm((u[p[1]] - u[p[0]] + np.array(p[2]) @ C0) @ F) < cutoff}
    assert n_valid > 100 and n_changed == 0


def test_never_a_stale_neighbour_list(monkeypatch):
    """A cell 1.5 × too large shrinks through many lists; the result equals a fresh evaluation."""
    from mtpjax.evaluate import Evaluator
    from mtpjax.verify.prototypes import evaluate

    a = prototype("fcc", "Ar", 1.5 * guess_volume("Ar"), cubic=True)
    a.rattle(0.05, seed=1)
    builds = []
    monkeypatch.setattr(batched, "pairs", lambda *x, **k: builds.append(1) or pairs(*x, **k))
    (r,) = relax(LJ, [a], cell="full", fmax=1e-6, smax=1e-6, skin=0.5)
    assert r.ok and r.n_builds > 3 and len(builds) == r.n_builds
    assert r.atoms.get_volume() < 0.75 * a.get_volume()
    fresh = evaluate(Evaluator(LJ), [r.atoms])[0]
    assert fresh.energy == pytest.approx(r.energy, abs=1e-12)
    assert np.abs(fresh.forces - r.forces).max() < 1e-12
    assert np.abs(fresh.stress - r.stress).max() < 1e-12 and np.abs(fresh.stress).max() * GPA < 1e-6


# ------------------------------------------------------------------------------------------------ lattices
def test_guess_volume():
    a, q = 3.21, 1.624  # ASE's Mg
    assert guess_volume("Mg") == pytest.approx(math.sqrt(3) / 4 * a**3 * q, rel=1e-3)
    assert guess_volume("Ar") == pytest.approx(5.26**3 / 4, rel=1e-3)
    from ase.data import covalent_radii

    assert guess_volume("O") == pytest.approx((2 * covalent_radii[8]) ** 3 / math.sqrt(2))  # a molecule in ASE's data
    assert guess_volume("Xx") == 20.0


def test_lattice_equilibrium_lj_against_lattice_sums():
    """fcc and hcp argon with a long cutoff (4σ, smooth from 3.5σ): fcc a from ASE's LJ lattice sum minimised directly;
    the nearest-neighbour distance within 0.2 % of the infinite sums' 1.09017 σ; hcp near-ideal c/a, E(hcp) ≈ E(fcc).
    (The ASE path's equilibrium is checked in the next test.)"""
    from scipy.optimize import minimize_scalar

    rc, ro = 4 * SIGMA, 3.5 * SIGMA
    lj = LennardJones(EPS, SIGMA, cutoff=rc, onset=ro)
    eq = equilibrium(lj, ["fcc", "hcp"], "Ar")
    assert all(r.ok and r.converged for r in eq.values())

    def e_fcc(a):
        at = bulk("Ar", "fcc", a=a)
        at.calc = ase_lj(rc, ro)
        return at.get_potential_energy()

    opt = minimize_scalar(e_fcc, bounds=(4.9, 5.6), method="bounded", options={"xatol": 1e-9})
    a_fcc = (4 * eq["fcc"].atoms.get_volume()) ** (1 / 3)
    assert a_fcc == pytest.approx(opt.x, abs=2e-5)
    assert eq["fcc"].energy_per_atom == pytest.approx(opt.fun, abs=1e-10)
    assert a_fcc / math.sqrt(2) / SIGMA == pytest.approx(1.09017, rel=2e-3)
    hp = hex_parameters(eq["hcp"].atoms)
    assert hp["c_over_a"] == pytest.approx(math.sqrt(8 / 3), abs=5e-3)
    assert eq["hcp"].energy_per_atom == pytest.approx(eq["fcc"].energy_per_atom, rel=1e-3)


def test_lattice_equilibrium_fixed_volume_and_scan():
    v = 0.9 * guess_volume("Ar")
    eq = equilibrium(LJ, ["hcp", "bcc"], "Ar", volume=v, cell="shape")
    h = eq["hcp"]
    assert h.ok and h.atoms.get_volume() / 2 == pytest.approx(v, rel=1e-12)
    assert h.smax < 1e-5 and -h.stress[:3].mean() * GPA > 0.05  # compressed: only the deviatoric stress vanishes
    assert hex_parameters(h.atoms)["c_over_a"] != pytest.approx(math.sqrt(8 / 3), abs=1e-6)
    assert eq["bcc"].ok and eq["bcc"].steps == 0  # nothing to relax at fixed volume
    free = equilibrium(LJ, ["fcc"], "Ar")["fcc"]
    far = equilibrium(LJ, ["fcc"], "Ar", volume=3 * guess_volume("Ar"), scan=True)["fcc"]  # the scan finds the basin
    assert far.ok and far.energy == pytest.approx(free.energy, abs=1e-9)
    ase_eq = equilibrium(ase_lj(), ["fcc"], "Ar")["fcc"]  # the ASE path gives the same lattice
    assert ase_eq.ok and ase_eq.energy == pytest.approx(free.energy, abs=1e-9)
    assert ase_eq.atoms.get_volume() == pytest.approx(free.atoms.get_volume(), rel=2e-5)
    assert set(PHASES) == {"hcp", "fcc", "dhcp", "bcc"} and "normal" in CELL_MODES


def test_zhou_hcp_equilibrium_is_the_reference_row():
    """reference_properties.csv: Zhou2004_EAM_ase a = 3.199 Å, c/a = 1.629, V0 = 23.093 Å³."""
    h = equilibrium(make_oracle({"type": "zhou", "element": "Mg"}), ["hcp"], "Mg")["hcp"]
    hp = hex_parameters(h.atoms)
    assert h.ok and h.smax < 1e-5
    assert hp["a"] == pytest.approx(3.199, abs=2e-3) and hp["c_over_a"] == pytest.approx(1.629, abs=2e-3)
    assert hp["volume"] == pytest.approx(23.093, abs=0.01)


# ------------------------------------------------------------------------------------------------ ASE path
def test_ase_path_failures_and_progress(start):
    from ase.calculators.calculator import Calculator

    class Raises(Calculator):
        implemented_properties = ["energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=()):
            raise RuntimeError("SCF did not converge")

    done = []
    res = relax(Raises(), [start, start], progress=done.append)
    assert [r.reason for r in res] == ["oracle_error", "oracle_error"] and sum(done) == 2
    assert "SCF" in res[0].message and not res[0].ok
    oracle = ASEOracle("ase.calculators.lj.LennardJones", species=("Ar",),
                       params=dict(epsilon=EPS, sigma=SIGMA, rc=RC, ro=RO, smooth=True))
    mg = bulk("Mg", "hcp", a=3.2, c=5.2)
    (slow, bad, ok) = relax(oracle, [start, mg, start], max_steps=[2, 10, 0])
    assert slow.reason == "not_converged" and slow.steps == 2
    assert bad.reason == "unknown_element"
    assert ok.ok and ok.steps == 0 and ok.energy == pytest.approx(ok.initial_energy)  # max_steps 0: a single point
    (jx,) = relax(LJ, [start], max_steps=0)
    assert jx.ok and jx.energy == pytest.approx(ok.energy, abs=1e-12)
    np.testing.assert_allclose(jx.forces, ok.forces, atol=1e-12)
    np.testing.assert_allclose(jx.stress, ok.stress, atol=1e-12)


def test_batched_failures_and_progress(start):
    from ase import Atoms

    collapsed = Atoms("Ar2", positions=[[0, 0, 0], [0.5, 0, 0]], cell=np.eye(3) * 6.0, pbc=True)
    huge = start.copy()
    huge.set_cell(start.cell.array * 0.75, scale_atoms=True)  # strongly compressed: expands past the volume bound
    done = []
    res = relax(LJ, [collapsed, start, bulk("Mg", "hcp", a=3.2, c=5.2), huge], cell="full", max_volume_factor=1.3,
                progress=done.append)
    assert [r.reason for r in res] == ["collapsed", None, "unknown_element", "volume"]
    assert sum(done) == 4 and res[1].converged
    assert res[3].atoms.get_volume() / huge.get_volume() < 1.3
    with pytest.raises(Exception, match="periodic"):
        relax(LJ, [Atoms("Ar", cell=np.eye(3) * 5, pbc=[True, True, False])])


# ------------------------------------------------------------------------------------------------ Sun EAM (verify's use)
@pytest.fixture(scope="module")
def sun():
    return TabulatedEAM.from_file(need(SUN))


@pytest.fixture(scope="module")
def sun_hcp(sun):
    return equilibrium(sun, ["hcp"], "Mg")["hcp"]


def _fresh(potential, atoms):
    from mtpjax.evaluate import Evaluator
    from mtpjax.verify.prototypes import evaluate

    return evaluate(Evaluator(potential), [atoms])[0]


def test_relax_rattled_supercell_converges_and_is_not_stale(sun, sun_hcp):
    from mtpjax.verify.prototypes import supercell

    a = supercell(sun_hcp.atoms, (3, 3, 2))
    a.rattle(0.15, seed=3)
    e_start = _fresh(sun, a).energy
    (r,) = relax(sun, [a], fmax=1e-4)
    assert r.ok and r.converged and r.fmax < 1e-4
    assert r.energy < e_start
    assert 0.1 < r.max_displacement < 1.0
    fresh = _fresh(sun, r.atoms)  # an independent neighbour list
    assert fresh.energy == pytest.approx(r.energy, abs=1e-9)
    assert np.abs(fresh.forces).max() < 1e-4
    assert fresh.energy / len(a) == pytest.approx(sun_hcp.energy_per_atom, abs=1e-8)


def test_relax_small_cell_with_cell_and_rebuilds(sun, sun_hcp):
    """A 2-atom cell (far smaller than 2×cutoff: hundreds of periodic images), expanded ~35 % and sheared: the cell
    shrinks far beyond what the skin covers, so the lists are rebuilt, and it ends at the same lattice as before."""
    from mtpjax.verify.prototypes import strained

    a = strained(sun_hcp.atoms, np.array([[0.1, 0.02, 0.0], [0.02, 0.1, 0.01], [0.0, 0.01, 0.08]]))
    a.positions[0] += [0.05, -0.03, 0.02]
    assert np.linalg.norm(a.cell.array, axis=1).max() < sun.cutoff
    (r,) = relax(sun, [a], cell="full", fmax=1e-5, smax=1e-5)
    assert r.ok and r.converged and r.n_builds > 1
    assert r.smax < 1e-5 and r.fmax < 1e-5
    assert r.atoms.get_volume() / 2 == pytest.approx(sun_hcp.atoms.get_volume() / 2, abs=1e-4)
    assert sorted(r.atoms.cell.cellpar()[:3]) == pytest.approx(sorted(sun_hcp.atoms.cell.cellpar()[:3]), abs=1e-4)
    fresh = _fresh(sun, r.atoms)
    assert fresh.energy == pytest.approx(r.energy, abs=1e-10)
    assert np.abs(fresh.stress).max() * 160.2 < 1e-5


def test_relax_modes_masks_and_failures(sun, sun_hcp):
    from ase import Atoms

    from mtpjax.verify.prototypes import scaled, supercell

    big = scaled(supercell(sun_hcp.atoms, (2, 2, 2)), 21.0)  # compressed: relaxes outwards
    big.rattle(0.05, seed=1)
    frozen = np.zeros((len(big), 3), bool)
    frozen[:, :2] = True
    collapsed = Atoms("Mg2", positions=[[0, 0, 0], [0.5, 0, 0]], cell=np.eye(3) * 6.0, pbc=True)
    res = relax(sun, [big, big, big, collapsed, big], cell=["shape", "volume", "fixed", "fixed", "full"],
                fix=[None, None, frozen, None, None], fmax=1e-3, smax=1e-3)
    shape, volume, fixz, coll, full = res
    assert shape.ok and shape.atoms.get_volume() == pytest.approx(big.get_volume(), rel=1e-10)
    assert volume.ok and volume.atoms.get_volume() > big.get_volume() * 1.05
    c0, c1 = big.cell.cellpar(), volume.atoms.cell.cellpar()
    assert c1[:3] / c0[:3] == pytest.approx(np.full(3, c1[0] / c0[0]), rel=1e-8)  # hydrostatic
    assert fixz.ok and np.allclose(fixz.atoms.positions[:, :2], big.positions[:, :2], atol=1e-12)
    assert coll.reason == "collapsed" and not coll.ok
    assert full.ok and full.smax < 1e-3
    (slow,) = relax(sun, [big], cell="full", max_steps=3)
    assert slow.reason == "not_converged" and slow.steps == 3


# ------------------------------------------------------------------------------------------------ the generator's stages
def _random_cells(ref, n=6, seed=3):
    """A few RANDSPG structures (small cells, far below the cutoff) of the micro config."""
    cfg = RandspgConfig(space_groups=(1, 2), n_atoms=(1, 3), workers=1)
    out = [generate_one(t, "Mg", ref["omega0"], 0.6 * ref["nn_distance"], cfg, seed, k) for k, t in enumerate(tasks(cfg)[0])]
    return [a for a in out if not is_failure(a)][:n]


def test_generator_stages_lower_energy_stress_forces(zhou, ref, monkeypatch):
    relax_structures = pipeline.relax_structures
    structures = _random_cells(ref, n=6)
    assert min(a.cell.lengths().min() for a in structures) < zhou.cutoff  # cells smaller than the cutoff
    cfg = RelaxConfig(fmax=0.02, smax=0.05, max_steps=400, max_volume_factor=3.0)
    dmin = 0.6 * ref["nn_distance"]
    before = label(zhou, structures)
    builds = []
    monkeypatch.setattr(batched, "pairs", lambda *a, **k: builds.append(1) or pairs(*a, **k))
    hcp = bulk("Mg", "hcp", a=1.2 * ref["a"], c=1.2 * ref["c"])  # shrinks by 17 %: pairs from beyond the skin come in
    (h,) = relax_structures(zhou, [hcp], "volume", RelaxConfig(smax=1e-3), dmin)
    assert len(builds) >= 2  # the neighbour list was rebuilt on the way
    assert h.get_volume() / 2 == pytest.approx(ref["omega0"], rel=1e-3)
    done = []
    vol = relax_structures(zhou, structures, "volume", cfg, dmin, progress=done.append)
    assert sum(done) == len(structures)  # the progress callback counts every structure once
    cell = relax_structures(zhou, [a for a in vol if not is_failure(a)], "cell", cfg, dmin)
    pos = relax_structures(zhou, [a for a in cell if not is_failure(a)], "positions", cfg, dmin)
    assert sum(not is_failure(a) for a in pos) >= 3
    for mode, inp, res in (("volume", structures, vol), ("cell", [a for a in vol if not is_failure(a)], cell),
                           ("positions", [a for a in cell if not is_failure(a)], pos)):
        lab0, lab1 = label(zhou, inp), label(zhou, res)
        for a0, a1, b in zip(lab0, lab1, res):
            if is_failure(b):
                assert b.reason in ("non_finite", "collapsed", "volume", "not_converged") and b.message
                continue
            assert a1.get_potential_energy() <= a0.get_potential_energy() + 1e-9
            assert a1.info["id"] == a0.info["id"] and a1.calc is not None
            s = a1.get_stress(voigt=False) * GPA  # fresh labels: the relaxation's neighbour lists were never stale
            if mode == "volume":
                assert abs(np.trace(s)) / 3 < cfg.smax
                np.testing.assert_allclose(a1.get_scaled_positions(), a0.get_scaled_positions(), atol=1e-9)
                np.testing.assert_allclose(a1.cell.cellpar()[3:], a0.cell.cellpar()[3:], atol=1e-7)  # isotropic
            elif mode == "cell":
                assert np.abs(s).max() < cfg.smax
                np.testing.assert_allclose(a1.get_scaled_positions(), a0.get_scaled_positions(), atol=1e-9)
            else:
                assert np.linalg.norm(a1.get_forces(), axis=1).max() < cfg.fmax
                np.testing.assert_allclose(a1.cell.array, a0.cell.array, atol=1e-12)
    e0 = sum(b.get_potential_energy() for b, r in zip(before, vol) if not is_failure(r))
    assert e0 > sum(a.get_potential_energy() for a in label(zhou, [r for r in vol if not is_failure(r)]))


def test_generator_ase_path_matches_batched(zhou, ref):
    """ASE FIRE + FrechetCellFilter (one by one) reaches the same low-precision minima as the batched JAX FIRE."""
    structures = _random_cells(ref, n=1, seed=4)
    cfg = RelaxConfig(fmax=0.01, smax=0.05, max_steps=500, max_volume_factor=3.0)
    ase_oracle = ASEOracle("mtpjax.calculator:PotentialCalculator", params={"potential": zhou}, species=("Mg",))
    for mode in ("volume", "cell"):
        jx = pipeline.relax_structures(zhou, structures, mode, cfg)
        ax = pipeline.relax_structures(ase_oracle, structures, mode, cfg)
        for a, b in zip(jx, ax):
            assert is_failure(a) == is_failure(b)
            if not is_failure(a):
                assert a.get_volume() == pytest.approx(b.get_volume(), rel=5e-3)
    with pytest.raises(ValueError, match="mode"):
        pipeline.relax_structures(zhou, structures, "shape", cfg)
