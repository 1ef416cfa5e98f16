"""The MaxVol active set and extrapolation grades against MLIP-2 (``shared/golden/mlip-grade``).

- configuration-mode grades of ``cand.cfg`` and ``test.cfg`` equal MLIP-2's ``mlp calc-grade`` output (``MV_grade``,
  printed with 6 decimals) to 1e-5 relative;
- ``select_add`` picks exactly the configurations of MLIP-2's ``mlp select-add`` (``selected_new.cfg``), in its order;
- the rows are the energy's parameter derivatives (central finite differences; the species column is exactly 1);
  neighbourhood rows sum to the configuration rows;
- MaxVol's invariants on a random matrix (every training row ends with |c| <= the swap threshold, A_inv = A^-1,
  active rows have grade 1, |det A| grows with every swap);
- the active set is stored with the potential (``.mtpjax`` metadata, a JSON file next to an MLIP potential) and
  loads back bit for bit; a potential without one still loads; a mismatched potential is refused;
- ``mtpjax grade`` and ``mtpjax select`` on the golden files, in-process.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtpjax.active import (
    ActiveSet,
    build_active_set,
    configuration_rows,
    grade,
    load_active_set,
    parameter_vector,
    save_active_set,
    select_add,
    site_energy_rows,
    with_parameters,
)
from mtpjax.errors import FormatError, MtpjaxError
from mtpjax.io import read_cfg

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "mlip-grade"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (it lives in ../shared beside the repository)")
    return path


@pytest.fixture(scope="module")
def mtp():
    from mtpjax.model import load_mtp

    return load_mtp(need(GOLDEN / "pot08_m2.mtp"))


@pytest.fixture(scope="module")
def train():
    return read_cfg(need(GOLDEN / "train.cfg"))


@pytest.fixture(scope="module")
def active(mtp, train):
    return build_active_set(mtp, train)


def mlip_grades(name: str) -> np.ndarray:
    return np.array([float(c.feature("MV_grade")) for c in read_cfg(need(GOLDEN / name))])


@pytest.mark.parametrize("name", ["cand", "test"])
def test_grades_match_mlip2_calc_grade(name, mtp, active):
    ref = mlip_grades(f"{name}_graded.cfg")
    got = grade(mtp, active, read_cfg(GOLDEN / f"{name}.cfg")).grades
    # MLIP prints 6 decimals: half a unit of the last digit on top of 1e-5 relative
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=0.5e-6)
    assert np.max(np.abs(got / ref - 1)) < 1e-5


def test_select_add_matches_mlip2(mtp, active):
    cand = read_cfg(GOLDEN / "cand.cfg")
    picked, new = select_add(mtp, active, cand)
    chosen = read_cfg(need(GOLDEN / "selected_new.cfg"))
    assert len(picked) == len(chosen) == 3
    for k, c in zip(picked, chosen):  # same configurations, in MLIP's order (positions printed to 1e-6 Å)
        np.testing.assert_allclose(cand[k].positions, c.positions, atol=1e-6)
    # after the selection every candidate is interpolated to the swap threshold
    assert grade(mtp, new, cand).grades.max() <= 1.0000001 + 1e-9


def test_rows_are_energy_derivatives(mtp, train):
    """dE/dθ / N against central differences of the model's energy (every parameter kind), and the species column."""
    import jax

    from mtpjax.neighbors import neighbour_list
    from mtpjax.potential import energy

    c = train[0]
    row = configuration_rows(mtp, [c])[0]
    assert row[mtp.radial_coeffs.size] == 1.0  # dE/d(species coefficient) = N
    nbrs = neighbour_list(c.positions, c.cell, True, mtp.cutoff, n_atoms_pad=len(c.positions))
    e = jax.jit(lambda t: energy(with_parameters(mtp, t), c.positions, c.cell, c.types, nbrs))
    theta = np.asarray(parameter_vector(mtp))
    for p in (0, 7, 15, 16, 17, 25):  # radial (3), species, moment (2)
        h = 1e-4 * max(1.0, abs(theta[p]))
        tp, tm = theta.copy(), theta.copy()
        tp[p] += h
        tm[p] -= h
        fd = (float(e(tp)) - float(e(tm))) / (2 * h) / len(c.positions)
        assert row[p] == pytest.approx(fd, rel=1e-6, abs=1e-9), p


