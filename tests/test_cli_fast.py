"""A fast command line (issue 12, items 6 and 8).

- compiled programs are shared between calculators: a second :class:`MTPCalculator` on the same MTP (or on
  another MTP with the same basis) does not trace (compile) again, and gives the same numbers;
- ``mtpjax efs`` evaluates in fixed-shape chunks: 1 and 21 configurations of one cell run the same program;
- ``efs`` checks OUT before any work (unknown suffix, a folder, a missing folder), refuses an empty input and a
  ``--species`` list longer than the potential's types, each with exit code 2 and one message naming the culprit;
- ``mtpjax --help`` and ``mtpjax efs`` import no fitting, generation, verification or plotting code;
- an isolated atom 1e6 Å away from a non-periodic structure has no neighbours (it used to kill the process with
  SIGFPE inside the neighbour list); absurd coordinates are a StructureError naming the structure;
- ``fit`` writes periodic progress lines when stderr is not a terminal.
"""
from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from conftest import GOLDEN, need
from mtpjax.cli import EXTERNAL_COMMANDS, build_parser, fit_progress, main
from mtpjax.errors import StructureError
from mtpjax.evaluate import trace_count
from mtpjax.io import read_cfg, read_structures, write_structures

POT = GOLDEN / "pub_l08_s1_rc5.almtp"


@pytest.fixture(scope="module")
def pot():
    return need(POT)


def mg_cells(n, repeat=(2, 2, 2), seed=0):
    cells = []
    for k in range(n):
        a = bulk("Mg", "hcp", a=3.21, c=5.21).repeat(repeat)
        a.rattle(0.05, seed=seed + k)
        cells.append(a)
    return cells


def run_cli(capsys, *args):
    capsys.readouterr()
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def assert_error(rc, err, *needles, command="efs"):
    assert rc == 2, f"exit code {rc}; stderr: {err}"
    assert "Traceback" not in err
    assert err.startswith(f"mtpjax {command}: error:"), err
    assert err.count("\n") == 1, err
    for n in needles:
        assert str(n) in err, f"{n!r} not in: {err}"


# ---------------------------------------------------------------------------------------------------------
# 1. compiled programs shared between calculators


def test_second_calculator_does_not_compile_again(pot):
    from mtpjax.calculator import MTPCalculator

    atoms = mg_cells(1, repeat=(2, 2, 1), seed=11)[0]
    results = []
    for k in range(3):
        a = atoms.copy()
        a.calc = MTPCalculator.from_file(pot, species=["Mg"])  # a new MTP object and calculator each time
        before = trace_count()
        results.append((a.get_potential_energy(), a.get_forces(), a.get_stress()))
        if k == 0:
            assert trace_count() >= before  # (the first may find the program already traced by another test)
        else:
            assert trace_count() == before, f"calculator {k + 1} traced the program again"
    for e, f, s in results[1:]:
        assert e == results[0][0]
        np.testing.assert_array_equal(f, results[0][1])
        np.testing.assert_array_equal(s, results[0][2])


def test_same_basis_other_coefficients_share_the_program(pot):
    """Coefficients are arguments of the compiled program, not constants in it."""
    import equinox as eqx

    from mtpjax.calculator import MTPCalculator
    from mtpjax.model import load_mtp

    mtp = load_mtp(pot, species=["Mg"])
    other = eqx.tree_at(lambda m: m.moment_coeffs, mtp, mtp.moment_coeffs * 1.1)
    atoms = mg_cells(1, repeat=(2, 2, 1), seed=12)[0]
    a, b = atoms.copy(), atoms.copy()
    a.calc, b.calc = MTPCalculator(mtp), MTPCalculator(other)
    ea = a.get_potential_energy()
    before = trace_count()
    eb = b.get_potential_energy()
    assert trace_count() == before
    assert ea != eb


# ---------------------------------------------------------------------------------------------------------
# 2. efs: fixed-shape chunks, OUT checked first, empty input, --species


