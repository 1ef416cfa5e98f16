"""Bad input gives a clear mtpjax error, never a NaN and never a raw JAX (or ASE) traceback.

Every error is an :class:`mtpjax.errors.MtpjaxError` (FormatError for malformed files, StructureError for
structures that cannot be evaluated) whose message names what is at fault: the file and line, or the
structure and atom. Through the CLI the same errors exit with code 2, print one ``mtpjax efs: error: ...``
line on stderr and leave no (partial) output file behind.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from mtpjax.cli import main
from mtpjax.errors import FormatError, MtpjaxError, StructureError
from mtpjax.io import Configuration, read_cfg, write_cfg

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GOLDEN = SHARED / "golden" / "mlip"
POT = GOLDEN / "pub_l08_s1_rc5.almtp"  # one species, r_min 2 Å, cutoff 5 Å
CFG = GOLDEN / "pub_l08_s1_rc5_in.cfg"


@pytest.fixture(scope="module", autouse=True)
def shared_data():
    missing = [str(p) for p in (POT, CFG) if not p.exists()]
    if missing:
        pytest.skip(f"shared reference data not found: {', '.join(missing)} (looked in {SHARED})")


@pytest.fixture(scope="module")
def calc():
    from mtpjax.calculator import MTPCalculator

    return MTPCalculator.from_file(POT, species=["Mg"])


def run_cli(capsys, *args):
    """``mtpjax ARGS`` in-process: (exit code, stderr)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err
    return rc, err


def assert_cli_error(rc, err, *needles):
    assert rc == 2, f"exit code {rc}; stderr: {err}"
    assert "Traceback" not in err
    assert err.startswith("mtpjax efs: error:"), err
    assert err.count("\n") == 1, f"expected one error line, got: {err}"
    for n in needles:
        assert str(n) in err, f"{n!r} not in: {err}"


def mg_cell(repeat=(1, 1, 1), rattle=0.0, seed=0) -> Atoms:
    a = bulk("Mg", "hcp", a=3.21, c=5.21).repeat(repeat)
    if rattle:
        a.rattle(rattle, seed=seed)
    return a


def to_cfg(atoms: Atoms) -> Configuration:
    return Configuration(types=np.zeros(len(atoms), dtype=int), positions=atoms.positions,
                         cell=atoms.cell.array if atoms.pbc.any() else None)


def atom_in(msg: str, *indices: int) -> bool:
    """The message names these atom indices (as numbers of their own)."""
    return all(re.search(rf"(?<![\d.]){i}(?![\d.])", msg) for i in indices)


# =========================================================================================================
# malformed potential files


def moment_line(text: str) -> int:
    return next(k for k, ln in enumerate(text.splitlines(), 1) if ln.startswith("moment_coeffs"))


def on_moment_line(edit):
    """A defect made by editing the moment_coeffs line (edit(line) -> new line, or -> (new line, cut file))."""

    def apply(text):
        lines = text.split("\n")
        k = moment_line(text) - 1
        res = edit(lines[k])
        if isinstance(res, tuple):  # the file ends right after the edited line
            return "\n".join(lines[:k] + [res[0]]) + "\n"
        lines[k] = res
        return "\n".join(lines)

    return apply


MTP_DEFECTS = {
    # moment_coeffs with one number too few (alpha_scalar_moments says 9)
    "one_coefficient_missing": (on_moment_line(lambda ln: ln[: ln.rfind(",")] + "}"), r"moment_coeffs.*9"),
    # the file cut in the middle of moment_coeffs (no closing brace, nothing after)
    "file_cut_mid_list": (on_moment_line(lambda ln: (ln[: ln.rfind(",")],)), r"unterminated|'\}'"),
    # a number that is not one
    "bad_number": (on_moment_line(lambda ln: "moment_coeffs = {0.1.2" + ln[ln.index(","):]), r"0\.1\.2"),
    # a NaN coefficient would make every energy NaN
    "nan_coefficient": (on_moment_line(lambda ln: "moment_coeffs = {nan" + ln[ln.index(","):]), r"(?i)finite|nan"),
}


def write_bad_mtp(tmp_path, defect) -> tuple[Path, int]:
    text = POT.read_text()
    line = moment_line(text)
    bad = MTP_DEFECTS[defect][0](text)
    assert bad != text and moment_line(bad) == line
    p = tmp_path / f"{defect}.almtp"
    p.write_text(bad)
    return p, line


@pytest.mark.parametrize("defect", sorted(MTP_DEFECTS))
def test_bad_mtp_load_mtp(tmp_path, defect):
    from mtpjax.model import load_mtp

    p, line = write_bad_mtp(tmp_path, defect)
    with pytest.raises(FormatError) as info:
        load_mtp(p)
    err = info.value
    msg = str(err)
    assert err.path == str(p) and str(p) in msg
    assert err.line == line and f"line {line}" in msg, msg
    assert re.search(MTP_DEFECTS[defect][1], msg), msg


