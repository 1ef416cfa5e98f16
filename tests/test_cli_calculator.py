"""The ``mtpjax`` command line and the ASE calculator against MLIP's own outputs.

- ``mtpjax efs`` (in-process through :func:`mtpjax.cli.main`, and once as ``python -m mtpjax.cli``) on MLIP's
  golden inputs reproduces MLIP's ``calculate_efs`` output to the printed digits;
- the same with a realistic, trained MLIP-3 potential (``shared/bench/fit``);
- extended-XYZ input/output agrees with the ``.cfg`` path;
- :class:`mtpjax.calculator.MTPCalculator` agrees with the CLI (energy, free energy, forces, per-atom
  energies, stress = -PlusStress / volume), handles non-periodic molecules, and refuses stress for them;
- ``mtpjax basis`` writes an untrained template like MLIP's; ``mtpjax efs`` refuses an untrained one.

MLIP prints energies with 12 decimals (eV), forces with 6 (eV/Å) and PlusStress with 5 (eV), so a value
matches "to the printed digits" when |diff| <= half a unit of the last printed digit (+1e-9 for the
float64 round-off of the value itself).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtpjax.cli import main
from mtpjax.io import read_cfg, read_mtp, write_cfg

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GOLDEN = SHARED / "golden" / "mlip"
FIT = SHARED / "bench" / "fit"
TEMPLATES = SHARED / "data" / "mtp_templates"
GOLDEN_NAMES = ["pub_l08_s1_rc5", "pub_l16_s1_rc6p5"]

# the printed digits of MLIP's calculate_efs output (energy %.12f, forces %.6f, PlusStress %.5f)
E_TOL = 1e-9
F_TOL = 0.5e-6 + 1e-9
S_TOL = 0.5e-5 + 1e-9


def need(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"shared reference data not found: {', '.join(missing)} (looked in {SHARED})")


# The CLI, the calculators and the subprocess share compiled programs through JAX's persistent compilation
# cache, which tests/conftest.py switches on for the session.


def subprocess_env(cache_dir) -> dict:
    env = dict(os.environ)
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache_dir), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


# ---------------------------------------------------------------------------------------------------------
# helpers


def assert_efs_close(ours, ref, e_tol=E_TOL, f_tol=F_TOL, s_tol=S_TOL, pos_tol=0.5e-6 + 1e-9, what=""):
    """Configurations ``ours`` against ``ref``: same structures, energies/forces/PlusStress within tolerance."""
    assert len(ours) == len(ref), f"{what}: {len(ours)} configurations, expected {len(ref)}"
    for k, (a, b) in enumerate(zip(ours, ref)):
        where = f"{what}: configuration {k + 1}"
        assert a.natoms == b.natoms, where
        np.testing.assert_array_equal(a.types, b.types, err_msg=where)
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=pos_tol, err_msg=where)
        assert (a.cell is None) == (b.cell is None), where
        if a.cell is not None:
            np.testing.assert_allclose(a.cell, b.cell, rtol=0, atol=pos_tol, err_msg=where)
        assert a.energy is not None and b.energy is not None, where
        assert abs(a.energy - b.energy) <= e_tol, f"{where}: energy {a.energy!r} vs {b.energy!r}"
        np.testing.assert_allclose(a.forces, b.forces, rtol=0, atol=f_tol, err_msg=f"{where}: forces")
        assert (a.plus_stress is None) == (b.plus_stress is None), where
        if a.plus_stress is not None:
            np.testing.assert_allclose(a.plus_stress, b.plus_stress, rtol=0, atol=s_tol, err_msg=f"{where}: PlusStress")


def mg_atoms(c, pbc=True):
    """An ase.Atoms of Mg (no mlip_type column, so the calculator maps symbols through its species list)."""
    from ase import Atoms

    return Atoms(["Mg"] * c.natoms, positions=c.positions, cell=c.cell if c.cell is not None else np.zeros((3, 3)),
                 pbc=pbc and c.cell is not None)


@pytest.fixture(scope="module")
def golden_efs(tmp_path_factory):
    """``mtpjax efs POT NAME_in.cfg out.cfg`` in-process, once per golden potential.

    Returns (path of out.cfg, the Configurations the CLI wrote, at full precision): ``mtpjax.io.write_cfg`` is
    wrapped to record what it is given, since the file carries only MLIP's printed digits.
    """
    import mtpjax.io

    done = {}

    def run(name):
        if name not in done:
            pot, inp = GOLDEN / f"{name}.almtp", GOLDEN / f"{name}_in.cfg"
            need(pot, inp, GOLDEN / f"{name}_out.cfg")
            out = tmp_path_factory.mktemp(name) / "out.cfg"
            written = []
            real = mtpjax.io.write_cfg

            def recording_write_cfg(configs, path, *a, **kw):
                written.extend(configs)
                return real(configs, path, *a, **kw)

            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(mtpjax.io, "write_cfg", recording_write_cfg)
                rc = main(["efs", str(pot), str(inp), str(out), "-q"])
            assert rc == 0
            assert out.is_file()
            done[name] = (out, written)
        return done[name]

    return run


# ---------------------------------------------------------------------------------------------------------
# mtpjax efs against MLIP


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_efs_cfg_matches_mlip_golden(name, golden_efs):
    out, written = golden_efs(name)
    ref = read_cfg(GOLDEN / f"{name}_out.cfg")
    ours = read_cfg(out)
    assert_efs_close(ours, ref, what=f"{name} (file)")
    # the full-precision values the CLI wrote agree too (the file only rounds them)
    assert_efs_close(written, ref, what=f"{name} (full precision)")
    for c in ours:
        assert c.feature("EFS_by") == "mtpjax"
        assert [k for k, _ in c.features].count("EFS_by") == 1


def test_efs_entry_point_subprocess(golden_efs, tmp_path, jax_cache_dir):
    """``python -m mtpjax.cli efs ...`` works and writes the same file as the in-process call."""
    name = GOLDEN_NAMES[0]
    out_inproc, _ = golden_efs(name)
    out = tmp_path / "out.cfg"
    proc = subprocess.run(
        [sys.executable, "-m", "mtpjax.cli", "efs", str(GOLDEN / f"{name}.almtp"), str(GOLDEN / f"{name}_in.cfg"),
         str(out)],
        capture_output=True, text=True, cwd=tmp_path, env=subprocess_env(jax_cache_dir), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert_efs_close(read_cfg(out), read_cfg(GOLDEN / f"{name}_out.cfg"), what=f"{name} (subprocess)")
    assert out.read_bytes() == out_inproc.read_bytes()


def test_console_script_help():
    """The ``mtpjax`` console script of the installed package answers --help."""
    exe = Path(sys.executable).parent / "mtpjax"
    if not exe.exists():
        pytest.skip(f"no console script next to {sys.executable}")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "efs" in proc.stdout and "basis" in proc.stdout


def test_efs_trained_potential_matches_mlip3(tmp_path):
    """A realistic trained potential (MLIP-3, level 16, 6.5 Å; .almtp with an active-set section) on 100 cells.

    test_mlip3_efs.cfg prints MLIP's usual digits (energy %.12f, forces %.6f, PlusStress %.5f)."""
    pot, inp, ref_path = FIT / "mlip3_l16_rc6p5.almtp", FIT / "test.cfg", FIT / "test_mlip3_efs.cfg"
    need(pot, inp, ref_path)
    out = tmp_path / "out.cfg"
    assert main(["efs", str(pot), str(inp), str(out), "-q"]) == 0
    assert_efs_close(read_cfg(out), read_cfg(ref_path), what="mlip3_l16_rc6p5 on test.cfg")