def test_efs_one_and_21_configurations_compile_one_program(tmp_path, capsys, pot):
    from mtpjax.calculator import MTPCalculator

    cells = mg_cells(21, seed=100)
    write_structures(cells[:1], tmp_path / "one.extxyz")
    write_structures(cells, tmp_path / "many.extxyz")
    rc, err = run_cli(capsys, "efs", pot, tmp_path / "one.extxyz", tmp_path / "one.cfg", "-q")
    assert rc == 0, err
    before = trace_count()
    rc, err = run_cli(capsys, "efs", pot, tmp_path / "many.extxyz", tmp_path / "many.cfg", "-q")
    assert rc == 0, err
    assert trace_count() == before, "21 configurations compiled a program that 1 configuration did not"
    many = read_cfg(tmp_path / "many.cfg")
    assert len(many) == 21
    assert many[0].energy == pytest.approx(read_cfg(tmp_path / "one.cfg")[0].energy, abs=1e-9)
    calc = MTPCalculator.from_file(pot, species=["Mg"])
    cells = read_structures(tmp_path / "many.extxyz")  # the positions as written (8 decimals)
    for a, c in zip(cells[::5], many[::5]):
        a = a.copy()
        a.calc = calc
        assert c.energy == pytest.approx(a.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(c.forces, a.get_forces(), atol=1e-6)


@pytest.mark.parametrize("name", ["out", "out.txt", "out.dat", "out.XYZZY"])
def test_efs_unknown_output_suffix(tmp_path, capsys, name):
    out = tmp_path / name
    # the potential does not exist: OUT is checked before anything is read or computed
    rc, err = run_cli(capsys, "efs", tmp_path / "missing.almtp", tmp_path / "missing.cfg", out)
    assert_error(rc, err, "OUT", out, ".cfg")
    assert not out.exists()


def test_efs_output_is_a_folder(tmp_path, capsys):
    out = tmp_path / "results.cfg"
    out.mkdir()
    rc, err = run_cli(capsys, "efs", tmp_path / "missing.almtp", tmp_path / "missing.cfg", out)
    assert_error(rc, err, "OUT", out, "folder")


def test_efs_output_folder_missing(tmp_path, capsys):
    out = tmp_path / "no_such_dir" / "out.extxyz"
    rc, err = run_cli(capsys, "efs", tmp_path / "missing.almtp", tmp_path / "missing.cfg", out)
    assert_error(rc, err, "OUT", "no_such_dir", "does not exist")
    assert not out.parent.exists()


@pytest.mark.parametrize("suffix", [".cfg", ".extxyz"])
def test_efs_empty_input(tmp_path, capsys, pot, suffix):
    p = tmp_path / f"empty{suffix}"
    p.write_text("")
    out = tmp_path / "out.cfg"
    rc, err = run_cli(capsys, "efs", pot, p, out)
    assert_error(rc, err, p)
    assert not out.exists()


def test_efs_too_many_species(tmp_path, capsys, pot):
    write_structures(mg_cells(1), tmp_path / "in.extxyz")
    out = tmp_path / "out.extxyz"
    rc, err = run_cli(capsys, "efs", pot, tmp_path / "in.extxyz", out, "--species", "Mg", "Al")
    assert_error(rc, err, "--species", "Mg Al", "1 type")
    assert not out.exists()


def test_efs_too_few_species(tmp_path, capsys):
    """A two-type potential with one --species name: which element is type 1 is unknown, an error (not a guess)."""
    from conftest import random_mtp
    from mtpjax.model import save_mtp

    two = tmp_path / "two.almtp"
    save_mtp(random_mtp(6, n_species=2, rcut=4.0, rmin=1.5, seed=1), two)
    write_structures(mg_cells(1, repeat=(1, 1, 1)), tmp_path / "in.extxyz")
    out = tmp_path / "out.extxyz"
    rc, err = run_cli(capsys, "efs", two, tmp_path / "in.extxyz", out, "--species", "Mg")
    assert_error(rc, err, "--species", "1 name(s) (Mg)", "2 type(s)")
    assert not out.exists()


def test_efs_disk_full_is_an_error_not_a_traceback(tmp_path, capsys, pot, monkeypatch):
    import errno
    import os

    import mtpjax.io

    def full(configs, path, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(mtpjax.io, "write_cfg", full)
    write_structures(mg_cells(1), tmp_path / "in.extxyz")
    out = tmp_path / "out.cfg"
    rc, err = run_cli(capsys, "efs", pot, tmp_path / "in.extxyz", out, "--species", "Mg")
    assert_error(rc, err, out, "No space left")


@pytest.mark.parametrize("suffix", [".xyz", ".extxyz", ".traj"])
def test_efs_writes_ase_formats(tmp_path, capsys, pot, suffix):
    from ase.io import read

    write_structures(mg_cells(2), tmp_path / "in.extxyz")
    out = tmp_path / f"out{suffix}"
    rc, err = run_cli(capsys, "efs", pot, tmp_path / "in.extxyz", out, "-q")
    assert rc == 0, err
    back = read(out, ":")
    assert len(back) == 2 and back[1].get_forces().shape == (16, 3)


# ---------------------------------------------------------------------------------------------------------
# 3. lazy imports

HEAVY = ("phonopy", "pyxtal", "dask", "matplotlib", "optax", "mtpjax.fit", "mtpjax.generate", "mtpjax.verify",
         "mtpjax.pipeline", "mtpjax.oracles", "mtpjax.plotting")


def imported_after(code: str) -> list[str]:
    script = textwrap.dedent(code) + f"\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return eval(proc.stdout.strip().splitlines()[-1])


def test_help_imports_nothing_heavy():
    assert imported_after("""
        import contextlib, io, sys
        from mtpjax.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main(["--help"])
            except SystemExit:
                pass
        """) == []


def test_efs_imports_nothing_heavy(tmp_path, pot):
    write_structures(mg_cells(1, repeat=(1, 1, 1)), tmp_path / "in.extxyz")
    assert imported_after(f"""
        import sys
        from mtpjax.cli import main
        assert main(["efs", {str(pot)!r}, {str(tmp_path / "in.extxyz")!r}, {str(tmp_path / "out.cfg")!r}, "-q"]) == 0
        """) == []


def test_command_stubs_match_their_modules():
    """``--help`` lists the sub-commands of other modules from stubs; their help lines equal the real ones."""
    def helps(parser):
        sub = next(a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0])))
        return {c.dest: c.help for c in sub._choices_actions}

    full, stubs = helps(build_parser()), helps(build_parser(""))
    assert full == stubs
    assert set(EXTERNAL_COMMANDS) <= set(full)


