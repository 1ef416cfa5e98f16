"""Bad input to ``mtpjax fit`` gives a clear error naming the option, file or structure (never a traceback or a
potential with loss nan); labels under non-standard keys are used only loudly; suspicious labels are warned about;
compiled programs persist between runs (JAX's compilation cache)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from mtpjax.cli import main
from mtpjax.data import check_label_outliers, load_records, records_from_atoms, validate
from mtpjax.errors import FormatError, LabelWarning, MtpjaxError
from mtpjax.fit.validate import check_fit_options

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def labelled(n=4, seed=0):
    """``n`` rattled 2-atom hcp Mg cells with energy, free_energy, forces and stress (SinglePointCalculator)."""
    out = []
    rng = np.random.default_rng(seed)
    for k in range(n):
        a = bulk("Mg", "hcp", a=3.2 + 0.02 * k, c=5.2)
        a.rattle(0.05, seed=seed + k)
        e = -1.5 * len(a) + 0.01 * k
        a.calc = SinglePointCalculator(a, energy=e, free_energy=e, forces=rng.normal(size=(len(a), 3)) * 0.1,
                                       stress=rng.normal(size=6) * 1e-3)
        out.append(a)
    return out


def write_lines(path, frames):
    """Extended XYZ text written by ASE, then edited frame by frame: ``frames[k](comment) -> comment``."""
    write(path, labelled(len(frames)))
    lines = path.read_text().splitlines()
    i = 0
    for edit in frames:
        n = int(lines[i])
        if edit is not None:
            lines[i + 1] = edit(lines[i + 1])
        i += n + 2
    path.write_text("\n".join(lines) + "\n")
    return path


def no_label_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    bad = [str(w.message) for w in caught if issubclass(w.category, LabelWarning)]
    assert not bad, bad
    return out


def cli(capsys, *args):
    """``mtpjax ARGS`` in-process: (exit code, stderr); argparse's usage errors (SystemExit) included."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


# =========================================================================================================
# 1. options


GOOD = dict(level=16, cutoff=6.5, max_steps=10)


@pytest.mark.parametrize("change, needle", [
    (dict(level=30), "--level 30: MTP levels are 2..28"),
    (dict(level=1), "--level 1: MTP levels are 2..28"),
    (dict(level=16.5), "--level 16.5"),
    (dict(level=True), "--level True"),
    (dict(cutoff=0), "--cutoff 0: must be a positive number of Å"),
    (dict(cutoff=-3.0), "--cutoff -3.0: must be a positive number"),
    (dict(cutoff=math.nan), "--cutoff nan: must be a positive number"),
    (dict(cutoff=math.inf), "--cutoff inf"),
    (dict(cutoff="abc"), "--cutoff abc"),
    (dict(max_steps=0), "--max-steps 0: must be at least 1"),
    (dict(max_steps=-5), "--max-steps -5: must be at least 1"),
    (dict(max_steps=2.5), "--max-steps 2.5: must be an integer"),
    (dict(checkpoint_every=0), "--checkpoint-every 0: must be at least 1"),
    (dict(rmin=0.0), "--rmin 0.0: must be a positive number"),
    (dict(rmin=6.5), "--rmin 6.5: must be below the cutoff"),
    (dict(rmin=math.nan), "--rmin nan"),
    (dict(weights=(1, -0.01, 0)), "--force-weight -0.01: must be a finite number >= 0"),
    (dict(weights=(math.nan, 0.01, 0)), "--energy-weight nan"),
    (dict(weights=(0, 0, 0)), "all 0: nothing to fit"),
    (dict(validation_fraction=1.0), "--validation-fraction 1.0: must be a number in [0, 1)"),
    (dict(validation_fraction=-0.1), "--validation-fraction -0.1"),
    (dict(learning_rate=0), "--learning-rate 0"),
    (dict(seed=-1), "--seed -1: must be at least 0"),
    (dict(devices=0), "--devices 0"),
    (dict(max_batch_atoms=0), "--max-batch-atoms 0"),
    (dict(linear_solve_at=(0, -25)), "--linear-solve-at -25"),
    (dict(method="sgd"), "--optimizer sgd"),
    (dict(init="zeros"), "--init zeros"),
    (dict(memory_size=0), "--memory-size 0"),
    (dict(validate_every=0), "--validate-every 0"),
    (dict(patience=-1), "--patience -1"),
    (dict(tolerance=-1e-9), "--tolerance -1e-09"),
])
def test_check_fit_options_names_the_option(change, needle):
    with pytest.raises(MtpjaxError) as err:
        check_fit_options(**{**GOOD, **change})
    assert needle in str(err.value), str(err.value)