@pytest.mark.parametrize("defect", sorted(MTP_DEFECTS))
def test_bad_mtp_cli(tmp_path, capsys, defect):
    p, line = write_bad_mtp(tmp_path, defect)
    out = tmp_path / "out.cfg"
    rc, err = run_cli(capsys, "efs", p, CFG, out)
    assert_cli_error(rc, err, str(p), f"line {line}")
    assert not out.exists()


def test_missing_files_cli(tmp_path, capsys):
    out = tmp_path / "out.cfg"
    rc, err = run_cli(capsys, "efs", tmp_path / "nope.almtp", CFG, out)
    assert_cli_error(rc, err, "nope.almtp")
    rc, err = run_cli(capsys, "efs", POT, tmp_path / "nope.cfg", out)
    assert_cli_error(rc, err, "nope.cfg")
    assert not out.exists()


# =========================================================================================================
# malformed configuration files


def cfg_with(tmp_path, old: str, new: str, name="bad.cfg") -> tuple[Path, int]:
    """The golden input with the first line containing ``old`` changed; returns (path, 1-based line)."""
    lines = CFG.read_text().splitlines(keepends=True)
    k = next(k for k, ln in enumerate(lines) if old in ln)
    lines[k] = lines[k].replace(old, new, 1)
    p = tmp_path / name
    p.write_text("".join(lines))
    return p, k + 1


def test_bad_number_in_cfg_cli(tmp_path, capsys):
    # atom 5 of the first configuration: -1.726877025254 2.736053693051 -0.034983507275
    p, line = cfg_with(tmp_path, "2.736053693051", "2.73605x693051")
    with pytest.raises(FormatError) as info:
        read_cfg(p)
    assert info.value.line == line and info.value.path == str(p)
    out = tmp_path / "out.cfg"
    rc, err = run_cli(capsys, "efs", POT, p, out)
    assert_cli_error(rc, err, str(p), f"line {line}", "2.73605x693051")
    assert not out.exists()


def test_nan_position_in_cfg(tmp_path, capsys):
    p, line = cfg_with(tmp_path, "2.736053693051", "nan")
    out = tmp_path / "out.cfg"
    rc, err = run_cli(capsys, "efs", POT, p, out)
    assert_cli_error(rc, err, str(p), f"line {line}", "finite")
    assert not out.exists()