# ---------------------------------------------------------------------------------------------------------
# 4. an atom far away


def test_far_atom_has_no_neighbours_in_a_subprocess():
    """Run where a SIGFPE would only kill the child."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import numpy as np
        from mtpjax.neighbors import pairs
        for pbc, cell in (([False] * 3, None), ([True, True, False], np.eye(3) * 10.0)):
            pos = np.array([[0.0, 0, 0], [1.5, 0, 0], [0, 0, 1e6], [0, 2.0, 1e6], [-1e6, 1e6, 3.0]])
            i, j, s = pairs(pos, cell, pbc, 5.0, "far")
            got = sorted(zip(i.tolist(), j.tolist()))
            if pbc[0]:  # atom 4 is a periodic image of (0, 0, 3): a neighbour of atoms 0 and 1
                assert got == [(0, 1), (0, 4), (1, 0), (1, 4), (2, 3), (3, 2), (4, 0), (4, 1)], got
            else:
                assert got == [(0, 1), (1, 0), (2, 3), (3, 2)], got
        print("ok")
        """)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr)


def test_far_atom_energy_is_its_isolated_energy(pot):
    from mtpjax.calculator import MTPCalculator

    calc = MTPCalculator.from_file(pot, species=["Mg"])
    near = Atoms("Mg3", positions=[[0, 0, 0], [3.0, 0, 0], [0, 3.1, 0]], pbc=False)
    alone = Atoms("Mg", positions=[[0, 0, 0]], pbc=False)
    far = Atoms("Mg4", positions=[[0, 0, 0], [3.0, 0, 0], [0, 3.1, 0], [1e6, 0, 0]], pbc=False)
    energies = []
    for a in (near, alone, far):
        a.calc = calc
        energies.append(a.get_potential_energy())
    assert energies[2] == pytest.approx(energies[0] + energies[1], abs=1e-9)
    np.testing.assert_array_equal(far.get_forces()[3], 0.0)


