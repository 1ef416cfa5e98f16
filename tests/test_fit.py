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


#: MLIP's full-batch loss, compiled (called eagerly it runs op by op: ~20 s for its first call on a few batches)
full_loss = jax.jit(F.loss, static_argnums=(2, 3))

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
    got = float(full_loss(mtp, [jax.tree.map(jnp.asarray, lb) for lb in batches], cfg, 2))
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
    before = float(full_loss(student, batches, cfg, 6))
    solved = F.linear_solve(student, batches, cfg, 6)
    after = float(full_loss(solved, batches, cfg, 6))
    grad = jax.jit(jax.grad(lambda m: F.loss(m, batches, cfg, 6)))
    g = grad(solved)
    scale = float(jnp.abs(grad(student).moment_coeffs).max())
    assert after < before
    assert float(jnp.abs(g.moment_coeffs).max()) < 1e-6 * scale
    assert float(jnp.abs(g.species_coeffs).max()) < 1e-6 * scale


class _Killed(Exception):
    """A kill of the fitting process, simulated from the progress callback."""


def _kill_at(step: int):
    """A progress callback that kills the fit during ``step`` (after its computation, before its checkpoint)."""
    def kill(k, val):
        if k == step:
            raise _Killed

    return kill


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
    with pytest.raises(_Killed):
        F.fit(mtp0, batches, cfg, workdir=tmp_path / "b", log=lambda m: None, progress=_kill_at(4))
    resumed, hist = F.fit(mtp0, batches, cfg, workdir=tmp_path / "b", resume=True, log=lambda m: None)
    assert [k for k, _ in hist] == list(range(8))
    assert hist == hist_full  # bit-identical: the checkpoint holds the optimiser's exact variables and state
    for x, y in zip(F.trainable(full), F.trainable(resumed)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    if method != "adam":  # (Adam's history holds minibatch losses)
        assert hist_full[-1][1] < hist_full[0][1]


def test_a_slow_fit_checkpoints_by_wall_time_and_resumes_from_there(tmp_path, monkeypatch):
    """Levenberg-Marquardt with checkpoint_every far beyond the run: with the wall-time trigger at 0 s a checkpoint
    follows every step, so a fit killed during step 4 resumes at step 4 (not from the start) and ends bit-identical
    to the uninterrupted fit; the trigger is not a setting, so the resume is not refused."""
    from mtpjax.basis import generate_basis
    from mtpjax.fit import loop

    records = _bench_records(16)
    batches, _ = pack_records(records, 5.0, max_batch_atoms=4096)
    mtp0 = F.initial_mtp(generate_basis(8), 1, 2.0, 5.0, batches, seed=3)
    cfg = F.FitConfig(max_steps=6, checkpoint_every=1000, method="lm", lm_ftol=0.0)
    full, hist_full = F.fit(mtp0, batches, cfg, workdir=tmp_path / "a", log=lambda m: None)

    monkeypatch.setattr(loop, "CHECKPOINT_SECONDS", 0.0)
    with pytest.raises(_Killed):
        F.fit(mtp0, batches, cfg, workdir=tmp_path / "b", log=lambda m: None, progress=_kill_at(4))
    monkeypatch.setattr(loop, "CHECKPOINT_SECONDS", 600.0)
    logs = []
    resumed, hist = F.fit(mtp0, batches, cfg, workdir=tmp_path / "b", resume=True, log=logs.append)
    assert any("at step 4" in m for m in logs), logs
    assert hist == hist_full and len(hist) == 6
    for x, y in zip(F.trainable(full), F.trainable(resumed)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_stop_file_ends_the_fit_after_its_step_with_what_it_has(tmp_path, monkeypatch):
    """``touch WORKDIR/STOP`` during step 2 of six: the fit ends after that step with its parameters, the same as a
    fit of three steps, the reason is recorded, and a slow fit's log says how (once, at its first timed checkpoint)."""
    from mtpjax.basis import generate_basis
    from mtpjax.fit import loop
    from mtpjax.fit.params import stack_models, unstack_models

    records = _bench_records(16)
    batches, _ = pack_records(records, 5.0, max_batch_atoms=4096)
    mtp0 = F.initial_mtp(generate_basis(8), 1, 2.0, 5.0, batches, seed=3)
    cfg = F.FitConfig(max_steps=6, checkpoint_every=1000, method="lm", lm_ftol=0.0)
    three, hist3 = F.fit(mtp0, batches, F.FitConfig(max_steps=3, checkpoint_every=1000, method="lm", lm_ftol=0.0),
                         log=lambda m: None)

    def touch_at(step):
        def progress(k, v):
            if k == step:
                (tmp_path / "w" / loop.STOP_FILE).touch()
        return progress

    monkeypatch.setattr(loop, "CHECKPOINT_SECONDS", 0.0)
    logs = []
    r = loop.fit_models(stack_models([mtp0]), batches, cfg, workdir=tmp_path / "w", log=logs.append,
                        progress=touch_at(2))
    assert r.histories[0] == hist3 and r.steps == 3 and r.stopped == ["stop file"]
    for x, y in zip(F.trainable(three), F.trainable(unstack_models(r.models)[0])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    hints = [m for m in logs if "touch " in m]
    assert len(hints) == 1 and str(tmp_path / "w" / loop.STOP_FILE) in hints[0], logs
    assert any("exists; stopping" in m for m in logs), logs
    # without a work folder there is no stop file to look for
    fitted, hist = F.fit(mtp0, batches, cfg, log=lambda m: None)
    assert len(hist) == 6


def test_a_new_fit_removes_a_stop_file_left_by_an_earlier_one(tmp_path):
    """train_potential in a work folder that still holds STOP from a fit stopped there: a fresh fit (no --resume)
    removes it and runs all its steps; a resumed one keeps it (the user asked that run to stop)."""
    from mtpjax.fit import loop

    records = _bench_records(8)
    work = tmp_path / "w"
    work.mkdir()
    (work / loop.STOP_FILE).touch()
    cfg = F.FitConfig(max_steps=4, method="lm", lm_ftol=0.0)
    logs = []
    r = F.train_potential(records, None, level=8, cutoff=5.0, cfg=cfg, workdir=work, output=tmp_path / "p.almtp",
                          log=logs.append)
    assert r["steps"] == 4 and not (work / loop.STOP_FILE).exists()
    assert any("removed" in m and loop.STOP_FILE in m for m in logs), logs
    (work / loop.STOP_FILE).touch()
    F.train_potential(records, None, level=8, cutoff=5.0, cfg=cfg, workdir=work, output=tmp_path / "p.almtp",
                      resume=True, log=lambda m: None)
    assert (work / loop.STOP_FILE).exists()


def test_adam_minibatches_reduce_the_full_loss():
    """Adam on minibatches lowers the full-data loss beyond what the exact linear solve alone reaches."""
    from mtpjax.basis import generate_basis

    records = _bench_records(24)
    batches, _ = pack_records(records, 5.0, max_batch_atoms=40)
    assert len(batches) > 2
    n = len(records)
    mtp0 = F.linear_solve(F.initial_mtp(generate_basis(8), 1, 2.0, 5.0, batches, seed=1), batches, F.LossConfig(), n)
    start = float(full_loss(mtp0, [jax.tree.map(jnp.asarray, b) for b in batches], F.LossConfig(), n))
    cfg = F.FitConfig(max_steps=60, method="adam", learning_rate=1e-2, linear_solve_at=(0,), seed=2)
    fitted, hist = F.fit(mtp0, batches, cfg, log=lambda m: None)
    end = float(full_loss(fitted, [jax.tree.map(jnp.asarray, b) for b in batches], F.LossConfig(), n))
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
    assert sum(m.startswith("fit: step 1/3, loss ") for m in logs) == 4  # each fit's progress lines reach the log
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


def _write_extxyz(path, records):
    from ase.io import write

    atoms = []
    for r in records:
        a = Atoms("Mg" * r.n_atoms, positions=r.positions, cell=r.cell, pbc=True)
        a.calc = SinglePointCalculator(a, energy=r.energy, forces=r.forces)
        atoms.append(a)
    write(path, atoms)


def _snapshot(folder):
    """Every file under ``folder`` with its size, modification time and content."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_refuses_another_fit(tmp_path, capsys):
    """--resume from a checkpoint written with another cutoff, or for other training data, is an error naming each
    difference, and nothing is written (before: a 5 Å checkpoint resumed with --cutoff 6 gave a 5 Å potential whose
    result.json said 6)."""
    from mtpjax.cli import main

    records = _bench_records(8)
    _write_extxyz(tmp_path / "train.extxyz", records)
    out = tmp_path / "pot.almtp"
    args = ["fit", str(tmp_path / "train.extxyz"), "--level", "6", "--max-steps", "3", "-o", str(out), "-q"]
    assert main(args + ["--cutoff", "5.0"]) == 0
    before = _snapshot(tmp_path)
    capsys.readouterr()
    assert main(args + ["--cutoff", "4.5", "--resume", "--force-weight", "0.02"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.eqx" in err and "cutoff: 5.0 (checkpoint) != 4.5 (now)" in err
    assert "fit.loss.force_weight: 0.01 (checkpoint) != 0.02 (now)" in err
    other = [dataclasses.replace(r) for r in records]
    other[2].energy += 0.1
    with pytest.raises(MtpjaxError, match=r"training data differ \(digest [0-9a-f]+ \(checkpoint\) != [0-9a-f]+ \(now\)\)"):
        F.train_potential(other, [], level=6, cutoff=5.0, cfg=F.FitConfig(max_steps=3), workdir=tmp_path / "pot.fit",
                          output=out, resume=True, log=lambda m: None)
    assert _snapshot(tmp_path) == before
    # the same settings and data resume (here: the run is finished; nothing more to do)
    assert main(args + ["--cutoff", "5.0", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().err


def test_sweep_refuses_other_training_or_test_data(tmp_path):
    """sweep.json holds digests of the training and test data: a sweep folder reused with other data is refused
    (its finished runs would be skipped and their old errors reported)."""
    from mtpjax.sweep import run_sweep

    records = _bench_records(6)
    kw = dict(levels=[6], cutoffs=[5.0], subsets=["NOPE"], cfg=F.FitConfig(max_steps=2), log=lambda m: None)
    with pytest.raises(MtpjaxError, match="tagged 'NOPE'"):  # sweep.json is written, then no run can start
        run_sweep(records[:4], records[4:], tmp_path, **kw)
    assert (tmp_path / "sweep.json").exists()
    with pytest.raises(MtpjaxError, match=r"sweep\.json.*the training data differ"):
        run_sweep(records[:3], records[4:], tmp_path, **kw)
    with pytest.raises(MtpjaxError, match=r"sweep\.json.*the test data differ"):
        run_sweep(records[:4], records[5:], tmp_path, **kw)
    with pytest.raises(MtpjaxError, match="tagged 'NOPE'"):  # the same data: accepted
        run_sweep(records[:4], records[4:], tmp_path, **kw)


@pytest.mark.filterwarnings("ignore")
def test_loss_not_finite_from_the_start_is_an_error(tmp_path):
    """An energy label of 1e200 makes the loss infinite from step 0: an error naming the structure, and no potential,
    result or checkpoint is written."""
    records = _bench_records(8)
    records[3].energy = 1e200
    work = tmp_path / "w"
    with pytest.raises(MtpjaxError, match="not finite from the first step") as err:
        F.train_potential(records, [], level=6, cutoff=5.0, cfg=F.FitConfig(max_steps=3, checkpoint_every=1),
                          workdir=work, output=work / "pot.almtp", log=lambda m: None)
    assert f"the largest |E/N - median| is structure {records[3].name}" in str(err.value)
    assert not any(work.glob("pot.*")) and not (work / "result.json").exists() and not (work / "checkpoint.eqx").exists()
    assert not work.exists()  # the folder the failed fit created is gone


def test_all_weights_zero_is_named_and_an_existing_folder_is_kept(tmp_path):
    records = _bench_records(4)
    for r in records:
        r.weight = 0.0
    work = tmp_path / "w"
    work.mkdir()
    (work / "mine.txt").write_text("kept")
    with pytest.raises(MtpjaxError, match="all 4 training structures have weight 0"):
        F.train_potential(records, [], level=6, cutoff=5.0, workdir=work, output=work / "pot.almtp", log=lambda m: None)
    assert (work / "mine.txt").read_text() == "kept"


class _ThroughOptimum:
    """A stand-in method that walks the moment coefficients of model j along a line through ``best`` (the exact
    minimiser of the validation loss), passing it at step ``centres[j]``; its training losses only decrease."""

    name = "walk"
    full_batch = True

    def __init__(self, best, direction, centres):
        self.best, self.d, self.centres = best, direction, np.asarray(centres, float)

    def init(self, models, batches, n_structures):
        return {"k": np.zeros(F.n_models(models))}

    def step(self, k, models, state, batches, n_structures):
        import equinox as eqx

        t = (k - self.centres)[:, None] * 0.05
        models = eqx.tree_at(lambda m: m.moment_coeffs, models, self.best[None] + t * self.d[None])
        return models, {"k": state["k"] + 1}, np.full(len(self.centres), 1.0 / (k + 1)), np.zeros(len(self.centres), bool)


def test_validation_keeps_the_best_parameters_and_stops_after_patience(tmp_path):
    from mtpjax.basis import generate_basis

    records = _bench_records(8)
    train_b, _ = pack_records(records[:4], 5.0)
    val_b, _ = pack_records(records[4:], 5.0)
    val_b = [jax.tree.map(jnp.asarray, lb) for lb in val_b]
    m0 = F.initial_mtp(generate_basis(6), 1, 2.0, 5.0, train_b, seed=0)
    best = F.linear_solve(m0, val_b, F.LossConfig(), 4)
    d = np.random.default_rng(0).normal(size=best.moment_coeffs.shape)
    method = _ThroughOptimum(np.asarray(best.moment_coeffs), d, [5, 10])
    cfg = F.FitConfig(method="lbfgs", max_steps=50, validate_every=1, patience=3)
    r = F.fit_models(F.stack_models([best, best]), train_b, cfg, method=method, validation=val_b, log=lambda m: None)
    assert r.stopped == ["validation", "validation"]
    assert [v["best_step"] for v in r.validation] == [5, 10]
    assert [len(h) for h in r.histories] == [9, 14] and r.steps == 14  # 3 evaluations without improvement each
    for m, v in zip(F.unstack_models(r.models), r.validation):
        np.testing.assert_array_equal(np.asarray(m.moment_coeffs), np.asarray(best.moment_coeffs))  # the best, not the last
        assert v["best_loss"] == min(x for _, x in v["history"])
        assert float(full_loss(m, val_b, F.LossConfig(), 4)) == pytest.approx(v["best_loss"], rel=1e-12)
    # killed after step 7 (the last checkpoint after step 5: the best of model 0), resumed: the same choice
    cfg = dataclasses.replace(cfg, checkpoint_every=3)

    def kill(k, v):
        if k == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        F.fit_models(F.stack_models([best, best]), train_b, cfg, method=method, validation=val_b, log=lambda m: None,
                     workdir=tmp_path, progress=kill)
    again = F.fit_models(F.stack_models([best, best]), train_b, cfg, method=method, validation=val_b, log=lambda m: None,
                         workdir=tmp_path, resume=True)
    assert again.validation == r.validation and again.histories == r.histories and again.stopped == r.stopped
    for x, y in zip(jax.tree.leaves(again.models), jax.tree.leaves(r.models)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_train_potential_with_a_validation_fraction(tmp_path):
    """--validation-fraction: a seeded held-out set; result.json records its RMSEs and the chosen step, and the
    written potential is the one with the best validation loss recorded."""
    from mtpjax.model import load_mtp

    records = _bench_records(12)
    cfg = F.FitConfig(method="lbfgs", max_steps=30, linear_solve_at=(0, 10), validation_fraction=0.25, validate_every=4, patience=2)
    result = F.train_potential(records, [], level=6, cutoff=5.0, seed=1, cfg=cfg, workdir=tmp_path, output=tmp_path / "p.almtp",
                               log=lambda m: None)
    saved = json.loads((tmp_path / "result.json").read_text())
    v = saved["validation"]
    assert v["n"] == 3 and saved["n_train"] == 9 and v["fraction"] == 0.25
    assert v["rmse"]["all"]["energy"] > 0 and v["rmse"]["all"]["forces"] > 0
    steps = [k for k, _ in v["history"]]
    assert steps[:3] == [3, 7, 11] and v["best_step"] == min(v["history"], key=lambda x: x[1])[0]
    assert result["validation"]["best_step"] == v["best_step"]
    _, held = F.split_validation(records, 0.25, 1)
    assert len(held) == 3
    vb, _ = pack_records(held, 5.0)
    mtp = load_mtp(tmp_path / "p.mtpjax")
    got = float(full_loss(mtp, [jax.tree.map(jnp.asarray, lb) for lb in vb], cfg.loss, 3))
    assert got == pytest.approx(v["best_loss"], rel=1e-9)