def test_neighbourhood_rows_sum_to_configuration_rows(mtp, train):
    J, owner = site_energy_rows(mtp, train[:3])
    assert J.shape == (108, rows_len(mtp)) and owner.tolist() == [0] * 36 + [1] * 36 + [2] * 36
    summed = np.stack([J[owner == k].mean(axis=0) for k in range(3)])
    np.testing.assert_allclose(summed, configuration_rows(mtp, train[:3]), rtol=1e-12, atol=1e-14)


def rows_len(mtp) -> int:
    return int(parameter_vector(mtp).shape[0])


def test_neighbourhood_grades(mtp, train):
    """Per-atom grades: a structure's grade is its largest atom grade; training structures interpolate."""
    nbh = build_active_set(mtp, train, mode="nbh")
    g = grade(mtp, nbh, read_cfg(GOLDEN / "cand.cfg"))
    assert [len(a) for a in g.atom_grades] == [36] * 4
    np.testing.assert_array_equal(g.grades, [a.max() for a in g.atom_grades])
    assert grade(mtp, nbh, train).grades.max() <= 1.0000001 + 1e-9
    assert g.grades[2] > 100 and g.grades[3] > 100  # the two strongly distorted candidates


def test_maxvol_invariants():
    rng = np.random.default_rng(0)
    B = rng.normal(size=(40, 6)) * np.array([1, 1, 1, 1e-2, 1, 1])
    start = ActiveSet.initial(6, threshold_init=1e-5)
    a, swaps = start.select(B, np.arange(40))
    assert len(swaps) >= 6 and sorted(a.origin.tolist()) == sorted(set(a.origin.tolist()))  # 6 distinct rows
    assert a.grades(B).max() <= 1.0000001 + 1e-12
    np.testing.assert_allclose(a.A_inv @ a.A, np.eye(6), atol=1e-7)  # Sherman-Morrison updates, as MLIP
    np.testing.assert_allclose(a.A, B[a.origin], rtol=0, atol=0)
    np.testing.assert_allclose(a.grades(a.A), 1.0, rtol=1e-9)
    # replaying the swaps: |det A| grows at every one of them
    A = start.A.copy()
    Bc = B.copy()
    dets = [abs(np.linalg.det(A))]
    for k, l in swaps:
        A[l], Bc[k] = Bc[k].copy(), A[l].copy()
        dets.append(abs(np.linalg.det(A)))
    assert all(d1 > d0 for d0, d1 in zip(dets, dets[1:]))
    # the selection threshold: nothing is swapped when no grade exceeds it
    assert a.select(B * 0.5, np.arange(40))[1] == []


