"""Fitting: the loss against a hand computation, the exact linear solve, resume equivalence, the cache,
bad input and the command line."""
from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from conftest import SHARED, need, random_mtp
from mtpjax import fit as F
from mtpjax.data import Record, load_records, pack_records, validate
from mtpjax.errors import MtpjaxError, StructureError
from mtpjax.evaluate import Evaluator


def _two_records():
    """Two labelled structures: a periodic 4-atom cell (all labels) and a periodic 2-atom cell without forces."""
    rng = np.random.default_rng(0)
    a = bulk("Mg", "hcp", a=3.2, c=5.2).repeat((2, 1, 1))
    a.positions += rng.normal(scale=0.1, size=a.positions.shape)
    b = bulk("Mg", "bcc", a=3.6).repeat((2, 1, 1))
    b.positions += rng.normal(scale=0.1, size=b.positions.shape)
    r1 = Record("a", a.positions, a.cell.array, np.array([True] * 3), np.zeros(4, int), energy=-5.0,
                forces=rng.normal(size=(4, 3)), virial=rng.normal(size=(3, 3)), weight=1.0, subset="X")
    r2 = Record("b", b.positions, b.cell.array, np.array([True] * 3), np.zeros(2, int), energy=-2.5,
                forces=None, virial=rng.normal(size=(3, 3)), weight=2.0, subset="Y")
    return [r1, r2]


def test_loss_equals_hand_computation():
    mtp = random_mtp(8, rcut=5.0, seed=3)
    records = _two_records()
    batches, subsets = pack_records(records, mtp.cutoff)
    cfg = F.LossConfig()
    got = float(F.loss(mtp, [jax.tree.map(jnp.asarray, lb) for lb in batches], cfg, 2))
    ev = Evaluator(mtp)
    total = 0.0
    for r in records:
        out = ev(r.positions, r.cell, True, r.types)
        n = r.n_atoms
        term = 1.0 / n * (out.energy - r.energy) ** 2
        if r.forces is not None:
            term += 0.01 * np.sum((out.forces - r.forces) ** 2)
        term += 0.001 / n * np.sum((out.virial - r.virial) ** 2)
        total += r.weight * term
    C = np.moveaxis(np.asarray(mtp.radial_coeffs), 2, 0).reshape(mtp.radial_coeffs.shape[2], -1)
    G = C @ C.T
    penalty = np.sum((np.diag(G) - 1) ** 2) + np.sum(np.triu(G, 1) ** 2)
    expected = total / 2 + 1e-6 * penalty
    assert got == pytest.approx(expected, rel=1e-12)
    assert subsets == ["X", "Y"]


def test_linear_solve_is_the_exact_minimiser():
    """After the solve the loss gradient w.r.t. species and moment coefficients vanishes, and the loss drops."""
    teacher = random_mtp(8, rcut=5.0, seed=1)
    records = []
    ev = Evaluator(teacher)
    for s in range(6):
        at = bulk("Mg", "hcp", a=3.2, c=5.2).repeat((2, 1, 1))
        at.positions += np.random.default_rng(s).normal(scale=0.15, size=at.positions.shape)
        out = ev(at.positions, at.cell.array, True, np.zeros(len(at), int))
        records.append(Record(f"s{s}", at.positions, at.cell.array, np.array([True] * 3), np.zeros(len(at), int),
                              out.energy, out.forces, out.virial))
    batches, _ = pack_records(records, 5.0)
    batches = [jax.tree.map(jnp.asarray, lb) for lb in batches]
    student = random_mtp(8, rcut=5.0, seed=7)
    cfg = F.LossConfig()
    before = float(F.loss(student, batches, cfg, 6))
    solved = F.linear_solve(student, batches, cfg, 6)
    after = float(F.loss(solved, batches, cfg, 6))
    grad = jax.jit(jax.grad(lambda m: F.loss(m, batches, cfg, 6)))
    g = grad(solved)
    scale = float(jnp.abs(grad(student).moment_coeffs).max())
    assert after < before
    assert float(jnp.abs(g.moment_coeffs).max()) < 1e-6 * scale
    assert float(jnp.abs(g.species_coeffs).max()) < 1e-6 * scale


def _bench_records(n=24):
    path = need(SHARED / "bench" / "fit" / "train.extxyz")
    return load_records(path)[:n]