# ---------------------------------------------------------------------------------------------------------
# extended XYZ


N_XYZ = 6  # the first cells of the benchmark's test set (a few shapes only, to keep compilation short)


@pytest.fixture(scope="module")
def xyz_subset(tmp_path_factory):
    """The first N_XYZ cells of test.extxyz / test.cfg / test_mlip3_efs.cfg, with CLI outputs of both paths."""
    import ase.io

    pot = FIT / "mlip3_l16_rc6p5.almtp"
    need(pot, FIT / "test.extxyz", FIT / "test.cfg", FIT / "test_mlip3_efs.cfg")
    d = tmp_path_factory.mktemp("xyz")
    frames = ase.io.read(FIT / "test.extxyz", index=f":{N_XYZ}")
    ase.io.write(d / "in.extxyz", frames)
    write_cfg(read_cfg(FIT / "test.cfg")[:N_XYZ], d / "in.cfg", precision="full")
    ref = read_cfg(FIT / "test_mlip3_efs.cfg")[:N_XYZ]
    assert main(["efs", str(pot), str(d / "in.cfg"), str(d / "out.cfg"), "-q"]) == 0
    assert main(["efs", str(pot), str(d / "in.extxyz"), str(d / "out.extxyz"), "-q"]) == 0
    return dict(pot=pot, dir=d, frames=frames, ref=ref, out_cfg=read_cfg(d / "out.cfg"),
                out_xyz=ase.io.read(d / "out.extxyz", index=":"))