def test_check_fit_options_accepts_good_values():
    check_fit_options(**GOOD)
    check_fit_options(level=np.int64(2), cutoff=np.float64(5.0), rmin=1.9, max_steps=1, checkpoint_every=1,
                      weights=(0, 0.01, 0), validation_fraction=0.2, learning_rate=1e-3, max_batch_atoms=1, devices=1,
                      seed=0, linear_solve_at=(0, 25), method="adam", init="random", memory_size=20, tolerance=0.0,
                      validate_every=10, patience=5)
    check_fit_options(**GOOD, method="newton", methods=("lbfgs", "newton"))
    for level in range(2, 29):  # odd levels exist (the basis of the even level below)
        check_fit_options(level=level, cutoff=5.0, max_steps=1)


@pytest.mark.parametrize("args, needle", [
    (["--level", "30", "--cutoff", "5"], "argument --level: MTP levels are 2..28"),
    (["--level", "abc", "--cutoff", "5"], "argument --level"),
    (["--level", "8", "--cutoff", "0"], "argument --cutoff: must be a positive number"),
    (["--level", "8", "--cutoff", "-1"], "argument --cutoff: must be a positive number"),
    (["--level", "8", "--cutoff", "nan"], "argument --cutoff: must be a positive number"),
    (["--level", "8", "--cutoff", "5", "--max-steps", "0"], "argument --max-steps: must be at least 1"),
    (["--level", "8", "--cutoff", "5", "--max-steps", "-3"], "argument --max-steps: must be at least 1"),
    (["--level", "8", "--cutoff", "5", "--checkpoint-every", "0"], "argument --checkpoint-every: must be at least 1"),
    (["--level", "8", "--cutoff", "5", "--rmin", "0"], "argument --rmin: must be a positive number"),
    (["--level", "8", "--cutoff", "5", "--force-weight", "-1"], "argument --force-weight: must be a finite number >= 0"),
    (["--level", "8", "--cutoff", "5", "--seed", "-1"], "argument --seed: must be at least 0"),
    (["--level", "8", "--cutoff", "5", "--force-constant-weight", "0.1"], "do not read force-constant labels"),
])
def test_fit_command_line_rejects_bad_options(tmp_path, capsys, args, needle):
    data = tmp_path / "train.extxyz"
    write(data, labelled(2))
    out = tmp_path / "pot.almtp"
    rc, err = cli(capsys, "fit", data, *args, "-o", out)
    assert rc == 2, err
    assert needle in err, err
    assert "Traceback" not in err
    assert not out.exists() and not (tmp_path / "pot.fit").exists()


def test_fit_config_file_rejects_bad_options(tmp_path, capsys):
    cfg = tmp_path / "fit.toml"
    cfg.write_text('[fit]\ntrain = ["train.extxyz"]\nlevel = 8\ncutoff = 5.0\nmax_steps = 0\noutput = "pot.almtp"\n')
    rc, err = cli(capsys, "fit", "--config", cfg)
    assert rc == 2, err
    assert "max_steps" in err and "must be at least 1" in err, err