def test_absurd_coordinates_are_a_structure_error(pot):
    from mtpjax.calculator import MTPCalculator

    a = Atoms("Mg2", positions=[[0, 0, 0], [1e300, 0, 0]], pbc=False)
    a.calc = MTPCalculator.from_file(pot, species=["Mg"])
    with pytest.raises(StructureError, match=r"Mg2: atom 1 .*not supported"):
        a.get_potential_energy()


def test_far_atom_through_efs(tmp_path, capsys, pot):
    far = Atoms("Mg3", positions=[[0, 0, 0], [3.0, 0, 0], [0, 0, 1e6]], pbc=False)
    write_structures([far], tmp_path / "far.extxyz")
    rc, err = run_cli(capsys, "efs", pot, tmp_path / "far.extxyz", tmp_path / "out.extxyz", "-q")
    assert rc == 0, err


# ---------------------------------------------------------------------------------------------------------
# 5. fit progress without a terminal


def test_fit_progress_lines_without_a_terminal():
    stream = io.StringIO()  # isatty() is False
    bar, progress = fit_progress(25, quiet=False, stream=stream, every_steps=10, every_s=1e9)
    with bar:
        for k in range(25):
            progress(k, 1.0 / (k + 1))
    lines = stream.getvalue().splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["fit: step 1/25", "fit: step 10/25", "fit: step 20/25", "fit: step 25/25"]
    assert "loss 0.1," in lines[1] and lines[1].endswith(" s")


def test_fit_progress_by_time_and_quiet():
    stream = io.StringIO()
    _, progress = fit_progress(1000, quiet=False, stream=stream, every_steps=10**6, every_s=0.0)
    for k in range(3):
        progress(k, 2.0)
    assert len(stream.getvalue().splitlines()) == 3
    stream = io.StringIO()
    _, progress = fit_progress(1000, quiet=True, stream=stream)
    for k in range(30):
        progress(k, 2.0)
    assert stream.getvalue() == ""


def test_chunked_evaluation_equals_batched(pot):
    """Fixed-shape chunks (evaluated while the next chunk's neighbours are found) give the numbers of the default
    batches, for structures of different sizes and a bad one named after the chunks before it."""
    from mtpjax.evaluate import Evaluator
    from mtpjax.model import load_mtp

    cfgs = read_cfg(need(GOLDEN / "pub_l08_s1_rc5_in.cfg"))
    jobs = [(c.positions, c.cell, c.cell is not None, c.types, f"configuration {k + 1}") for k, c in enumerate(cfgs)]
    assert len({len(c.positions) for c in cfgs}) > 1
    ev = Evaluator(load_mtp(pot))
    done = []
    ref = ev.many(jobs)
    got = ev.many(jobs, progress=done.append, chunk_atoms=40)
    assert sum(done) == len(jobs) and len(done) > 1
    for a, b in zip(ref, got):
        assert b.energy == pytest.approx(a.energy, abs=1e-10)
        np.testing.assert_allclose(b.forces, a.forces, atol=1e-10)
        np.testing.assert_allclose(b.virial, a.virial, atol=1e-10)
    bad = list(jobs)
    pos = np.array(bad[-1][0], dtype=float)
    pos[1] = pos[0]
    bad[-1] = (pos, *bad[-1][1:])
    with pytest.raises(StructureError, match=f"configuration {len(jobs)}: .*overlap"):
        ev.many(bad, chunk_atoms=40)


def test_shared_programs_are_bounded():
    """A session that evaluates many potentials of different structures keeps the compiled programs of only the last
    PROGRAMS_KEPT of them (each program holds memory maps; the process's number is limited), and the most recent
    one is shared."""
    from conftest import random_mtp

    from mtpjax import evaluate as ev

    mtps = [random_mtp(6 + 2 * (k % 4), n_species=1 + k // 4, rcut=4.0, rmin=1.5, seed=k) for k in range(ev.PROGRAMS_KEPT + 4)]
    fns = [ev.program(None, True, m) for m in mtps]
    assert ev.n_programs() <= ev.PROGRAMS_KEPT
    assert ev.program(None, True, mtps[-1]) is fns[-1]
    assert ev.program(None, True, mtps[0]) is not fns[0]  # evicted: a new program