def test_efs_extxyz_agrees_with_cfg_path(xyz_subset):
    frames, out, out_cfg, ref = xyz_subset["frames"], xyz_subset["out_xyz"], xyz_subset["out_cfg"], xyz_subset["ref"]
    assert len(out) == len(frames) == len(out_cfg)
    for k, (a, inp, c, r) in enumerate(zip(out, frames, out_cfg, ref)):
        where = f"frame {k}"
        assert len(a) == len(inp), where
        np.testing.assert_allclose(a.positions, inp.positions, rtol=0, atol=1e-8, err_msg=where)
        np.testing.assert_allclose(a.cell.array, inp.cell.array, rtol=0, atol=1e-8, err_msg=where)
        assert a.pbc.all(), where
        # energies are written in full; the cfg path prints 12 decimals
        e = a.get_potential_energy()
        assert abs(e - c.energy) <= E_TOL, f"{where}: {e} vs {c.energy}"
        assert abs(e - r.energy) <= E_TOL, f"{where}: {e} vs MLIP-3 {r.energy}"
        # extxyz prints forces with 8 decimals; the cfg files with 6
        np.testing.assert_allclose(a.get_forces(), c.forces, rtol=0, atol=F_TOL + 0.5e-8, err_msg=where)
        np.testing.assert_allclose(a.get_forces(), r.forces, rtol=0, atol=F_TOL + 0.5e-8, err_msg=where)
        plus = -a.get_stress() * a.get_volume()
        np.testing.assert_allclose(plus, c.plus_stress, rtol=0, atol=S_TOL, err_msg=where)
        np.testing.assert_allclose(plus, r.plus_stress, rtol=0, atol=S_TOL, err_msg=where)


def test_efs_extxyz_keeps_chemical_symbols(xyz_subset):
    """Mg in, Mg out: the output of a one-species potential without --species must not relabel the atoms."""
    for k, (a, inp) in enumerate(zip(xyz_subset["out_xyz"], xyz_subset["frames"])):
        assert a.get_chemical_symbols() == inp.get_chemical_symbols(), (
            f"frame {k}: mtpjax efs wrote {sorted(set(a.get_chemical_symbols()))} for "
            f"{sorted(set(inp.get_chemical_symbols()))}")


def test_efs_extxyz_with_species_option(xyz_subset):
    """--species Mg names the element of type 0: Mg structures are written back as Mg with the same results."""
    import ase.io

    d = xyz_subset["dir"]
    out = d / "out_species.extxyz"
    assert main(["efs", str(xyz_subset["pot"]), str(d / "in.extxyz"), str(out), "--species", "Mg", "-q"]) == 0
    for a, b in zip(ase.io.read(out, index=":"), xyz_subset["out_xyz"]):
        assert set(a.get_chemical_symbols()) == {"Mg"}
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())