def test_active_set_stored_with_potential(mtp, active, tmp_path):
    from mtpjax.model import load_mtp, save_mtp

    pot = tmp_path / "pot.mtpjax"
    save_mtp(mtp, pot, metadata={"note": "kept"})
    assert load_active_set(pot) is None  # a potential without an active set
    save_active_set(pot, active)
    back = load_active_set(pot, mtp)
    for name in ("A", "A_inv", "origin"):
        np.testing.assert_array_equal(getattr(back, name), getattr(active, name))
    assert back.mode == "cfg" and back.fingerprint == active.fingerprint
    from mtpjax.io.native import read_native

    again, metadata = read_native(pot)
    assert metadata["note"] == "kept"
    np.testing.assert_array_equal(np.asarray(parameter_vector(again)), np.asarray(parameter_vector(mtp)))
    # next to an MLIP potential: POT.active.json
    mlip = tmp_path / "pot.mtp"
    mlip.write_bytes((GOLDEN / "pot08_m2.mtp").read_bytes())
    assert load_active_set(mlip) is None
    assert save_active_set(mlip, active, mtp) == tmp_path / "pot.mtp.active.json"
    np.testing.assert_array_equal(load_active_set(mlip, load_mtp(mlip)).A_inv, active.A_inv)
    # another potential's parameters are refused
    other = with_parameters(mtp, parameter_vector(mtp) * 1.01)
    with pytest.raises(MtpjaxError, match="other parameters"):
        load_active_set(mlip, other)
    (tmp_path / "pot.mtp.active.json").write_text('{"format": "mtpjax-active-set", "version": 1, "n": 3}')
    with pytest.raises(FormatError, match="pot.mtp.active.json"):
        load_active_set(mlip)


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_grade_cfg_and_nbh_extxyz(tmp_path, capsys):
    from ase.io import read

    from mtpjax.cli import main

    pot, train, cand = (str(GOLDEN / n) for n in ("pot08_m2.mtp", "train.cfg", "cand.cfg"))
    out = tmp_path / "graded.cfg"
    assert main(["grade", pot, train, cand, str(out), "-q"]) == 0
    got = np.array([float(c.feature("MV_grade")) for c in read_cfg(out)])
    np.testing.assert_allclose(got, mlip_grades("cand_graded.cfg"), rtol=1e-5, atol=0.5e-6)
    # neighbourhood mode to extended XYZ: per-atom array, its maximum is the structure's grade
    xyz = tmp_path / "graded.extxyz"
    assert main(["grade", pot, train, cand, str(xyz), "--mode", "nbh", "-q"]) == 0
    frames = read(xyz, ":")
    assert len(frames) == 4
    for a in frames:
        assert a.arrays["nbh_grades"].shape == (36,)
        assert a.info["MV_grade"] == pytest.approx(a.arrays["nbh_grades"].max(), rel=1e-7)  # ASE prints 8 digits
    # and as a cfg column
    col = tmp_path / "nbh.cfg"
    assert main(["grade", pot, train, cand, str(col), "--mode", "nbh", "-q"]) == 0
    c = read_cfg(col)
    np.testing.assert_allclose([x.extra_columns["nbh_grades"].max() for x in c], [a.info["MV_grade"] for a in frames],
                               rtol=1e-12)


def test_cli_select_matches_mlip2(tmp_path):
    from mtpjax.cli import main

    out = tmp_path / "new.cfg"
    args = [str(GOLDEN / n) for n in ("pot08_m2.mtp", "train.cfg", "cand.cfg")]
    assert main(["select", *args, str(out), "-q"]) == 0
    got, ref = read_cfg(out), read_cfg(GOLDEN / "selected_new.cfg")
    assert len(got) == len(ref) == 3
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g.positions, r.positions, atol=1e-6)


def test_cli_bad_input_names_the_file(tmp_path, capsys):
    from mtpjax.cli import main

    pot, train, cand = (str(GOLDEN / n) for n in ("pot08_m2.mtp", "train.cfg", "cand.cfg"))
    bad = tmp_path / "broken.cfg"
    bad.write_text("BEGIN_CFG\n Size\n    two\nEND_CFG\n")
    assert main(["grade", pot, str(bad), cand, str(tmp_path / "o.cfg")]) == 2
    assert "broken.cfg" in capsys.readouterr().err
    empty = tmp_path / "empty.cfg"
    empty.write_text("")
    assert main(["select", pot, train, str(empty), str(tmp_path / "o.cfg")]) == 2
    assert "empty.cfg" in capsys.readouterr().err and not (tmp_path / "o.cfg").exists()
    assert main(["grade", pot, train, cand, str(tmp_path / "o.txt")]) == 2
    assert "o.txt" in capsys.readouterr().err


# ------------------------------------------------------------------------------- MLIP-3's .almtp section
MLIP3 = GOLDEN.parents[1] / "bench" / "fit" / "mlip3_l16_rc6p5.almtp"


def test_mlip3_almtp_active_set_rows_are_ours():
    """MLIP-3 stored its level-16 active set A with the configurations of its rows: mtpjax's rows of those
    configurations are A's rows (an independent check of the rows at level 16 with trained coefficients), they all
    grade 1 against it, and the section written back is byte for byte MLIP-3's up to the stored configurations."""
    from mtpjax.active.almtp import read_active_set, read_selected, section_bytes
    from mtpjax.io import read_mtp
    from mtpjax.model import load_mtp

    mtp = load_mtp(need(MLIP3))
    a = load_active_set(MLIP3, mtp)  # no sidecar: MLIP-3's own #MVS_v1.1 section
    assert a.mode == "cfg" and a.n == 125 and int((a.origin < 0).sum()) == 11
    selected = read_selected(MLIP3)
    assert len(selected) == 114
    used = a.origin >= 0
    rows = configuration_rows(mtp, selected)
    np.testing.assert_allclose(a.A[used], rows[a.origin[used]], rtol=0, atol=1e-12 * np.abs(a.A).max())
    np.testing.assert_allclose(a.A @ a.A_inv, np.eye(125), atol=1e-6)  # (A_inv is stored transposed)
    g = grade(mtp, a, selected).grades
    np.testing.assert_allclose(g, 1.0, atol=1e-6)
    tail = read_mtp(MLIP3).tail
    mine = section_bytes(a, selected)
    cut = b"#\nBEGIN_CFG"
    assert mine.split(cut)[0] == tail.split(cut)[0]
    assert read_active_set(GOLDEN / "pot08_m2.mtp") is None