def test_sweep_and_basis_reject_bad_options(tmp_path, capsys):
    rc, err = cli(capsys, "sweep", tmp_path / "x.extxyz", "--levels", "8", "31", "--cutoffs", "5", "-o", tmp_path / "s")
    assert rc == 2 and "argument --levels: MTP levels are 2..28" in err, err
    rc, err = cli(capsys, "sweep", tmp_path / "x.extxyz", "--levels", "8", "--cutoffs", "5", "0", "-o", tmp_path / "s")
    assert rc == 2 and "argument --cutoffs" in err, err
    rc, err = cli(capsys, "basis", "--level", "30", "-o", tmp_path / "b.almtp")
    assert rc == 2 and "argument --level" in err, err


# =========================================================================================================
# 2. malformed labels


@pytest.mark.parametrize("key, value, needle", [
    ("energy", "abc", "energy = 'abc' is not a number"),
    ("energy", "T", "energy = True is not one number"),
    ("energy", '"1 2 3"', "energy = [1 2 3] is not one number"),
    ("weight", "abc", "info['weight'] = 'abc' is not a number"),
])
def test_bad_label_value_names_file_structure_line_and_key(tmp_path, key, value, needle):
    import re

    def edit(comment):
        if re.search(rf"(?<![\w]){key}=\S+", comment):
            return re.sub(rf"(?<![\w]){key}=\S+", f"{key}={value}", comment)
        return comment + f" {key}={value}"

    path = write_lines(tmp_path / "bad.extxyz", [None, None, edit])
    with pytest.raises(FormatError) as err:
        load_records(path, log=None)
    msg = str(err.value)
    assert str(path) in msg and "structure 3" in msg and needle in msg, msg
    assert err.value.line == 2 * 4 + 2, msg  # frames of 2 atoms: the comment line of frame 3 is line 10
    assert "line 10" in msg


def test_bad_label_through_the_command_line(tmp_path, capsys):
    path = write_lines(tmp_path / "bad.extxyz", [None, lambda c: c.replace("energy=", "energy=abc foo=", 1)])
    rc, err = cli(capsys, "fit", path, "--level", "8", "--cutoff", "5", "-o", tmp_path / "pot.almtp")
    assert rc == 2, err
    assert err.startswith("mtpjax fit: error:") and "Traceback" not in err, err
    assert "line 6" in err and "structure 2" in err and "'abc'" in err, err
    assert not (tmp_path / "pot.almtp").exists()


def test_bad_stress_value_names_the_line(tmp_path):
    import re

    path = write_lines(tmp_path / "bad.extxyz", [None, lambda c: re.sub(r'stress="[^"]*"', "stress=abc", c)])
    with pytest.raises(FormatError) as err:
        load_records(path, log=None)
    assert err.value.line == 6 and "stress" in str(err.value), str(err.value)


# =========================================================================================================
# 3. which keys the labels come from