@pytest.mark.parametrize("method", ["lbfgs", "bfgs", "adam"])
def test_resume_reaches_the_same_result(tmp_path, method):
    records = _bench_records(16)
    # Adam: minibatches of about 30 atoms (several batches, visited in a seeded order); else one full batch
    batches, _ = pack_records(records, 5.0, max_batch_atoms=30 if method == "adam" else 4096)
    if method == "adam":
        assert len(batches) > 2
    from mtpjax.basis import generate_basis

    mtp0 = F.initial_mtp(generate_basis(8), 1, 2.0, 5.0, batches, seed=3)
    cfg = F.FitConfig(max_steps=8, checkpoint_every=3, method=method, linear_solve_at=(0, 5), learning_rate=1e-2)
    full, hist_full = F.fit(mtp0, batches, cfg, workdir=tmp_path / "a", log=lambda m: None)
    # killed during step 4 (its last checkpoint is after step 3), then resumed to 8
    class Killed(Exception):
        pass

    def kill(k, val):
        if k == 4:
            raise Killed

    with pytest.raises(Killed):
        F.fit(mtp0, batches, cfg, workdir=tmp_path / "b", log=lambda m: None, progress=kill)
    resumed, hist = F.fit(mtp0, batches, cfg, workdir=tmp_path / "b", resume=True, log=lambda m: None)
    assert [k for k, _ in hist] == list(range(8))
    for x, y in zip(F.trainable(full), F.trainable(resumed)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-10)
    if method != "adam":  # (Adam's history holds minibatch losses)
        assert hist_full[-1][1] < hist_full[0][1]


def test_adam_minibatches_reduce_the_full_loss():
    """Adam on minibatches lowers the full-data loss beyond what the exact linear solve alone reaches."""
    from mtpjax.basis import generate_basis

    records = _bench_records(24)
    batches, _ = pack_records(records, 5.0, max_batch_atoms=40)
    assert len(batches) > 2
    n = len(records)
    mtp0 = F.linear_solve(F.initial_mtp(generate_basis(8), 1, 2.0, 5.0, batches, seed=1), batches, F.LossConfig(), n)
    start = float(F.loss(mtp0, [jax.tree.map(jnp.asarray, b) for b in batches], F.LossConfig(), n))
    cfg = F.FitConfig(max_steps=60, method="adam", learning_rate=1e-2, linear_solve_at=(0,), seed=2)
    fitted, hist = F.fit(mtp0, batches, cfg, log=lambda m: None)
    end = float(F.loss(fitted, [jax.tree.map(jnp.asarray, b) for b in batches], F.LossConfig(), n))
    assert len(hist) == 60 and np.isfinite(end)
    assert end < 0.9 * start


def test_pack_cache_roundtrip_and_corruption(tmp_path):
    records = _two_records()
    b1, _ = pack_records(records, 5.0, cache_dir=tmp_path)
    files = list(tmp_path.glob("packed-*.npz"))
    assert len(files) == 1
    b2, _ = pack_records(records, 5.0, cache_dir=tmp_path)
    for x, y in zip(jax.tree.leaves(b1), jax.tree.leaves(b2)):
        np.testing.assert_array_equal(x, y)
    files[0].write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable packed-data cache"):
        b3, _ = pack_records(records, 5.0, cache_dir=tmp_path)
    for x, y in zip(jax.tree.leaves(b1), jax.tree.leaves(b3)):
        np.testing.assert_array_equal(x, y)


def test_bad_training_data(tmp_path):
    from ase.io import write

    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    with pytest.raises(MtpjaxError):
        load_records(empty)
    unlabelled = tmp_path / "unlabelled.extxyz"
    write(unlabelled, [bulk("Mg", "hcp", a=3.2, c=5.2)])
    with pytest.raises(MtpjaxError, match="no structure has an energy"):
        load_records(unlabelled)
    cu = bulk("Cu", "fcc", a=3.6)
    cu.calc = SinglePointCalculator(cu, energy=-3.0)
    write(tmp_path / "cu.extxyz", [cu])
    with pytest.raises(StructureError, match="Cu"):
        load_records(tmp_path / "cu.extxyz", species=["Mg"])
    recs = _two_records()
    recs[1].forces = np.full((2, 3), np.nan)
    recs[1].forces[0] = 0.0
    with pytest.raises(StructureError, match="b: force labels are not finite"):
        validate(recs, 1)
    with pytest.raises(MtpjaxError, match="empty"):
        validate([], 1)