def test_write_almtp_round_trip(mtp, train, active, tmp_path):
    from mtpjax.active.almtp import read_selected, write_almtp
    from mtpjax.model import load_mtp

    out = tmp_path / "pot.almtp"
    write_almtp(out, mtp, active, train)
    back = load_active_set(out, load_mtp(out))
    for name in ("A", "A_inv", "equation"):
        np.testing.assert_array_equal(getattr(back, name), getattr(active, name))
    stored = read_selected(out)
    used = sorted(set(active.origin[active.origin >= 0].tolist()))
    assert len(stored) == len(used)
    for k, o in enumerate(used):
        np.testing.assert_array_equal(stored[k].positions, train[o].positions)
    np.testing.assert_array_equal(back.origin >= 0, active.origin >= 0)
    # grades with the written file's active set are the MLIP-2 grades again
    np.testing.assert_allclose(grade(load_mtp(out), back, read_cfg(GOLDEN / "cand.cfg")).grades,
                               mlip_grades("cand_graded.cfg"), rtol=1e-5, atol=0.5e-6)


@pytest.mark.slow
def test_mlip3_training_selection_reproduced():
    """MaxVol with MLIP-3's settings (1e-6·I, threshold 1.001) over the training set of ``shared/bench/fit`` selects
    the configurations MLIP-3 stored in its .almtp (all but one of a duplicated pair), and grades the test set as
    MLIP-3's own active set does (to 1e-7 relative)."""
    from mtpjax.io import read_structures
    from mtpjax.model import load_mtp

    mtp = load_mtp(need(MLIP3))
    ref = load_active_set(MLIP3, mtp)

    def structures(name):
        out = read_structures(need(MLIP3.parent / name))
        for a in out:
            a.arrays["mlip_type"] = np.zeros(len(a), dtype=np.int64)
        return out

    train, test = structures("train.extxyz"), structures("test.extxyz")
    mine = build_active_set(mtp, train, threshold_init=1e-6, threshold_select=1.001, threshold_swap=1.001)
    assert int((mine.origin >= 0).sum()) == int((ref.origin >= 0).sum()) == 114
    np.testing.assert_allclose(grade(mtp, mine, test).grades, grade(mtp, ref, test).grades, rtol=1e-7)


def test_cli_stored_active_set(tmp_path, capsys):
    """--save-active-set stores the active set next to the potential; TRAIN '-' grades with it, the same grades."""
    from mtpjax.cli import main

    pot = tmp_path / "pot.mtp"
    pot.write_bytes((GOLDEN / "pot08_m2.mtp").read_bytes())
    train, cand = str(GOLDEN / "train.cfg"), str(GOLDEN / "cand.cfg")
    assert main(["grade", str(pot), "-", cand, str(tmp_path / "a.cfg"), "-q"]) == 2
    assert "pot.mtp: no active set" in capsys.readouterr().err
    assert main(["grade", str(pot), train, cand, str(tmp_path / "a.cfg"), "-q", "--save-active-set"]) == 0
    assert (tmp_path / "pot.mtp.active.json").exists()
    assert main(["grade", str(pot), "-", cand, str(tmp_path / "b.cfg"), "-q"]) == 0
    a, b = read_cfg(tmp_path / "a.cfg"), read_cfg(tmp_path / "b.cfg")
    assert [c.feature("MV_grade") for c in a] == [c.feature("MV_grade") for c in b]
    np.testing.assert_allclose([float(c.feature("MV_grade")) for c in b], mlip_grades("cand_graded.cfg"), rtol=1e-5,
                               atol=0.5e-6)