def _same_labels(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.energy == pytest.approx(y.energy, abs=0, rel=1e-14)
        np.testing.assert_allclose(x.forces, y.forces, rtol=0, atol=1e-8)  # extxyz: forces with 8 decimals
        np.testing.assert_allclose(x.virial, y.virial, rtol=1e-7, atol=1e-10)


def test_standard_extxyz_loads_silently_with_a_summary(tmp_path):
    path = tmp_path / "train.extxyz"
    atoms = labelled(4)
    write(path, atoms)
    logged = []
    recs = no_label_warnings(load_records, path, log=logged.append)
    assert logged == [f"{path}: 4 structures; energy from 'energy' (4), forces from 'forces' (4), stress from 'stress' (4)"]
    assert recs.labels.count("energy") == 4 and recs.labels.fallbacks == []
    for r, a in zip(recs, atoms):
        assert r.energy == a.get_potential_energy()
        np.testing.assert_allclose(r.forces, a.get_forces(), rtol=0, atol=1e-8)  # written with 8 decimals
        s = a.get_stress(voigt=False)
        np.testing.assert_allclose(r.virial, -s * a.get_volume(), rtol=1e-14)


def test_non_standard_keys_are_used_loudly(tmp_path):
    atoms = labelled(3)
    std = tmp_path / "std.extxyz"
    write(std, atoms)
    ref = []
    for a in atoms:
        b = a.copy()
        b.calc = None
        b.info["REF_energy"] = a.get_potential_energy()
        b.arrays["REF_forces"] = a.get_forces()
        b.info["REF_stress"] = a.get_stress()
        ref.append(b)
    path = tmp_path / "ref.extxyz"
    write(path, ref)
    logged = []
    with pytest.warns(LabelWarning) as caught:
        recs = load_records(path, log=logged.append)
    msg = " ".join(str(w.message) for w in caught)
    for key in ("info['REF_energy']", "arrays['REF_forces']", "info['REF_stress']"):
        assert key in msg and key in logged[0], (msg, logged)
    assert len(caught) == 1  # one warning for the file
    _same_labels(recs, no_label_warnings(load_records, std, log=None))


def test_a_virial_key_is_taken_as_the_virial(tmp_path):
    atoms = labelled(2)
    std = load_records(_write(tmp_path / "std.extxyz", atoms), log=None)
    out = []
    for a, r in zip(atoms, std):
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=a.get_potential_energy(), forces=a.get_forces())
        b.info["REF_virial"] = r.virial.reshape(-1)  # -V sigma, eV (GAP, MACE)
        out.append(b)
    with pytest.warns(LabelWarning, match=r"virial"):
        recs = load_records(_write(tmp_path / "virial.extxyz", out), log=None)
    _same_labels(recs, std)


def _write(path, atoms):
    write(path, atoms)
    return path


def test_several_candidate_keys_are_an_error_naming_them(tmp_path):
    atoms = labelled(2)
    for a in atoms:
        e = a.get_potential_energy()
        a.calc = SinglePointCalculator(a, forces=a.get_forces())
        a.info["DFT_energy"] = e
        a.info["energy_dft"] = e + 1.0
    path = _write(tmp_path / "two.extxyz", atoms)
    with pytest.raises(MtpjaxError) as err:
        load_records(path, log=None)
    msg = str(err.value)
    assert "info['DFT_energy']" in msg and "info['energy_dft']" in msg and "label_keys" in msg, msg
    recs = no_label_warnings(load_records, path, label_keys={"energy": "energy_dft"}, log=None)
    assert [r.energy for r in recs] == [a.info["energy_dft"] for a in atoms]


def test_standard_keys_win_and_other_candidates_are_named(tmp_path):
    atoms = labelled(2)
    for a in atoms:
        a.info["REF_energy"] = 123.0
    logged = []
    recs = no_label_warnings(load_records, _write(tmp_path / "both.extxyz", atoms), log=logged.append)
    assert [r.energy for r in recs] == [a.get_potential_energy() for a in atoms]
    assert "not used: info['REF_energy']" in logged[0]
    recs = load_records(tmp_path / "both.extxyz", label_keys={"energy": "REF_energy"}, log=None)
    assert [r.energy for r in recs] == [123.0, 123.0]
    with pytest.raises(MtpjaxError, match="'nope'"):
        load_records(tmp_path / "both.extxyz", label_keys={"energy": "nope"}, log=None)


def test_weights_and_free_energy_only(tmp_path):
    atoms = labelled(2)
    energies = [a.get_potential_energy() for a in atoms]
    for a, e in zip(atoms, energies):
        a.calc = SinglePointCalculator(a, free_energy=e, forces=a.get_forces())
        a.info["energy_weight"] = 2.0  # not a label: a weight
    logged = []
    recs = no_label_warnings(load_records, _write(tmp_path / "fe.extxyz", atoms), log=logged.append)
    assert [r.energy for r in recs] == energies
    assert "energy from 'free_energy' (2)" in logged[0] and "no stress" in logged[0], logged


def test_unlabelled_file_lists_its_keys(tmp_path):
    a = bulk("Mg", "hcp", a=3.2, c=5.2)
    a.info["spacegroup"] = 194
    with pytest.raises(MtpjaxError, match="no structure has an energy.*spacegroup"):
        load_records(_write(tmp_path / "u.extxyz", [a]), log=None)


