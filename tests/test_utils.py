"""The shared utilities: atomic writes and JSON (mtpjax.io.files), units and Voigt conversions (mtpjax.units)."""
from __future__ import annotations

import errno
import math
import os
from pathlib import Path

import numpy as np
import pytest

from mtpjax.errors import MtpjaxError
from mtpjax.io import files
from mtpjax.io.files import atomic_open, atomic_path, atomic_write, json_safe, read_json, versions, write_json
from mtpjax.units import (EV_PER_A2_TO_J_PER_M2, EV_PER_A3_TO_GPA, VOIGT_ORDER, VOIGT_PAIRS, strain_to_voigt,
                          stress_to_voigt, voigt_to_strain, voigt_to_stress)


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------------ atomic writes
def test_atomic_write_replaces_and_keeps_permissions(tmp_path):
    p = tmp_path / "a.txt"
    assert atomic_write(p, "one\n") == p
    assert p.read_text() == "one\n"
    os.chmod(p, 0o640)
    atomic_write(p, b"two\n")
    assert p.read_bytes() == b"two\n" and (p.stat().st_mode & 0o777) == 0o640
    assert _only(tmp_path) == ["a.txt"]
    atomic_write(tmp_path / "new" / "deeper" / "b.txt", "x")  # missing folders are created
    assert (tmp_path / "new" / "deeper" / "b.txt").read_text() == "x"
    with pytest.raises(TypeError):
        atomic_write(p, 3)
    with pytest.raises(ValueError):
        with atomic_open(p, "a"):
            pass


def test_failure_mid_write_keeps_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "data.bin"
    p.write_bytes(b"old")
    with pytest.raises(OSError, match="No space"):
        with atomic_open(p, "wb") as f:
            f.write(b"half of the new ")
            _disk_full()
    assert p.read_bytes() == b"old" and _only(tmp_path) == ["data.bin"]
    with pytest.raises(KeyboardInterrupt):  # a kill-like interruption too
        with atomic_open(p, "w") as f:
            f.write("new")
            raise KeyboardInterrupt
    assert p.read_bytes() == b"old" and _only(tmp_path) == ["data.bin"]
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_bytes(b"new")
            raise RuntimeError("writer failed")
    assert p.read_bytes() == b"old" and _only(tmp_path) == ["data.bin"]


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_failure_at_fsync_or_rename_keeps_old_file(tmp_path, monkeypatch, where):
    p = tmp_path / "x.json"
    write_json(p, {"v": 1})
    monkeypatch.setattr(files.os, where, _disk_full)
    with pytest.raises(OSError):
        write_json(p, {"v": 2})
    monkeypatch.undo()
    assert read_json(p) == {"v": 1} and _only(tmp_path) == ["x.json"]


