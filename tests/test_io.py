"""mtpjax.io: MLIP potential files, MLIP cfg files, ASE conversion, and their error reporting."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtpjax.errors import FormatError, StructureError
from mtpjax.io import (
    Configuration,
    MTPFile,
    atoms_to_configuration,
    configuration_to_atoms,
    iter_cfg,
    mtp_to_bytes,
    read_cfg,
    read_mtp,
    read_structures,
    write_cfg,
    write_mtp,
    write_structures,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
if not SHARED.is_dir():
    pytest.skip(f"shared reference data not found at {SHARED} (expected beside the project root)",
                allow_module_level=True)

TEMPLATES = sorted((SHARED / "data" / "mtp_templates").glob("*.almtp"))
GOLDEN = SHARED / "golden" / "mlip"
GRADE = SHARED / "golden" / "mlip-grade"
BENCH = SHARED / "bench" / "fit"
POTENTIALS = TEMPLATES + sorted(GOLDEN.glob("*.almtp")) + [GRADE / "pot08_m2.mtp", BENCH / "mlip3_l16_rc6p5.almtp"]
L08 = GOLDEN / "pub_l08_s1_rc5.almtp"
OUT08 = GOLDEN / "pub_l08_s1_rc5_out.cfg"
TEMPLATE_COUNTS = {"08": 9, "12": 29, "16": 92, "20": 288, "24": 864, "28": 2445}


def _need(path: Path):
    if not path.exists():
        pytest.skip(f"{path} missing from shared/")
    return path


# ------------------------------------------------------------------ potentials
@pytest.mark.parametrize("path", POTENTIALS, ids=lambda p: p.name)
def test_mtp_round_trip(path, tmp_path):
    m = read_mtp(path)
    assert m.alpha_index_basic.shape == (m.alpha_index_basic_count, 4)
    assert m.alpha_moment_mapping.shape == (m.alpha_scalar_moments,)
    out1 = tmp_path / "a.almtp"
    write_mtp(m, out1)
    m2 = read_mtp(out1)
    assert m2 == m
    for name in ("radial_coeffs", "species_coeffs", "moment_coeffs"):
        a, b = getattr(m, name), getattr(m2, name)
        assert (a is None and b is None) or np.array_equal(a, b)
    out2 = tmp_path / "b.almtp"
    write_mtp(m2, out2)
    assert out2.read_bytes() == out1.read_bytes()
    stem = path.stem
    if stem in TEMPLATE_COUNTS:
        assert m.alpha_scalar_moments == TEMPLATE_COUNTS[stem]
        assert not m.is_trained
        assert b"radial_coeffs" not in out1.read_bytes() and b"moment_coeffs" not in out1.read_bytes()


def test_trained_values_and_layout():
    m = read_mtp(_need(L08))
    assert m.is_trained and m.scaling == 0.05 and m.min_dist == 2.0 and m.max_dist == 5.0
    assert m.radial_coeffs.shape == (1, 1, 2, 8)
    assert m.radial_coeffs[0, 0, 0, 0] == 1.6769553253574826e-01
    assert m.radial_coeffs[0, 0, 1, 7] == 4.6214506999131161e-01
    assert m.species_coeffs.tolist() == [-1.4920555785036682e+00]
    assert m.moment_coeffs[-1] == -2.0989036066307476e-01
    assert m.alpha_index_times[-1].tolist() == [0, 15, 1, 17]
    text = mtp_to_bytes(m).decode()
    assert "\tradial_coeffs\n\t\t0-0\n\t\t\t{1.6769553253574826e-01, " in text
    assert "\tmin_dist = 2.0000000000000000e+00\n" in text
    assert text.startswith("MTP\nversion = 1.1.0\npotential_name = MTP1m\nscaling = 5.0000000000000003e-02\n")


def test_mlip2_mtp_reads():
    m = read_mtp(_need(GRADE / "pot08_m2.mtp"))
    assert m.is_trained and m.alpha_scalar_moments == 9 and m.tail == b""
    assert m.scaling == 3.725061496721449e-02


def test_almtp_binary_tail_kept(tmp_path):
    path = _need(BENCH / "mlip3_l16_rc6p5.almtp")
    data = path.read_bytes()
    tail = data[data.index(b"\n#MVS_v1.1\n") + 1:]
    m = read_mtp(path)
    assert m.tail == tail and len(tail) > 1000
    out = tmp_path / "x.almtp"
    write_mtp(m, out)
    assert out.read_bytes().endswith(b"moment_coeffs = {" + b", ".join(b"%.16e" % v for v in m.moment_coeffs)
                                      + b"}\n" + tail)
    m2 = read_mtp(out)
    assert m2.tail == tail and m2 == m


def test_construct_validates():
    m = read_mtp(_need(L08))
    kw = dict(species_count=1, min_dist=2.0, max_dist=5.0, radial_basis_size=8, radial_funcs_count=2,
              alpha_moments_count=18, alpha_index_basic=m.alpha_index_basic, alpha_index_times=m.alpha_index_times,
              alpha_moment_mapping=m.alpha_moment_mapping)
    t = MTPFile(**kw)
    assert not t.is_trained
    with pytest.raises(FormatError, match="alpha_moment_mapping"):
        MTPFile(**{**kw, "alpha_moment_mapping": [0, 18]})
    with pytest.raises(FormatError, match="moment_coeffs"):
        MTPFile(**kw, radial_coeffs=np.zeros((1, 1, 2, 8)), species_coeffs=[0.0], moment_coeffs=np.zeros(8))
    with pytest.raises(FormatError, match="expected all coefficients"):
        MTPFile(**kw, radial_coeffs=np.zeros((1, 1, 2, 8)))


def _line_of(lines, prefix):
    return next(i for i, ln in enumerate(lines) if ln.strip().startswith(prefix)) + 1


def _mutate(src: Path, dst: Path, prefix: str, old: str, new: str) -> int:
    """Replace ``old`` by ``new`` in the first line starting with ``prefix``; return its 1-based number."""
    lines = src.read_text().split("\n")
    n = _line_of(lines, prefix)
    assert old in lines[n - 1]
    lines[n - 1] = lines[n - 1].replace(old, new, 1)
    dst.write_text("\n".join(lines))
    return n


def _check(exc_info, path: Path, line: int, *words):
    e = exc_info.value
    msg = str(e)
    assert path.name in msg and f"line {line}:" in msg and e.line == line, msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("case", [
    ("alpha_index_basic_count", "= 11", "= 12", "alpha_index_basic =", ["alpha_index_basic has 11 entries"]),
    ("alpha_index_times_count", "= 14", "= 13", "alpha_index_times =", ["alpha_index_times_count = 13"]),
    ("alpha_index_times =", "{0, 15, 1, 17}", "{0, 18, 1, 17}", None, ["entry 13", "p and q"]),
    ("alpha_index_times =", "{0, 15, 1, 17}", "{0, 15, 1, 3}", None, ["output o"]),
    ("alpha_index_times =", "{0, 0, 1, 11}", "{0, 12, 1, 11}", None, ["topological"]),
    ("alpha_index_basic =", "{1, 0, 0, 0}", "{2, 0, 0, 0}", None, ["mu", "radial_funcs_count=2"]),
    ("alpha_index_basic =", "{0, 0, 0, 1}", "{0, 0, 1}", None, ["entry 3 has 3 numbers, expected 4"]),
    ("alpha_moment_mapping", "17}", "18}", None, ["entry 8 = 18"]),
    ("alpha_scalar_moments", "= 9", "= 10", "alpha_moment_mapping", ["alpha_scalar_moments = 10"]),
    ("min_dist", "2.0", "two", None, ["min_dist", "expected a number"]),
    ("radial_basis_size", "8", "8.5", None, ["expected an integer"]),
    ("species_coeffs", "{-1.4920555785036682e+00}", "{-1.49, 0.1}", None, ["species_count = 1"]),
    ("moment_coeffs", "{-2.9245675096508861e-01, ", "{", None, ["alpha_scalar_moments = 9"]),
    ("{1.6769553253574826e-01", "2.8198891091379247e-01", "x", None, ["expected a number", "'x'"]),
    ("{2.8134992256369445e-01", ", 4.6214506999131161e-01", "", None, ["7 numbers", "radial_basis_size = 8"]),
    ("0-0", "0-0", "0-1", None, ["species_count = 1"]),
    ("species_count", "1", "2", "radial_coeffs", ["expected species_count^2 = 4", "missing 0-1, 1-0, 1-1"]),
    ("radial_basis_type", "RBChebyshev", "RBGauss", None, ["RBChebyshev"]),
    ("alpha_moments_count", "alpha", "lapha", None, ["unknown key 'lapha_moments_count'"]),
], ids=lambda c: f"{c[0]}:{c[2]}")
def test_mtp_malformed(case, tmp_path):
    prefix, old, new, err_prefix, words = case
    bad = tmp_path / "bad.almtp"
    n = _mutate(_need(L08), bad, prefix, old, new)
    if err_prefix is not None:
        n = _line_of(bad.read_text().split("\n"), err_prefix)
    with pytest.raises(FormatError) as ei:
        read_mtp(bad)
    _check(ei, bad, n, *words)


def test_mtp_truncated(tmp_path):
    lines = _need(L08).read_text().split("\n")
    bad = tmp_path / "trunc.almtp"
    bad.write_text("\n".join(lines[:17]) + "\n")  # ends after alpha_index_basic_count
    with pytest.raises(FormatError) as ei:
        read_mtp(bad)
    _check(ei, bad, 17, "alpha_index_basic")
    # cut inside an array line
    bad.write_text("\n".join(lines[:19]) + "\n" + lines[19][:50])
    with pytest.raises(FormatError) as ei:
        read_mtp(bad)
    _check(ei, bad, 20, "unterminated")
    # cut inside the radial coefficients: block 0-0 has one row of two
    bad.write_text("\n".join(lines[:14]) + "\n")
    with pytest.raises(FormatError):
        read_mtp(bad)
    bad.write_text("")
    with pytest.raises(FormatError, match="empty"):
        read_mtp(bad)
    bad.write_text("MTQ\n")
    with pytest.raises(FormatError) as ei:
        read_mtp(bad)
    _check(ei, bad, 1, "'MTP'")


def test_mtp_tolerant_whitespace(tmp_path):
    text = _need(L08).read_text()
    lines = text.split("\n")
    lines = ["  " + ln.replace(" = ", "\t=   ") if ln else ln for ln in lines]
    j = _line_of(lines, "alpha_index_times\t=") - 1
    lines[j] = lines[j].replace("}, {", "},\n   {", 3)  # an array over several lines
    p = tmp_path / "ws.mtp"
    p.write_text("\r\n".join(lines))
    assert read_mtp(p) == read_mtp(L08)


# ------------------------------------------------------------------------ cfg
def test_cfg_golden_out_values():
    cfgs = read_cfg(_need(OUT08))
    assert len(cfgs) == 10
    c = cfgs[0]
    assert c.natoms == 36 and c.types.tolist() == [0] * 36 and c.ids.tolist() == list(range(1, 37))
    assert c.energy == -73.813521942100
    assert c.forces[0].tolist() == [-0.153904, 0.920059, -0.091574]
    assert c.positions[35].tolist() == [3.141690, 7.417817, 7.723088]
    assert c.plus_stress.tolist() == [-48.67583, -47.64316, -46.45510, 0.26765, -0.89236, 1.44425]
    assert c.cell.tolist() == [[9.57, 0.0, 0.0], [-4.785, 8.287863, 0.0], [0.0, 0.0, 10.36]]
    assert c.features == [("EFS_by", "MultiMTP10")]
    assert [len(x) for x in iter_cfg(OUT08)] == [len(x) for x in cfgs]
    inp = read_cfg(GOLDEN / "pub_l08_s1_rc5_in.cfg")
    assert len(inp) == 10 and inp[0].energy is None and inp[0].forces is None and inp[0].plus_stress is None
    assert inp[0].positions[0].tolist() == [-0.063212199997, -0.162770038547, 0.048264139754]


@pytest.mark.parametrize("name", ["pub_l08_s1_rc5_out.cfg", "pub_l16_s1_rc6p5_out.cfg"])
def test_cfg_mlip_layout_reproduces_golden(name, tmp_path):
    src = _need(GOLDEN / name)
    out = tmp_path / name
    write_cfg(read_cfg(src), out)
    assert out.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("path", [OUT08, GOLDEN / "pub_l16_s1_rc6p5_in.cfg", SHARED / "data/mlip_cfg/RandSPG_head.cfg",
                                  GRADE / "cand_graded.cfg", BENCH / "test.cfg"], ids=lambda p: p.name)
def test_cfg_full_precision_round_trip(path, tmp_path):
    cfgs = read_cfg(_need(path))
    rng = np.random.default_rng(0)
    for c in cfgs:  # make the numbers use every bit
        c.positions = c.positions + rng.normal(size=c.positions.shape) * 1e-3
        if c.energy is not None:
            c.energy = c.energy / 3.0
    out = tmp_path / "full.cfg"
    write_cfg(cfgs, out, precision="full")
    assert read_cfg(out) == cfgs


def test_cfg_randspg():
    cfgs = read_cfg(_need(SHARED / "data/mlip_cfg/RandSPG_head.cfg"))
    assert [c.energy for c in cfgs] == [-1.156145, -1.041981]
    assert cfgs[0].plus_stress.tolist() == [0.376685, 0.376685, 1.930518, -0.0, 0.0, 0.0]
    assert cfgs[1].plus_stress.tolist() == [0.910499, 0.910499, 0.910499, -0.0, 0.0, -0.0]
    assert cfgs[0].features == [("pyiron", "16279317_0")] and cfgs[1].feature("pyiron") == "16279317_1"
    assert cfgs[0].cell[1].tolist() == [-1.512478, 2.619688, 0.0]
    assert cfgs[1].positions.tolist() == [[1.415547] * 3] and cfgs[1].forces.tolist() == [[0.0] * 3]


def test_cfg_mv_grade():
    test = read_cfg(_need(GRADE / "test_graded.cfg"))
    cand = read_cfg(GRADE / "cand_graded.cfg")
    assert len(test) == 10 and len(cand) == 4
    assert float(test[0].feature("MV_grade")) == 0.940583
    assert float(test[1].feature("MV_grade")) == 0.423704
    assert float(cand[0].feature("MV_grade")) == 3.405185
    assert test[0].features[0] == ("EFS_by", "ase_LJ")


def test_cfg_variants(tmp_path):
    p = tmp_path / "v.cfg"
    p.write_text(
        "BEGIN_CFG\nSize 2\nSupercell\n 2 0 0\n 0 3 0\n 0 0 4\n"
        "AtomData: type direct_x direct_y direct_z nbh_grades id\n 1 0.5 0.5 0.5 1.5 7\n 0 0 0.25 0 2.5 8\n"
        "Energy\n -1.5\nPlusStress: xy xz yz zz yy xx\n 6 5 4 3 2 1\nFeature a  b c \nFeature a\nEND_CFG\n"
        "\nBEGIN_CFG\n Size\n  1\n AtomData:  id type cartes_x cartes_y cartes_z\n 1 3 0.1 0.2 0.3\nEND_CFG\n")
    c, mol = read_cfg(p)
    assert c.positions.tolist() == [[1.0, 1.5, 2.0], [0.0, 0.75, 0.0]]
    assert c.types.tolist() == [1, 0] and c.ids.tolist() == [7, 8]
    assert c.extra_columns["nbh_grades"].tolist() == [1.5, 2.5]
    assert c.plus_stress.tolist() == [1, 2, 3, 4, 5, 6]
    assert c.features == [("a", "b c"), ("a", "")]
    assert mol.cell is None and mol.energy is None and mol.types.tolist() == [3]
    out = tmp_path / "w.cfg"
    write_cfg([c, mol], out, precision="full")
    assert read_cfg(out) == [c, mol]
    write_cfg(c, out)
    assert " nbh_grades" in out.read_text() and read_cfg(out)[0].extra_columns["nbh_grades"].tolist() == [1.5, 2.5]


def _cfg_case(tmp_path, edit):
    lines = _need(OUT08).read_text().split("\n")
    lines, n = edit(lines)
    p = tmp_path / "bad.cfg"
    p.write_text("\n".join(lines))
    return p, n


@pytest.mark.parametrize("kind", ["truncated", "size_large", "size_small", "nonnumeric", "energy_text",
                                  "cell_row", "missing_end", "stress_count", "unknown", "no_begin", "row_columns",
                                  "size_text", "nan"])
def test_cfg_malformed(kind, tmp_path):
    def edit(lines):
        if kind == "truncated":
            return lines[:20], 20
        if kind == "size_large":
            lines[2] = "    37"
            return lines, 45  # the ' Energy' line where atom row 37 was expected
        if kind == "size_small":
            lines[2] = "    35"
            return lines, 44  # atom row 36
        if kind == "nonnumeric":
            lines[9] = lines[9].replace("1.816972", "1.8x6972")
            return lines, 10
        if kind == "energy_text":
            lines[45] = "   abc"
            return lines, 46
        if kind == "cell_row":
            lines[5] = "   -4.785000      8.287863"
            return lines, 6
        if kind == "missing_end":
            del lines[49]
            return lines, 51  # the next BEGIN_CFG
        if kind == "stress_count":
            lines[47] = lines[47].rsplit(None, 1)[0]
            return lines, 48
        if kind == "unknown":
            lines.insert(46, " Energie")
            return lines, 47
        if kind == "no_begin":
            lines.insert(0, "BEGIN_CFX")
            return lines, 1
        if kind == "row_columns":
            lines[20] = lines[20] + "  1.0"
            return lines, 21
        if kind == "size_text":
            lines[2] = "  thirty-six"
            return lines, 3
        if kind == "nan":
            lines[11] = lines[11].replace("0.354795", "nan")
            return lines, 12
        raise AssertionError(kind)

    p, n = _cfg_case(tmp_path, edit)
    with pytest.raises(FormatError) as ei:
        read_cfg(p)
    _check(ei, p, n)


def test_cfg_malformed_messages(tmp_path):
    p = tmp_path / "m.cfg"
    p.write_text("BEGIN_CFG\n Size\n 2\n AtomData: id type cartes_x cartes_y cartes_z\n 1 0 0 0 0\nEND_CFG\n")
    with pytest.raises(FormatError) as ei:
        read_cfg(p)
    _check(ei, p, 6, "AtomData has 1 rows but Size (line 3) says 2")
    p.write_text("BEGIN_CFG\n Size\n 1\nEND_CFG\n")
    with pytest.raises(FormatError) as ei:
        read_cfg(p)
    _check(ei, p, 4, "no AtomData")
    p.write_text("BEGIN_CFG\n Size\n 1\n AtomData: id type direct_x direct_y direct_z\n 1 0 0 0 0\nEND_CFG\n")
    with pytest.raises(FormatError) as ei:
        read_cfg(p)
    _check(ei, p, 4, "Supercell")


# ----------------------------------------------------------------- ASE bridge
def test_atoms_round_trip(tmp_path):
    cfgs = read_cfg(_need(OUT08)) + read_cfg(GRADE / "test_graded.cfg")[:2]
    for species in (["Mg"], None):
        for c in cfgs:
            a = configuration_to_atoms(c, species)
            assert a.pbc.all() and a.get_chemical_symbols()[0] == ("Mg" if species else "H")
            assert a.get_potential_energy() == c.energy
            np.testing.assert_array_equal(a.get_forces(), c.forces)
            np.testing.assert_allclose(a.get_stress() * -a.get_volume(), c.plus_stress, rtol=1e-14, atol=1e-14)
            back = atoms_to_configuration(a, species)
            np.testing.assert_allclose(back.plus_stress, c.plus_stress, rtol=1e-13, atol=1e-13)
            back.plus_stress = c.plus_stress
            assert back == c
    # without mlip_type: map symbols via species, unknown elements are named with the structure index
    atoms = [configuration_to_atoms(c, ["Mg"]) for c in cfgs[:3]]
    for a in atoms:
        del a.arrays["mlip_type"]
    assert atoms_to_configuration(atoms[0], ["Al", "Mg"]).types.tolist() == [1] * 36
    atoms[1].symbols[5] = "Cu"
    with pytest.raises(StructureError, match="structure 1: element 'Cu' \\(atom 5\\)"):
        write_structures(atoms, tmp_path / "x.cfg", species=["Mg"])
    with pytest.raises(StructureError, match="species"):
        atoms_to_configuration(atoms[0])
    mol = Configuration(types=[0, 0], positions=[[0, 0, 0], [0, 0, 1.5]], plus_stress=np.arange(6.0))
    a = configuration_to_atoms(mol, ["Ar"])
    assert not a.pbc.any() and atoms_to_configuration(a) == mol


def test_read_write_structures(tmp_path):
    test_cfg = _need(BENCH / "test.cfg")
    from_cfg = read_structures(test_cfg, species=["Mg"])
    from_xyz = read_structures(_need(BENCH / "test.extxyz"), index=":")
    assert len(from_cfg) == len(from_xyz) == 100
    for a, b in zip(from_cfg[:10], from_xyz[:10]):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-8)
        np.testing.assert_allclose(a.get_potential_energy(), b.get_potential_energy(), atol=1e-9)
        np.testing.assert_allclose(a.get_stress(), b.get_stress(), atol=1e-9)
    assert len(read_structures(test_cfg, index="-3:", species=["Mg"])) == 3
    assert len(read_structures(test_cfg, index=4, species=["Mg"])) == 1
    out = tmp_path / "o.extxyz"
    write_structures(from_cfg[:5], out)
    again = read_structures(out)
    assert [a.arrays["mlip_type"].tolist() for a in again] == [a.arrays["mlip_type"].tolist() for a in from_cfg[:5]]
    cfg_out = tmp_path / "o.cfg"
    write_structures(again, cfg_out, precision="full")
    assert len(read_cfg(cfg_out)) == 5


def test_extxyz_malformed(tmp_path):
    good = _need(BENCH / "test.extxyz").read_text().split("\n")
    natoms = int(good[0])
    frame2_first_atom = natoms + 2 + 3  # 1-based line of the first atom of frame 1
    bad_lines = list(good)
    bad_lines[frame2_first_atom - 1] = "Mg  1.0  oops  2.0  0 0 0"
    p = tmp_path / "bad.extxyz"
    p.write_text("\n".join(bad_lines))
    with pytest.raises(FormatError) as ei:
        read_structures(p)
    _check(ei, p, frame2_first_atom, "frame 1")