def test_fit_command_line(tmp_path, capsys):
    from ase.io import write

    from mtpjax.cli import main
    from mtpjax.io import read_mtp

    records = _bench_records(24)
    atoms = []
    for r in records:
        a = Atoms("Mg" * r.n_atoms, positions=r.positions, cell=r.cell, pbc=True)
        a.calc = SinglePointCalculator(a, energy=r.energy, forces=r.forces)
        atoms.append(a)
    write(tmp_path / "train.extxyz", atoms[:20])
    write(tmp_path / "test.extxyz", atoms[20:])
    out = tmp_path / "pot.almtp"
    rc = main(["fit", str(tmp_path / "train.extxyz"), "--level", "8", "--cutoff", "5.0", "--max-steps", "5",
               "--test", str(tmp_path / "test.extxyz"), "-o", str(out)])
    assert rc == 0
    pot = read_mtp(out)
    assert pot.is_trained and pot.max_dist == 5.0 and len(pot.moment_coeffs) == 9
    work = tmp_path / "pot.fit"
    assert (work / "loss.png").stat().st_size > 1000
    result = json.loads((work / "result.json").read_text())
    assert result["steps"] == 5 and result["test"]["all"]["energy"] > 0
    assert result["first_step_s"] >= result["compile_s"] >= 0 and result["per_step_s"] > 0  # compile time apart
    assert "RMSE" in capsys.readouterr().err
    # the exact .mtpjax beside it: the same potential, bit for bit, with how it was fitted
    from mtpjax.io.native import read_native
    from mtpjax.model import load_mtp

    native, meta = read_native(tmp_path / "pot.mtpjax")
    for x, y in zip(jax.tree.leaves(native), jax.tree.leaves(load_mtp(out))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert meta["level"] == 8 and meta["steps"] == 5 and "test" in meta
    # an empty training file fails clearly
    (tmp_path / "empty.extxyz").write_text("")
    assert main(["fit", str(tmp_path / "empty.extxyz"), "--level", "8", "--cutoff", "5", "-o", str(tmp_path / "x.almtp")]) == 2
    # the config-driven form: options from a TOML file (paths relative to it), the command line overriding
    cfg = tmp_path / "fit.toml"
    cfg.write_text('[fit]\ntrain = ["train.extxyz"]\nlevel = 8\ncutoff = 5.0\nmax_steps = 3\noptimizer = "adam"\n'
                   'max_batch_atoms = 60\nforce_weight = 0.02\noutput = "cfg.almtp"\n')
    assert main(["fit", "--config", str(cfg), "--max-steps", "4"]) == 0
    result = json.loads((tmp_path / "cfg.fit" / "result.json").read_text())
    assert result["steps"] == 4 and result["optimizer"] == "adam"
    assert read_mtp(tmp_path / "cfg.almtp").is_trained
    capsys.readouterr()
    cfg.write_text("[fit]\nlevel = 8\ncutoff = 5.0\nmax_stepz = 3\n")
    assert main(["fit", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "max_stepz" in err and str(cfg) in err
    cfg.write_text('[fit]\nlevel = "eight"\n')
    assert main(["fit", "--config", str(cfg)]) == 2
    assert "level" in capsys.readouterr().err
    assert main(["fit", "--level", "8", "-o", "x.almtp"]) == 2
    assert "TRAIN files, --cutoff" in capsys.readouterr().err


def test_sweep_table_plots_and_resume(tmp_path):
    from mtpjax.sweep import run_sweep

    records = _bench_records(12)
    for k, r in enumerate(records):
        r.subset = "A" if k % 2 else "B"
    logs = []
    cfg = F.FitConfig(max_steps=3)
    rows = run_sweep(records, records[:4], tmp_path, levels=[6, 8], cutoffs=[5.0], subsets=["A", "A+B"], cfg=cfg, log=logs.append)
    assert [(r["subset"], r["level"]) for r in rows] == [("A", 6), ("A", 8), ("A+B", 6), ("A+B", 8)]
    assert all(r["test_energy_meV"] > 0 for r in rows)
    assert (tmp_path / "results.csv").read_text().count("\n") == 5
    assert (tmp_path / "rmse_vs_level.png").exists() and (tmp_path / "rmse_vs_cutoff.png").exists()
    logs.clear()
    again = run_sweep(records, records[:4], tmp_path, levels=[6, 8], cutoffs=[5.0], subsets=["A", "A+B"], cfg=cfg, log=logs.append)
    assert sum("skipped" in m for m in logs) == 4 and again == rows
    with pytest.raises(MtpjaxError, match="no training structure is tagged 'C'"):
        run_sweep(records, [], tmp_path / "x", levels=[6], cutoffs=[5.0], subsets=["C"], cfg=cfg, log=logs.append)


def test_sweep_refuses_to_resume_with_other_settings(tmp_path):
    """A sweep folder remembers its fit settings; resuming it with others is an error naming the file and the key."""
    from mtpjax.sweep import check_settings

    check_settings(tmp_path, {"fit": dataclasses.asdict(F.FitConfig(max_steps=3)), "init": "mlip"})
    check_settings(tmp_path, {"fit": dataclasses.asdict(F.FitConfig(max_steps=3)), "init": "mlip"})  # same: fine
    with pytest.raises(MtpjaxError, match=r"sweep\.json.*fit\.max_steps: 3 -> 5"):
        check_settings(tmp_path, {"fit": dataclasses.asdict(F.FitConfig(max_steps=5)), "init": "mlip"})
    with pytest.raises(MtpjaxError, match=r"fit\.loss\.force_weight"):
        cfg = F.FitConfig(max_steps=3, loss=F.LossConfig(force_weight=0.02))
        check_settings(tmp_path, {"fit": dataclasses.asdict(cfg), "init": "mlip"})


def test_select_subset_names():
    from mtpjax.sweep import select_subset

    recs = _two_records()
    assert [r.name for r in select_subset(recs, "all")] == ["a", "b"]
    assert [r.name for r in select_subset(recs, "EVERYTHING")] == ["a", "b"]  # the generator's name for the union
    assert [r.name for r in select_subset(recs, "Y")] == ["b"] and len(select_subset(recs, "X+Y")) == 2
    with pytest.raises(MtpjaxError, match="no training structure is tagged 'Z'"):
        select_subset(recs, "Z")