def test_cfg_and_db_are_unaffected(tmp_path):
    import ase.db

    from mtpjax.data import records_from_cfg
    from mtpjax.io import atoms_to_configuration, write_cfg

    atoms = labelled(3)
    std = load_records(_write(tmp_path / "std.extxyz", atoms), log=None)
    cfg = tmp_path / "d.cfg"
    write_cfg([atoms_to_configuration(a, ["Mg"], index=k) for k, a in enumerate(atoms)], cfg, precision="full")
    logged = []
    recs = no_label_warnings(load_records, cfg, log=logged.append)
    assert logged == [f"{cfg}: 3 structures; energy from 'Energy' (3), forces from 'AtomData fx fy fz' (3), "
                      "stress from 'PlusStress' (3)"]
    _same_labels(recs, std)
    plain = records_from_cfg(cfg)
    assert [r.energy for r in plain] == [r.energy for r in recs]
    db = tmp_path / "d.db"
    with ase.db.connect(db) as con:
        for a in atoms:
            con.write(a, subset="X")
    recs = no_label_warnings(load_records, db, log=None)
    _same_labels(recs, std)
    assert {r.subset for r in recs} == {"X"}


def test_records_from_atoms_keeps_its_signature():
    atoms = labelled(2)
    recs = records_from_atoms(atoms, ["Mg"], 1, "mem")
    assert recs[0].name == "mem: structure 1" and recs.labels.count("forces") == 2
    recs = records_from_atoms(atoms)
    assert isinstance(recs, list) and len(recs[:1]) == 1


def test_command_line_shows_where_labels_came_from(tmp_path, capsys):
    atoms = labelled(2)
    for a in atoms:
        e = a.get_potential_energy()
        a.calc = SinglePointCalculator(a, forces=a.get_forces())
        a.info["REF_energy"] = e
    atoms[1].calc.results["forces"][0, 0] = np.nan  # validation stops the command after loading (nothing fitted)
    path = _write(tmp_path / "ref.extxyz", atoms)
    with pytest.warns(LabelWarning):
        rc, err = cli(capsys, "fit", path, "--level", "8", "--cutoff", "5", "-o", tmp_path / "p.almtp")
    assert rc == 2 and "structure 2: force labels are not finite" in err, err
    assert f"{path}: 2 structures; energy from info['REF_energy'] (2), forces from 'forces' (2), no stress" in err, err


# =========================================================================================================
# 4. outliers


def _records(n=30, seed=0):
    rng = np.random.default_rng(seed)
    atoms = labelled(n, seed)
    recs = records_from_atoms(atoms)
    for r in recs:
        r.energy = -1.5 * r.n_atoms + rng.normal() * 0.05
    return recs


def test_normal_labels_give_no_warning():
    recs = _records()
    assert no_label_warnings(check_label_outliers, recs) == []
    no_label_warnings(validate, recs, 1)


def test_huge_energy_is_named():
    recs = _records()
    recs[7].energy = 1e200
    with pytest.warns(LabelWarning) as caught:
        validate(recs, 1)
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert recs[7].name in msg and "5e+199 eV/atom" in msg, msg
    for r in recs[:7]:
        assert r.name + ":" not in msg


def test_huge_energy_in_a_tiny_file_is_named(tmp_path):
    atoms = labelled(2)
    atoms[1].calc.results["energy"] = 1e200
    recs = load_records(_write(tmp_path / "big.extxyz", atoms), log=None)
    with pytest.warns(LabelWarning, match="structure 2"):
        validate(recs, 1)


def test_energy_outliers_need_both_mads_and_50_ev():
    recs = _records()
    recs[3].energy += 30.0 * recs[3].n_atoms  # far in MADs, but a strongly compressed cell can be that high
    assert no_label_warnings(check_label_outliers, recs) == []
    recs[3].energy += 25.0 * recs[3].n_atoms
    with pytest.warns(LabelWarning, match=recs[3].name):
        check_label_outliers(recs)