def partially_periodic_slab():
    """An Mg slab periodic in x and y only, thin enough that a (wrong) z image would interact."""
    from ase.build import bulk

    a = bulk("Mg", "hcp", a=3.2, c=5.2).repeat((2, 2, 1))
    a.cell[2] = [0.0, 0.0, 6.0]  # the layers at z = 0 and 2.6 Å: a z image would be 3.4 Å away (< cutoff)
    a.pbc = [True, True, False]
    a.rattle(0.05, seed=3)
    return a


def test_efs_extxyz_respects_partial_pbc(tmp_path):
    """A slab (pbc T T F) through the CLI equals the calculator's (non-periodic along z) result."""
    import ase.io

    from mtpjax.calculator import MTPCalculator

    pot = GOLDEN / "pub_l08_s1_rc5.almtp"
    need(pot)
    slab = partially_periodic_slab()
    ase.io.write(tmp_path / "slab.extxyz", slab)
    slab = ase.io.read(tmp_path / "slab.extxyz")  # the positions as written (8 decimals)
    slab.calc = MTPCalculator.from_file(pot, species=["Mg"])
    e_calc = slab.get_potential_energy()
    assert main(["efs", str(pot), str(tmp_path / "slab.extxyz"), str(tmp_path / "out.extxyz"), "-q"]) == 0
    out = ase.io.read(tmp_path / "out.extxyz")
    problems = []
    if abs(out.get_potential_energy() - e_calc) > 1e-9:
        problems.append(f"energy {out.get_potential_energy()!r} eV, but the calculator gives {e_calc!r} eV")
    if out.pbc.tolist() != [True, True, False]:
        problems.append(f"output pbc {out.pbc.tolist()}")
    assert not problems, "mtpjax efs on a slab with pbc T T F: " + "; ".join(problems)


# ---------------------------------------------------------------------------------------------------------
# the ASE calculator


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_calculator_agrees_with_cli(name, golden_efs):
    from mtpjax.calculator import MTPCalculator

    out, written = golden_efs(name)
    ref = read_cfg(GOLDEN / f"{name}_out.cfg")
    calc = MTPCalculator.from_file(GOLDEN / f"{name}.almtp", species=["Mg"])
    for k, (c_in, w, r) in enumerate(zip(read_cfg(GOLDEN / f"{name}_in.cfg"), written, ref)):
        where = f"{name}: configuration {k + 1}"
        atoms = mg_atoms(c_in)
        atoms.calc = calc
        e = atoms.get_potential_energy()
        assert abs(e - w.energy) <= 1e-10, f"{where}: {e} vs CLI {w.energy}"
        assert abs(e - r.energy) <= E_TOL, f"{where}: {e} vs MLIP {r.energy}"
        assert atoms.get_potential_energy(force_consistent=True) == e  # free_energy
        assert calc.get_property("free_energy", atoms) == e
        f = atoms.get_forces()
        np.testing.assert_allclose(f, w.forces, rtol=0, atol=1e-10, err_msg=where)
        np.testing.assert_allclose(f, r.forces, rtol=0, atol=F_TOL, err_msg=where)
        s = atoms.get_stress()
        assert s.shape == (6,)
        vol = atoms.get_volume()
        np.testing.assert_allclose(s, -w.plus_stress / vol, rtol=0, atol=1e-10, err_msg=where)
        np.testing.assert_allclose(s, -r.plus_stress / vol, rtol=0, atol=S_TOL / vol, err_msg=where)
        np.testing.assert_allclose(atoms.get_stress(voigt=False), atoms.get_stress(voigt=False).T, atol=1e-12)
        sites = atoms.get_potential_energies()
        assert sites.shape == (len(atoms),)
        assert abs(sites.sum() - e) <= 1e-10, f"{where}: site energies sum to {sites.sum()}, energy {e}"