def test_atomic_write_follows_symlink_and_writes_devices(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic_write(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    atomic_write(os.devnull, "discarded")  # not a regular file: written directly
    assert Path(os.devnull).exists()


def test_io_writers_keep_old_file_on_failure(tmp_path, monkeypatch):
    """write_cfg (a bad configuration part-way), write_mtp, write_structures and MTP.save (disk full at fsync)."""
    from ase.build import bulk

    from mtpjax.io import read_cfg, read_mtp, read_structures, write_cfg, write_mtp, write_structures
    from mtpjax.io.cfg import Configuration

    good = Configuration(types=np.zeros(1, dtype=np.int64), positions=np.zeros((1, 3)), cell=np.eye(3) * 3.0)
    p = tmp_path / "a.cfg"
    write_cfg([good], p)
    before = p.read_bytes()
    bad = Configuration(types=np.zeros(1, dtype=np.int64), positions=np.zeros((1, 3)), cell=np.eye(3) * 3.0,
                        features=[("note", "two\nlines")])
    with pytest.raises(ValueError):
        write_cfg([good, good, bad], p)
    assert p.read_bytes() == before and _only(tmp_path) == ["a.cfg"]
    assert len(read_cfg(p)) == 1

    x = tmp_path / "a.extxyz"
    write_structures([bulk("Mg")], x)
    before_x = x.read_bytes()
    monkeypatch.setattr(files.os, "fsync", _disk_full)
    with pytest.raises(OSError):
        write_structures([bulk("Mg"), bulk("Mg")], x)
    with pytest.raises(OSError):
        write_cfg([good, good], p)
    monkeypatch.undo()
    assert x.read_bytes() == before_x and len(read_structures(x)) == 1
    assert p.read_bytes() == before

    template = Path(__file__).resolve().parents[2] / "shared" / "data" / "mtp_templates" / "08.almtp"
    if template.exists():
        m = tmp_path / "pot.almtp"
        write_mtp(read_mtp(template), m)
        before_m = m.read_bytes()
        monkeypatch.setattr(files.os, "replace", _disk_full)
        with pytest.raises(OSError):
            write_mtp(read_mtp(template), m)
        monkeypatch.undo()
        assert m.read_bytes() == before_m
    assert not [q for q in tmp_path.iterdir() if q.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------------ JSON
def test_json_round_trip(tmp_path):
    obj = {"a": 1, "b": [1.5, "Ω0 Å³"], "c": {"d": None, "e": True}, "f": [[1, 2], [3, 4]]}
    p = write_json(tmp_path / "x.json", obj)
    assert read_json(p) == obj
    assert p.read_text().endswith("\n") and p.read_bytes().isascii()  # escaped: readable in any locale
    odd = {"arr": np.arange(3), "f32": np.float32(0.5), "i64": np.int64(7), "b": np.bool_(True), "t": (1, 2),
           "nan": math.nan, "inf": -np.inf, "path": Path("/x/y"), 3: "int key", "obj": complex(1, 2)}
    write_json(p, odd, indent=None)
    assert read_json(p) == {"arr": [0, 1, 2], "f32": 0.5, "i64": 7, "b": True, "t": [1, 2], "nan": None, "inf": None,
                            "path": "/x/y", "3": "int key", "obj": "(1+2j)"}
    assert json_safe(odd)["nan"] is None
    p.write_text('{"broken": ')
    with pytest.raises(MtpjaxError, match="corrupted manifest"):
        read_json(p, "manifest")


def test_versions_record():
    v = versions()
    assert v["python"] and v["platform"] and v["numpy"] == np.__version__
    assert versions(("surely-not-an-installed-package",))["surely-not-an-installed-package"] is None


# ------------------------------------------------------------------------------------------------ units
def test_gpa_constant_matches_ase():
    from ase import units

    assert EV_PER_A3_TO_GPA == pytest.approx(1.0 / units.GPa, rel=1e-12)
    assert EV_PER_A2_TO_J_PER_M2 == pytest.approx(1.0 / (units.J / units.m**2), rel=1e-12)
    from mtpjax.evaluate import EV_PER_A3_TO_GPA as from_evaluate  # still importable where it used to live

    assert from_evaluate == EV_PER_A3_TO_GPA


def test_voigt_round_trip_against_ase():
    from ase.stress import (full_3x3_to_voigt_6_strain, full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_strain,
                            voigt_6_to_full_3x3_stress, voigt_notation)

    assert list(VOIGT_PAIRS) == [tuple(p) for p in voigt_notation] and VOIGT_ORDER == ("xx", "yy", "zz", "yz", "xz", "xy")
    rng = np.random.default_rng(0)
    v = rng.normal(size=6)
    m = rng.normal(size=(3, 3))
    np.testing.assert_allclose(voigt_to_stress(v), voigt_6_to_full_3x3_stress(v), atol=0)
    np.testing.assert_allclose(stress_to_voigt(m), full_3x3_to_voigt_6_stress(m), rtol=1e-15)
    np.testing.assert_allclose(stress_to_voigt(voigt_to_stress(v)), v, atol=0)
    sym = 0.5 * (m + m.T)
    np.testing.assert_allclose(voigt_to_stress(stress_to_voigt(sym)), sym, rtol=1e-15)
    # strain: ASE works with I + ε and engineering shear
    np.testing.assert_allclose(voigt_to_strain(v), voigt_6_to_full_3x3_strain(v) - np.eye(3), atol=1e-15)
    np.testing.assert_allclose(strain_to_voigt(sym), full_3x3_to_voigt_6_strain(np.eye(3) + sym), atol=1e-15)
    np.testing.assert_allclose(strain_to_voigt(voigt_to_strain(v)), v, rtol=1e-15)
    # batches, lists and JAX arrays under jit
    batch = rng.normal(size=(4, 2, 3, 3))
    out = stress_to_voigt(batch)
    assert out.shape == (4, 2, 6)
    np.testing.assert_allclose(out[3, 1], full_3x3_to_voigt_6_stress(batch[3, 1]), rtol=1e-15)
    assert voigt_to_stress(list(v)).shape == (3, 3)
    import jax
    import jax.numpy as jnp

    np.testing.assert_allclose(np.asarray(jax.jit(stress_to_voigt)(jnp.asarray(batch))), out, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.jit(voigt_to_strain)(jnp.asarray(v))), voigt_to_strain(v), rtol=1e-6)


def test_eqxfile_round_trip_and_faults_name_the_file(tmp_path, monkeypatch):
    """The one header-plus-leaves format (potentials and checkpoints): exact round trip; a wrong format, a wrong
    version and a truncated file are FormatErrors naming the file; a failed write keeps the old file."""
    import equinox as eqx
    import jax.numpy as jnp

    from mtpjax.errors import FormatError
    from mtpjax.io import eqxfile

    tree = {"a": jnp.arange(5.0) / 3.0, "b": (jnp.ones((2, 3), dtype=jnp.int32), jnp.array(1e-300))}
    path = tmp_path / "x.bin"
    eqxfile.write(path, "test-format", 3, {"n": 5}, tree)
    like = lambda h: {"a": jnp.zeros(h["n"]), "b": (jnp.zeros((2, 3), dtype=jnp.int32), jnp.array(0.0))}  # noqa: E731
    header, back = eqxfile.read(path, "test-format", 3, like)
    assert header == {"format": "test-format", "version": 3, "n": 5}
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax_leaves(tree), jax_leaves(back)))
    assert eqxfile.read_header(path, "test-format", 3) == header
    with pytest.raises(FormatError, match=r"x\.bin, line 1: not a thing.*other-format"):
        eqxfile.read_header(path, "other-format", 3, what="a thing")
    with pytest.raises(FormatError, match="version 3 is not supported.*reads version 4.*start afresh"):
        eqxfile.read(path, "test-format", 4, like, hint="delete it to start afresh")
    with pytest.raises(FormatError, match="inconsistent header"):
        eqxfile.read(path, "test-format", 3, lambda h: h["missing"])
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(FormatError, match=r"x\.bin: the arrays after the header are truncated"):
        eqxfile.read(path, "test-format", 3, like)
    path.write_bytes(data)

    class Boom(eqx.Module):
        x: jnp.ndarray

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(eqx, "tree_serialise_leaves", fail)
    with pytest.raises(OSError):
        eqxfile.write(path, "test-format", 3, {"n": 1}, Boom(jnp.zeros(1)))
    assert path.read_bytes() == data and os.listdir(tmp_path) == ["x.bin"]


def jax_leaves(tree):
    import jax

    return jax.tree.leaves(tree)