def test_big_forces_are_named_and_the_list_is_capped():
    recs = _records()
    for k in range(8):
        recs[k].forces[1] = [0.0, 150.0 + k, 0.0]
    with pytest.warns(LabelWarning) as caught:
        lines = check_label_outliers(recs)
    assert len(caught) == 1 and len(lines) == 1
    msg = str(caught[0].message)
    assert "8 structures with forces above 100 eV/Å" in msg and "and 3 more" in msg, msg
    assert f"{recs[0].name}: |F| = 150 eV/Å on atom 1" in msg
    assert recs[5].name + ":" not in msg


# =========================================================================================================
# 5. the persistent compilation cache

_CACHE_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import jax
    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    import mtpjax  # switches the cache on
    import jax.numpy as jnp

    def f(x):
        for k in range(60):  # slow enough to compile (> 0.5 s) to be cached
            x = jnp.sin(x @ x.T + k) / (1 + jnp.abs(x)) + jnp.cumsum(x, axis=k % 2)
        return x.sum()

    t = time.perf_counter()
    jax.jit(jax.grad(f)).lower(jnp.ones((8, 8))).compile()
    print(json.dumps({"dir": jax.config.jax_compilation_cache_dir, "compile_s": time.perf_counter() - t,
                      "hits": events.count("/jax/compilation_cache/cache_hits"),
                      "min_s": jax.config.jax_persistent_cache_min_compile_time_secs}))