def test_calculator_uses_mlip_type_column(golden_efs):
    """Atoms read from .cfg carry arrays['mlip_type'], which the calculator uses without a species list."""
    from mtpjax.calculator import MTPCalculator
    from mtpjax.io import configuration_to_atoms

    name = GOLDEN_NAMES[0]
    _, written = golden_efs(name)
    calc = MTPCalculator.from_file(GOLDEN / f"{name}.almtp")
    for c, w in list(zip(read_cfg(GOLDEN / f"{name}_in.cfg"), written))[:3]:
        atoms = configuration_to_atoms(c)  # dummy elements (H), types in mlip_type
        atoms.calc = calc
        assert abs(atoms.get_potential_energy() - w.energy) <= 1e-10
        np.testing.assert_allclose(atoms.get_forces(), w.forces, rtol=0, atol=1e-10)


def mg_cluster():
    """Seven Mg atoms (a piece of fcc Mg, rattled), about 3.2 Å apart."""
    from ase.build import bulk

    a = bulk("Mg", "fcc", a=4.5, cubic=True).repeat((2, 1, 1))[:7]
    a.rattle(0.1, seed=7)
    a.positions -= a.positions.mean(axis=0)
    a.cell = np.zeros((3, 3))
    a.pbc = False
    return a


def test_calculator_molecule_equals_huge_box():
    from ase.calculators.calculator import PropertyNotImplementedError

    from mtpjax.calculator import MTPCalculator

    pot = GOLDEN / "pub_l08_s1_rc5.almtp"
    need(pot)
    calc = MTPCalculator.from_file(pot, species=["Mg"])
    mol = mg_cluster()
    mol.calc = calc
    e = mol.get_potential_energy()
    f = mol.get_forces()
    assert np.isfinite(e) and np.isfinite(f).all()
    assert np.linalg.norm(np.diff(mol.positions, axis=0), axis=1).min() < 5.0  # the atoms interact
    assert abs(e - mol.get_potential_energies().sum()) <= 1e-10
    assert abs(e - len(mol) * float(calc.potential.species_coeffs[0])) > 1e-3  # not just isolated atoms
    np.testing.assert_allclose(f.sum(axis=0), 0.0, atol=1e-10)  # translation invariance
    with pytest.raises(PropertyNotImplementedError):
        mol.get_stress()
    assert mol.get_potential_energy() == e  # still usable after the refused property

    # the same molecule in a box far larger than molecule + cutoff
    box = mol.copy()
    box.cell = np.eye(3) * 60.0
    box.pbc = True
    box.calc = calc
    assert abs(box.get_potential_energy() - e) <= 1e-10
    np.testing.assert_allclose(box.get_forces(), f, rtol=0, atol=1e-10)
    assert np.isfinite(box.get_stress()).all()  # defined for the periodic box

    # a cell on a non-periodic structure is ignored, even one smaller than the molecule
    small = mol.copy()
    small.cell = np.eye(3) * 2.0
    small.pbc = False
    small.calc = calc
    assert abs(small.get_potential_energy() - e) <= 1e-10
    np.testing.assert_allclose(small.get_forces(), f, rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------------------------------------
# templates: mtpjax basis, and mtpjax efs refusing an untrained potential


def test_basis_level8_matches_mlip_template(tmp_path):
    pytest.importorskip("mtpjax.basis", reason="mtpjax/basis.py is not there yet")
    template = TEMPLATES / "08.almtp"
    need(template)
    out = tmp_path / "X.almtp"
    assert main(["basis", "--level", "8", "-o", str(out)]) == 0
    ours, ref = read_mtp(out), read_mtp(template)
    assert not ours.is_trained
    for key in ("species_count", "radial_basis_size", "radial_funcs_count", "alpha_moments_count",
                "alpha_index_basic_count", "alpha_index_times_count", "alpha_scalar_moments",
                "min_dist", "max_dist", "radial_basis_type"):
        assert getattr(ours, key) == getattr(ref, key), f"{key}: {getattr(ours, key)} vs MLIP {getattr(ref, key)}"


def test_basis_level8_identical_to_mlip_template(tmp_path, capsys):
    """Beyond the counts: the same basis in the same order as MLIP's template, and `efs` refuses it."""
    pytest.importorskip("mtpjax.basis", reason="mtpjax/basis.py is not there yet")
    template = TEMPLATES / "08.almtp"
    need(template, GOLDEN / "pub_l08_s1_rc5_in.cfg")
    out = tmp_path / "X.almtp"
    assert main(["basis", "--level", "8", "-o", str(out)]) == 0
    ours, ref = read_mtp(out), read_mtp(template)
    for key in ("alpha_index_basic", "alpha_index_times", "alpha_moment_mapping"):
        np.testing.assert_array_equal(getattr(ours, key), getattr(ref, key), err_msg=key)
    capsys.readouterr()
    rc = main(["efs", str(out), str(GOLDEN / "pub_l08_s1_rc5_in.cfg"), str(tmp_path / "out.cfg"), "-q"])
    assert rc == 2 and "untrained" in capsys.readouterr().err


def test_efs_on_untrained_template_fails_clearly(tmp_path, capsys):
    template = TEMPLATES / "08.almtp"
    need(template, GOLDEN / "pub_l08_s1_rc5_in.cfg")
    out = tmp_path / "out.cfg"
    rc = main(["efs", str(template), str(GOLDEN / "pub_l08_s1_rc5_in.cfg"), str(out), "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "untrained" in err
    assert err.startswith("mtpjax efs: error:")
    assert "Traceback" not in err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------
# out-of-domain structures are never silent (issue 15): distances below r_min, grades above the threshold

GRADE_GOLDEN = SHARED / "golden" / "mlip-grade"


def test_calculator_warns_below_rmin_and_raises_on_request():
    import warnings

    from ase import Atoms

    from mtpjax.calculator import MTPCalculator, OutOfDomainError, OutOfDomainWarning
    from mtpjax.errors import MtpjaxError

    pot = GRADE_GOLDEN / "pot08_m2.mtp"
    need(pot)
    dimer = Atoms("Mg2", positions=[[0, 0, 0], [0.5, 0, 0]])  # r_min of this potential: 2 Å
    dimer.calc = MTPCalculator.from_file(pot)
    with pytest.warns(OutOfDomainWarning, match=r"0\.5 Å apart.*r_min = 2 Å"):
        dimer.get_potential_energy()
    dimer.calc = MTPCalculator.from_file(pot, out_of_domain="error")
    with pytest.raises(OutOfDomainError, match="r_min") as err:
        dimer.get_potential_energy()
    assert isinstance(err.value, MtpjaxError)
    # at 3 Å (inside [r_min, R_cut]) nothing is flagged; "ignore" silences the check
    ok = Atoms("Mg2", positions=[[0, 0, 0], [3.0, 0, 0]])
    ok.calc = MTPCalculator.from_file(pot, out_of_domain="error")
    ok.get_potential_energy()
    dimer.calc = MTPCalculator.from_file(pot, out_of_domain="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dimer.get_potential_energy()
    with pytest.raises(MtpjaxError, match="out_of_domain"):
        MTPCalculator.from_file(pot, out_of_domain="loud")


def test_calculator_flags_grades_above_threshold(tmp_path):
    """With an active set (stored next to the potential), each structure's grade equals MLIP-2's calc-grade, and
    grades above the threshold warn or raise."""
    import warnings

    from mtpjax.active import build_active_set, save_active_set
    from mtpjax.calculator import MTPCalculator, OutOfDomainError, OutOfDomainWarning
    from mtpjax.io import configuration_to_atoms
    from mtpjax.model import load_mtp

    need(GRADE_GOLDEN / "cand_graded.cfg")
    pot = tmp_path / "pot.mtp"
    pot.write_bytes((GRADE_GOLDEN / "pot08_m2.mtp").read_bytes())
    mtp = load_mtp(pot)
    save_active_set(pot, build_active_set(mtp, read_cfg(GRADE_GOLDEN / "train.cfg")), mtp)
    graded = read_cfg(GRADE_GOLDEN / "cand_graded.cfg")
    for c in graded:
        atoms = configuration_to_atoms(c)
        atoms.calc = MTPCalculator.from_file(pot)
        mlip = float(c.feature("MV_grade"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            atoms.get_potential_energy()
        assert atoms.calc.results["grade"] == pytest.approx(mlip, rel=1e-5)
        flagged = [w for w in caught if issubclass(w.category, OutOfDomainWarning)]
        assert len(flagged) == (1 if mlip > 2.1 else 0)
    atoms = configuration_to_atoms(graded[0])  # grade 3.4
    atoms.calc = MTPCalculator.from_file(pot, out_of_domain="error", grade_threshold=5.0)
    atoms.get_potential_energy()
    atoms.calc = MTPCalculator.from_file(pot, out_of_domain="error")
    with pytest.raises(OutOfDomainError, match="grade 3.405"):
        atoms.get_potential_energy()


def test_calculator_neighbourhood_grades():
    """A neighbourhood-mode active set: per-atom grades in results, the structure's grade is their maximum; bulk hcp
    Mg near the training cells interpolates (no warning), an isolated trimer extrapolates (a warning)."""
    import warnings

    from ase import Atoms
    from ase.build import bulk

    from mtpjax.active import build_active_set, grade
    from mtpjax.calculator import MTPCalculator, OutOfDomainWarning
    from mtpjax.model import load_mtp

    pot = GRADE_GOLDEN / "pot08_m2.mtp"
    need(pot)
    mtp = load_mtp(pot)
    active = build_active_set(mtp, read_cfg(GRADE_GOLDEN / "train.cfg"), mode="nbh")
    hcp = bulk("Mg", "hcp", a=3.21, c=5.21) * (3, 3, 2)
    hcp.calc = MTPCalculator(mtp, active_set=active)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hcp.get_potential_energy()
    r = hcp.calc.results
    assert r["atom_grades"].shape == (36,) and r["grade"] == r["atom_grades"].max() < 1.1
    trimer = Atoms("Mg3", positions=[[0, 0, 0], [3.1, 0, 0], [1.5, 2.6, 0]])
    trimer.calc = MTPCalculator(mtp, active_set=active)
    with pytest.warns(OutOfDomainWarning, match="extrapolation grade"):
        trimer.get_potential_energy()
    ref = grade(mtp, active, [(trimer.positions, np.zeros((3, 3)), False, np.zeros(3, dtype=int), "trimer")])
    np.testing.assert_allclose(trimer.calc.results["atom_grades"], ref.atom_grades[0], rtol=1e-12)
    assert trimer.calc.results["grade"] > 2.1


def test_efs_command_flags_structures_below_rmin(tmp_path, capsys):
    """``mtpjax efs``: a file with a 0.5 Å dimer (r_min 2 Å) and a 3 Å one warns naming the first structure only;
    ``--out-of-domain error`` exits 2 and writes nothing; ``ignore`` is silent."""
    import warnings

    from ase import Atoms

    from mtpjax.active import OutOfDomainWarning
    from mtpjax.cli import main
    from mtpjax.io import write_structures

    pot = GRADE_GOLDEN / "pot08_m2.mtp"
    need(pot)
    inp, out = tmp_path / "in.extxyz", tmp_path / "out.extxyz"
    write_structures([Atoms("Mg2", positions=[[0, 0, 0], [0.5, 0, 0]]), Atoms("Mg2", positions=[[0, 0, 0], [3.0, 0, 0]])],
                     inp, format="extxyz")
    with pytest.warns(OutOfDomainWarning, match=r"structure 1: atoms 0 and 1 are 0\.5 Å apart") as rec:
        assert main(["efs", str(pot), str(inp), str(out), "--species", "Mg", "-q"]) == 0
    assert not any("structure 2" in str(w.message) for w in rec)
    out.unlink()
    assert main(["efs", str(pot), str(inp), str(out), "--species", "Mg", "-q", "--out-of-domain", "error"]) == 2
    assert "r_min" in capsys.readouterr().err and not out.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        assert main(["efs", str(pot), str(inp), str(out), "--species", "Mg", "-q", "--out-of-domain", "ignore"]) == 0