def test_truncated_cfg_cli(tmp_path, capsys):
    text = CFG.read_text()
    p = tmp_path / "cut.cfg"
    p.write_text(text[: text.index("END_CFG", len(text) // 2)])  # the file ends inside a configuration
    out = tmp_path / "out.cfg"
    rc, err = run_cli(capsys, "efs", POT, p, out)
    assert_cli_error(rc, err, str(p), "line", "END_CFG")
    assert not out.exists()


# =========================================================================================================
# malformed extended XYZ


def xyz_lines():
    """One frame of 2 Mg atoms as extended-XYZ lines."""
    import io

    import ase.io

    buf = io.StringIO()
    ase.io.write(buf, mg_cell(), format="extxyz")
    lines = buf.getvalue().splitlines()
    assert lines[0].strip() == "2" and len(lines) == 4
    return lines


XYZ_DEFECTS = {
    "bad_number": lambda ls: ls[:2] + [" ".join(["Mg", "1.2.3"] + ls[2].split()[2:])] + ls[3:],
    "missing_atom_row": lambda ls: ls[:3] + ls[:3] + ls[3:],  # frame 1 declares 2 atoms but gives 1
    "bad_header": lambda ls: ["two"] + ls[1:],
}


@pytest.mark.parametrize("defect", sorted(XYZ_DEFECTS))
def test_bad_extxyz_read_structures(tmp_path, defect):
    from mtpjax.io import read_structures

    p = tmp_path / f"{defect}.extxyz"
    p.write_text("\n".join(XYZ_DEFECTS[defect](xyz_lines())) + "\n")
    with pytest.raises(FormatError) as info:
        read_structures(p)
    assert info.value.path == str(p) and str(p) in str(info.value)


@pytest.mark.parametrize("defect", sorted(XYZ_DEFECTS))
def test_bad_extxyz_cli(tmp_path, capsys, defect):
    p = tmp_path / f"{defect}.extxyz"
    p.write_text("\n".join(XYZ_DEFECTS[defect](xyz_lines())) + "\n")
    out = tmp_path / "out.extxyz"
    rc, err = run_cli(capsys, "efs", POT, p, out)
    assert_cli_error(rc, err, str(p))
    assert not out.exists()


# =========================================================================================================
# species the potential does not know


def test_unknown_element_calculator(calc):
    a = bulk("Cu", "fcc", a=3.6)
    a.calc = calc
    with pytest.raises(StructureError, match="Cu"):
        a.get_potential_energy()


def test_unknown_element_cli(tmp_path, capsys):
    import ase.io

    p = tmp_path / "cu.extxyz"
    ase.io.write(p, bulk("Cu", "fcc", a=3.6))
    rc, err = run_cli(capsys, "efs", POT, p, tmp_path / "out.extxyz", "--species", "Mg")
    assert_cli_error(rc, err, "Cu", str(p))
    # two elements and no --species: which is which is unknown
    mixed = mg_cell()
    mixed.symbols[1] = "Al"
    ase.io.write(p, mixed)
    rc, err = run_cli(capsys, "efs", POT, p, tmp_path / "out.extxyz")
    assert_cli_error(rc, err, "Al", "Mg")
    assert not (tmp_path / "out.extxyz").exists()


def test_type_out_of_range_cfg(tmp_path, capsys):
    c = to_cfg(mg_cell())
    c.types[1] = 1
    p = tmp_path / "type1.cfg"
    write_cfg([c], p)
    out = tmp_path / "out.cfg"
    rc, err = run_cli(capsys, "efs", POT, p, out)
    assert_cli_error(rc, err, "type 1", str(p), "configuration 1")
    assert not out.exists()


def test_type_out_of_range_calculator(calc):
    a = mg_cell()
    a.arrays["mlip_type"] = np.array([0, 1])
    a.calc = calc
    with pytest.raises(StructureError, match="type 1"):
        a.get_potential_energy()


# =========================================================================================================
# structures that cannot be evaluated


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_position(calc, value):
    a = mg_cell(repeat=(2, 1, 1))
    a.positions[2, 1] = value
    a.calc = calc
    with pytest.raises(StructureError) as info:
        a.get_potential_energy()
    msg = str(info.value)
    assert "atom" in msg and atom_in(msg, 2), msg
    a.pbc = False  # also without a cell
    with pytest.raises(StructureError):
        a.get_forces()


def test_non_finite_position_evaluator():
    from mtpjax.evaluate import Evaluator
    from mtpjax.model import load_mtp

    ev = Evaluator(load_mtp(POT))
    a = mg_cell()
    pos = a.positions.copy()
    pos[1, 0] = np.nan
    with pytest.raises(StructureError) as info:
        ev(pos, a.cell.array, True, [0, 0], name="my structure")
    assert "my structure" in str(info.value) and atom_in(str(info.value), 1)


def test_non_finite_position_extxyz_cli(tmp_path, capsys):
    lines = xyz_lines()
    toks = lines[3].split()
    toks[2] = "nan"
    lines[3] = " ".join(toks)
    p = tmp_path / "nan.extxyz"
    p.write_text("\n".join(lines) + "\n")
    rc, err = run_cli(capsys, "efs", POT, p, tmp_path / "out.extxyz")
    assert_cli_error(rc, err, str(p), "atom")
    assert not (tmp_path / "out.extxyz").exists()


SINGULAR_CELLS = {
    "two_identical_vectors": [[3.2, 0.0, 0.0], [3.2, 0.0, 0.0], [0.0, 0.0, 5.2]],
    "coplanar_vectors": [[3.2, 0.0, 0.0], [0.0, 3.2, 0.0], [3.2, 3.2, 0.0]],
    "zero_cell": np.zeros((3, 3)).tolist(),
}


@pytest.mark.parametrize("kind", sorted(SINGULAR_CELLS))
def test_singular_cell_calculator(calc, kind):
    a = Atoms("Mg2", positions=[[0, 0, 0], [1.6, 1.0, 2.6]], cell=SINGULAR_CELLS[kind], pbc=True)
    a.calc = calc
    with pytest.raises(StructureError, match="(?i)singular|volume"):
        a.get_potential_energy()


@pytest.mark.parametrize("kind", sorted(SINGULAR_CELLS))
def test_singular_cell_cli(tmp_path, capsys, kind):
    c = Configuration(types=[0, 0], positions=[[0, 0, 0], [1.6, 1.0, 2.6]], cell=SINGULAR_CELLS[kind])
    p = tmp_path / "singular.cfg"
    write_cfg([c], p)
    rc, err = run_cli(capsys, "efs", POT, p, tmp_path / "out.cfg")
    assert_cli_error(rc, err, str(p), "configuration 1")
    assert re.search("(?i)singular|volume", err), err
    assert not (tmp_path / "out.cfg").exists()


def test_overlapping_atoms(calc):
    a = mg_cell(repeat=(2, 1, 1))  # 4 atoms
    a.positions[3] = a.positions[1]
    a.calc = calc
    with pytest.raises(StructureError) as info:
        a.get_potential_energy()
    msg = str(info.value)
    assert "overlap" in msg and atom_in(msg, 1, 3), msg


def test_overlapping_periodic_image(calc):
    """Atom 1 sits on the image of atom 0 one lattice vector away."""
    a = mg_cell()
    a.positions[0] = [0.0, 0.0, 0.0]
    a.positions[1] = a.cell[0]
    a.calc = calc
    with pytest.raises(StructureError) as info:
        a.get_potential_energy()
    msg = str(info.value)
    assert "overlap" in msg and atom_in(msg, 0, 1), msg


def test_very_close_atoms_never_nan(calc):
    """Atoms far closer than r_min but not on top of each other: finite numbers, or a clear error."""
    for d in (0.5, 0.05, 0.002):
        a = Atoms("Mg2", positions=[[0, 0, 0], [0, 0, d]], pbc=False)
        a.calc = calc
        try:
            e, f = a.get_potential_energy(), a.get_forces()
        except StructureError as err:
            assert atom_in(str(err), 0, 1)
        else:
            assert np.isfinite(e) and np.isfinite(f).all(), (d, e, f)


# =========================================================================================================
# a bad configuration in the middle of a file loses nothing


def three_configs(bad_middle: Configuration) -> list[Configuration]:
    good = to_cfg(mg_cell(rattle=0.05, seed=1))
    return [good, bad_middle, to_cfg(mg_cell(rattle=0.05, seed=2))]


def test_bad_structure_mid_file_writes_nothing(tmp_path, capsys):
    """Configuration 2 of 3 has overlapping atoms: the CLI fails naming it, writes no partial output and leaves
    an existing output file as it was."""
    bad = to_cfg(mg_cell())
    bad.positions[1] = bad.positions[0]
    p = tmp_path / "in.cfg"
    write_cfg(three_configs(bad), p)
    before = p.read_bytes()
    out = tmp_path / "out.cfg"
    rc, err = run_cli(capsys, "efs", POT, p, out)
    assert_cli_error(rc, err, str(p), "configuration 2", "overlap")
    assert not out.exists()
    out.write_text("previous results\n")
    rc, err = run_cli(capsys, "efs", POT, p, out)
    assert rc == 2
    assert out.read_text() == "previous results\n"
    assert p.read_bytes() == before


def test_bad_format_mid_file_writes_nothing(tmp_path, capsys):
    p = tmp_path / "in.cfg"
    write_cfg(three_configs(to_cfg(mg_cell())), p)
    lines = p.read_text().splitlines(keepends=True)
    begins = [k for k, ln in enumerate(lines) if ln.startswith("BEGIN_CFG")]
    row = next(k for k in range(begins[1], begins[2]) if lines[k].strip().startswith("2 "))  # atom 2 of cfg 2
    toks = lines[row].split()
    lines[row] = " ".join(toks[:3] + ["oops"] + toks[4:]) + "\n"
    p.write_text("".join(lines))
    out = tmp_path / "out.extxyz"
    out.write_text("previous results\n")
    rc, err = run_cli(capsys, "efs", POT, p, out)
    assert_cli_error(rc, err, str(p), f"line {row + 1}", "oops")
    assert out.read_text() == "previous results\n"


def test_unwritable_output_cli(tmp_path, capsys):
    """An output path in a folder that does not exist: exit code 2 naming the path (after the work is done)."""
    p = tmp_path / "in.cfg"
    write_cfg(three_configs(to_cfg(mg_cell(rattle=0.05, seed=3)))[:1], p)
    out = tmp_path / "no_such_dir" / "out.cfg"
    rc, err = run_cli(capsys, "efs", POT, p, out)
    assert_cli_error(rc, err, "no_such_dir")


def test_empty_structure_is_zero(calc):
    """No atoms: zero energy, nothing NaN."""
    a = Atoms(cell=np.eye(3) * 5.0, pbc=True)
    a.calc = calc
    assert a.get_potential_energy() == 0.0
    assert a.get_forces().shape == (0, 3)
    np.testing.assert_array_equal(a.get_stress(), 0.0)


def test_errors_are_mtpjax_errors():
    """The exception hierarchy the messages rely on: catchable as MtpjaxError and as ValueError."""
    assert issubclass(FormatError, MtpjaxError) and issubclass(StructureError, MtpjaxError)
    assert issubclass(FormatError, ValueError) and issubclass(StructureError, ValueError)
    e = FormatError("bad thing", path="x.cfg", line=7)
    assert str(e) == "x.cfg, line 7: bad thing" and e.line == 7 and e.path == "x.cfg"