""")


def _run(script, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "MTPJAX_CACHE_DIR")}
    full.update(env)
    res = subprocess.run([sys.executable, "-c", script], env=full, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_compilation_cache_persists_between_processes(tmp_path):
    cache = tmp_path / "cache"
    first = _run(_CACHE_SCRIPT, MTPJAX_CACHE_DIR=str(cache))
    assert first["dir"] == str(cache) and first["min_s"] == 0.5
    entries = list(cache.iterdir())
    assert entries, f"nothing cached (compile took {first['compile_s']:.2f} s)"
    second = _run(_CACHE_SCRIPT, MTPJAX_CACHE_DIR=str(cache))
    assert second["hits"] >= 1, (first, second)
    assert second["compile_s"] < first["compile_s"], (first, second)


def test_compilation_cache_settings(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    script = textwrap.dedent("""
        import json, os
        import jax, mtpjax
        out = {"off": jax.config.jax_compilation_cache_dir}
        os.environ["MTPJAX_CACHE_DIR"] = %r  # a folder below a file: cannot be made
        out["unwritable"] = mtpjax._compilation_cache_dir()
        os.environ["MTPJAX_CACHE_DIR"] = %r
        out["custom"] = mtpjax._compilation_cache_dir()
        os.environ["JAX_COMPILATION_CACHE_DIR"] = "/somewhere/else"
        out["user's own"] = mtpjax._compilation_cache_dir()
        print(json.dumps(out))
    """) % (str(blocker / "sub"), str(tmp_path / "c"))
    for off in ("0", ""):
        got = _run(script, MTPJAX_CACHE_DIR=off)
        assert got == {"off": None, "unwritable": None, "custom": str(tmp_path / "c"), "user's own": None}, got
    got = _run("import json, jax, mtpjax; print(json.dumps(jax.config.jax_compilation_cache_dir))",
               JAX_COMPILATION_CACHE_DIR=str(tmp_path / "mine"), MTPJAX_CACHE_DIR=str(tmp_path / "ours"))
    assert got == str(tmp_path / "mine") and not (tmp_path / "ours").exists()


def test_commands_started_by_the_tests_use_the_test_process_cache():
    """tests/conftest.py: a command a test starts (with the environment as it is) compiles into this test process's
    temporary cache, never into the user's ~/.cache/mtpjax (and the two xdist workers each have their own)."""
    import jax

    mine = jax.config.jax_compilation_cache_dir
    if os.environ.get("MTPJAX_TEST_SESSION_CACHE") != mine:
        pytest.skip("the compilation cache was configured by the user, not by tests/conftest.py")
    res = subprocess.run([sys.executable, "-c", "import jax, mtpjax; print(jax.config.jax_compilation_cache_dir)"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == mine and Path(mine).is_dir()
    assert Path(mine).resolve() != Path("~/.cache/mtpjax/jax").expanduser().resolve()


def test_pack_records_caps_padded_pair_slots_and_keeps_the_loss():
    """Dense structures get batches of their own (padded atoms x padded neighbours within the budget unless one
    structure alone exceeds it); the loss does not depend on the packing."""
    import jax
    import jax.numpy as jnp

    from conftest import need, random_mtp
    from mtpjax import fit as F
    from mtpjax.data import load_records, pack_records

    records = load_records(need(SHARED / "bench" / "fit" / "train.extxyz"), log=None)[:40]
    one, _ = pack_records(records, 5.0, max_batch_atoms=10**6, max_batch_pairs=None)
    many, _ = pack_records(records, 5.0, max_batch_atoms=10**6, max_batch_pairs=4000)
    assert len(one) == 1 and len(many) == 2
    for lb in many:
        n_pad, n_nb = lb.batch.nbrs.index.shape
        assert n_pad * n_nb <= 4000 or lb.batch.cells.shape[0] == 1 or int((lb.weight > 0).sum()) == 1
    assert sum(F.count_structures([lb]) for lb in many) == len(records)
    mtp = random_mtp(6, rcut=5.0, rmin=1.5, seed=0)
    cfg = F.LossConfig()
    dev = lambda bs: [jax.tree.map(jnp.asarray, lb) for lb in bs]  # noqa: E731
    assert float(F.loss(mtp, dev(many), cfg, len(records))) == pytest.approx(float(F.loss(mtp, dev(one), cfg, len(records))), rel=1e-12)


@pytest.mark.parametrize("line,needle", [
    ('resume = "false"', "fit.resume: 'false' is not a boolean"),
    ("level = 8.7", "fit.level: 8.7 is not an integer"),
    ("max_steps = true", "fit.max_steps: True is not an integer"),
    ("cutoff = true", "fit.cutoff: True is not a number"),
    ("seed = [1, 2]", "fit.seed: [1, 2] is not an integer"),
    ("optimizer = 1", "fit.optimizer: 1 is not one of 'lm', 'lbfgs', 'bfgs', 'adam'"),
    ("test = \"t.extxyz\"", "fit.test: 't.extxyz' is not a list"),
    ("levle = 8", "fit.levle: unknown key (known: train, test, level, cutoff,"),
])
def test_fit_config_file_types_are_strict(tmp_path, capsys, line, needle):
    """A TOML value must be what the option takes on the command line: no silent truncation or truthy strings."""
    cfg = tmp_path / "fit.toml"
    cfg.write_text(f'[fit]\ntrain = ["train.extxyz"]\nlevel = 8\ncutoff = 5.0\noutput = "pot.almtp"\n'.replace(
        "level = 8\n" if line.startswith("level") else "cutoff = 5.0\n" if line.startswith("cutoff") else "\0", "")
        + line + "\n")
    rc, err = cli(capsys, "fit", "--config", cfg)
    assert rc == 2, err
    assert needle in err and str(cfg) in err, err
    assert "Traceback" not in err


def test_fit_config_file_accepts_toml_types(tmp_path):
    from mtpjax.cli import parse_args

    cfg = tmp_path / "fit.toml"
    cfg.write_text('[fit]\ntrain = ["a.extxyz"]\nlevel = 8\ncutoff = 5\nresume = true\northonormalize = false\n'
                   'force_weight = 0.02\noutput = "p.almtp"\n')
    got = parse_args(["fit", "--config", str(cfg)])
    assert got.level == 8 and got.cutoff == 5.0 and got.resume is True and got.orthonormalize is False
    assert got.force_weight == 0.02 and got.train == [str(tmp_path / "a.extxyz")]
