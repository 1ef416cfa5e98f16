"""``mtpjax learn`` (issue 15, item 5): the active-learning loop runs two rounds on a tiny case (MLIP-2's level-8 Mg
MTP, its 40 training cells relabelled by the Zhou 2004 EAM, one NVT run of 18 atoms with a low gamma_break), its
candidates' grades equal mtpjax.active.grade's, its labels the oracle's ASE calculator's, its refit and stored active
set the potential's own; a run stopped after a step and resumed ends with the same files; a bad config names the key."""
from __future__ import annotations

import json

import numpy as np
import pytest

import mtpjax  # noqa: F401  (float64 before jax)
from conftest import SHARED, need

from mtpjax.active.learn import LearnInterrupted, load_command, run_learn
from mtpjax.errors import ConfigError, MtpjaxError

GOLDEN = SHARED / "golden" / "mlip-grade"

SIMULATION = """
[[learn.simulation]]
name = "hot"
element = "Mg"
crystal = "hcp"
a = 3.10
c = 5.03
repeat = [3, 3, 2]
temperature = 900.0
steps = 20
log_every = 10
grade_every = 10
trajectory_every = 20
"""


def _config(tmp_path, train, out="out", extra="", sim=SIMULATION):
    path = tmp_path / f"learn_{out}.toml"
    keys = {"potential": f'"{need(GOLDEN / "pot08_m2.mtp")}"', "train": f'"{train}"', "species": '["Mg"]',
            "oracle": '"zhou:Mg"', "output": f'"{out}"', "gamma_select": "1.5", "gamma_break": "3.0", "max_rounds": "1"}
    for line in extra.splitlines():  # extra lines replace the defaults
        key, _, value = line.partition("=")
        keys[key.strip()] = value.strip()
    head = "\n".join(f"{k} = {v}" for k, v in keys.items())
    path.write_text(f"[learn]\n{head}\n\n[learn.fit]\nmax_steps = 5\n" + sim)
    return path


@pytest.fixture(scope="module")
def zhou_train(tmp_path_factory):
    """MLIP-2's 40 training cells labelled by the Zhou 2004 Mg EAM (full precision)."""
    from mtpjax.io import read_structures, write_structures
    from mtpjax.oracles import label, make_oracle

    path = tmp_path_factory.mktemp("train") / "train_zhou.cfg"
    structures = read_structures(need(GOLDEN / "train.cfg"), species=["Mg"])
    for a in structures:
        a.calc = None
    write_structures(label(make_oracle("zhou:Mg"), structures), path, species=["Mg"], precision="full")
    return path


def test_bad_config_names_the_key(tmp_path):
    """Unknown keys, bad values and missing simulations are ConfigErrors naming the dotted key and the file."""
    train = tmp_path / "t.cfg"
    with pytest.raises(ConfigError, match=r"learn\.gamma_break: 'high' is not a number .*learn_a\.toml"):
        load_command(_config(tmp_path, train, "a", extra='gamma_break = "high"'))
    with pytest.raises(ConfigError, match=r"learn\.simulation\[0\]\.temprature: unknown key"):
        load_command(_config(tmp_path, train, "b", sim=SIMULATION.replace("temperature", "temprature")))
    with pytest.raises(ConfigError, match=r"learn\.simulation: give at least one simulation"):
        load_command(_config(tmp_path, train, "c", sim=""))
    with pytest.raises(ConfigError, match=r"learn\.gamma_select: 5 exceeds gamma_break"):
        load_command(_config(tmp_path, train, "d", extra="gamma_select = 5.0"))
    with pytest.raises(ConfigError, match=r"learn\.simulation\[0\]\.gamma_break: unknown key"):  # the loop's own
        load_command(_config(tmp_path, train, "e", sim=SIMULATION + "gamma_break = 4.0\n"))
    cmd = load_command(_config(tmp_path, train, "f"), {"max_rounds": 4})
    assert cmd.max_rounds == 4 and cmd.simulation[0].settings.temperature == 900.0 and cmd.fit.max_steps == 5
    assert cmd.output == str(tmp_path / "f") and cmd.names() == ["hot"]
    eam = need(SHARED / "data" / "potentials" / "Mg_mm.eam.fs")
    (tmp_path / eam.name).write_bytes(eam.read_bytes())
    assert load_command(_config(tmp_path, train, "h", extra=f'oracle = "eam:{eam.name}"')).oracle == str(tmp_path / eam.name)
    with pytest.raises(ConfigError, match=r"oracle: cannot make the oracle 'zhou:Xx'"):
        run_learn(load_command(_config(tmp_path, train, "g", extra='oracle = "zhou:Xx"')))


def _files(out):
    """What the loop wrote that must not depend on interruptions: the state without wall times and settings, the
    training sets and labels (every .cfg), and the final potential's parameters."""
    from mtpjax.active import parameter_vector
    from mtpjax.io import read_cfg
    from mtpjax.model import load_mtp

    state = json.loads((out / "state.json").read_text())
    for r in state["rounds"]:
        r.pop("wall_s", None)
    state.pop("config")
    cfgs = {p.relative_to(out).as_posix(): read_cfg(p) for p in sorted(out.rglob("*.cfg"))}
    theta = np.asarray(parameter_vector(load_mtp(out / state["potential"])))
    return state, cfgs, theta


def _same(a, b, rtol=1e-8):
    """Equal structure and strings/integers; floats to ``rtol`` (the MD's grades vary at 1e-11 from run to run)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k], rtol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y, rtol)
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=rtol, nan_ok=True)
    else:
        assert a == b


@pytest.fixture(scope="module")
def full(tmp_path_factory, zhou_train):
    """The uninterrupted run: (its folder, its final state, its progress lines)."""
    tmp = tmp_path_factory.mktemp("learn")
    lines = []
    state = run_learn(load_command(_config(tmp, zhou_train, "full")), echo=lines.append)
    return tmp / "full", state, lines


def _same_result(out, ref):
    """The run in ``out`` ended as the one in ``ref``: the same rounds and status, training sets, labels (to the
    extxyz precision of candidates) and parameters."""
    s_ref, f_ref, t_ref = _files(ref)
    s_out, f_out, t_out = _files(out)
    _same(s_ref, s_out)
    assert f_ref.keys() == f_out.keys()
    for name in f_ref:
        for c, d in zip(f_ref[name], f_out[name], strict=True):
            np.testing.assert_allclose(d.positions, c.positions, atol=1e-7)
            assert d.energy == pytest.approx(c.energy, abs=1e-9)
            np.testing.assert_allclose(d.forces, c.forces, atol=1e-8)
    np.testing.assert_allclose(t_out, t_ref, rtol=1e-6, atol=1e-9)


@pytest.mark.slow
def test_loop_runs_two_rounds(full):
    """Round 0: the run passes gamma_break (the ideal compressed lattice grades ~18); its candidates' grades equal
    mtpjax.active.grade of the frames against the start's active set; MaxVol selects; the labels equal the Zhou EAM's
    ASE calculator; the refit is warm-started and stores the new training set's active set. Round 1 runs the check."""
    from mtpjax.active import build_active_set, grade, load_active_set
    from mtpjax.io import read_cfg, read_structures
    from mtpjax.model import load_mtp
    from mtpjax.oracles import get_calculator, make_oracle

    out, state, lines = full
    assert len(state["rounds"]) == 2 and state["status"] in ("converged", "max_rounds")
    r0, r1 = state["rounds"]
    assert r0["broke"] == 1 and r0["max_gamma"]["hot"] > 3.0 and r0["candidates"] >= 1
    assert 1 <= r0["selected"] <= r0["candidates"] and r0["labelled"] == r0["selected"]
    assert r0["train_size"] == 40 + r0["labelled"] and np.isfinite(r0["rmse_energy_meV_atom"])
    assert "max_gamma" in r1 and "selected" not in r1 and (state["status"] == "converged") == (r1["broke"] == 0)
    assert {x.split()[2] for x in lines if " md: " in x} == {"0", "1"} and any(" fit: " in x for x in lines)
    rows = (out / "rounds.csv").read_text().splitlines()
    assert rows[0].startswith("round,candidates,selected") and len(rows) == 3
    # candidates: graded as mtpjax grade does, against the start potential's active set built from the training set
    mtp0 = load_mtp(out / "round_00" / "potential.mtpjax")
    train0 = read_cfg(out / "round_00" / "train.cfg")
    cands = read_structures(out / "round_00" / "candidates.extxyz")
    g = grade(mtp0, build_active_set(mtp0, train0), cands).grades
    np.testing.assert_allclose(g, [a.info["grade"] for a in cands], rtol=1e-5)
    assert max(g) > 3.0
    # labels: the Zhou EAM through its ASE calculator
    calc = get_calculator(make_oracle("zhou:Mg"))
    for c, a in zip(read_cfg(out / "round_00" / "labelled.cfg"), read_structures(out / "round_00" / "selected.extxyz")):
        a.calc = calc
        assert c.energy == pytest.approx(a.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(c.forces, a.get_forces(), atol=1e-8)
    # the refit: round 1's training set is round 0's plus the labels; its stored active set is the potential's own
    train1 = read_cfg(out / "round_01" / "train.cfg")
    assert len(train1) == r0["train_size"]
    mtp1 = load_mtp(out / "round_01" / "potential.mtpjax")
    stored = load_active_set(out / "round_01" / "potential.mtpjax", mtp1)
    np.testing.assert_allclose(stored.A, build_active_set(mtp1, train1).A, rtol=1e-10, atol=1e-14)
    assert not np.allclose(np.asarray(mtp1.moment_coeffs), np.asarray(mtp0.moment_coeffs))


@pytest.mark.slow
def test_stopped_after_a_step_resumes_to_the_same_result(tmp_path, zhou_train, full):
    """Stopped after round 0's label step (state.json says so), then run again: it resumes with the fit and ends as
    the uninterrupted run; a resume with other settings is refused, naming them."""
    cfg = _config(tmp_path, zhou_train, "resumed")
    with pytest.raises(LearnInterrupted):
        run_learn(load_command(cfg), stop_after=(0, "label"))
    assert json.loads((tmp_path / "resumed" / "state.json").read_text())["done"] == [0, "label"]
    resumed = []
    run_learn(load_command(cfg), echo=resumed.append)
    assert resumed[0].startswith("mtpjax learn: resuming") and " fit: " in resumed[1]
    _same_result(tmp_path / "resumed", full[0])
    with pytest.raises(MtpjaxError, match="gamma_break differ"):
        run_learn(load_command(cfg, {"gamma_break": 4.0}))


@pytest.mark.slow
def test_killed_inside_a_step_resumes_to_the_same_result(tmp_path, zhou_train, full):
    """``mtpjax learn`` killed (SIGKILL) as soon as round 0's select step is recorded, i.e. inside the label or fit
    step; run again, it redoes that step and ends as the uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg = _config(tmp_path, zhou_train, "killed")
    state = tmp_path / "killed" / "state.json"
    proc = subprocess.Popen([sys.executable, "-m", "mtpjax.cli", "learn", str(cfg), "-q"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 900
        while time.time() < deadline and proc.poll() is None:
            if state.exists() and json.loads(state.read_text())["done"] == [0, "select"]:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads(state.read_text())["done"] in ([0, "select"], [0, "label"])
    run_learn(load_command(cfg))
    _same_result(tmp_path / "killed", full[0])


@pytest.mark.slow
def test_start_fits_from_scratch_or_relabels_and_refits(tmp_path):
    """Without a potential, round 0 fits a level-6 MTP (the basis of MLIP's 06.almtp template) to the training set;
    with relabel_train, the training set gets the oracle's labels (those of its ASE calculator) and the given
    potential is refitted to them, warm-started (its r_min and cutoff kept)."""
    from mtpjax.active import load_active_set, parameter_vector
    from mtpjax.io import read_cfg, read_mtp
    from mtpjax.model import load_mtp
    from mtpjax.oracles import get_calculator, make_oracle
    from conftest import TEMPLATES

    train = need(GOLDEN / "train.cfg")
    cfg = _config(tmp_path, train, "scratch", extra='potential = ""\nlevel = 6\ncutoff = 5.0\nrelabel_train = true')
    cfg.write_text(cfg.read_text().replace('potential = ""\n', ""))
    with pytest.raises(LearnInterrupted):
        run_learn(load_command(cfg), stop_after=(0, "start"))
    out = tmp_path / "scratch"
    state = json.loads((out / "state.json").read_text())
    assert state["done"] == [0, "start"] and state["start"]["train_size"] == 40
    assert state["start"]["rmse_forces_eV_A"] < 0.5
    mtp = load_mtp(out / "round_00" / "potential.mtpjax")
    assert mtp.moment_coeffs.shape[0] == len(read_mtp(need(TEMPLATES / "06.almtp")).alpha_moment_mapping)
    assert load_active_set(out / "round_00" / "potential.mtpjax", mtp) is not None
    calc = get_calculator(make_oracle("zhou:Mg"))
    c = read_cfg(out / "round_00" / "train.cfg")[7]
    a = read_cfg(train)[7]
    from ase import Atoms

    atoms = Atoms("Mg36", positions=a.positions, cell=a.cell, pbc=True)
    atoms.calc = calc
    assert c.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-8) and c.energy != pytest.approx(a.energy)
    np.testing.assert_array_equal(c.positions, a.positions)
    # relabel and refit the golden potential, warm-started
    cfg = _config(tmp_path, train, "relabel", extra="relabel_train = true")
    with pytest.raises(LearnInterrupted):
        run_learn(load_command(cfg), stop_after=(0, "start"))
    start = load_mtp(need(GOLDEN / "pot08_m2.mtp"))
    refit = load_mtp(tmp_path / "relabel" / "round_00" / "potential.mtpjax")
    assert float(refit.min_dist) == float(start.min_dist) and refit.cutoff == start.cutoff
    assert not np.allclose(np.asarray(parameter_vector(refit)), np.asarray(parameter_vector(start)))
    s = json.loads((tmp_path / "relabel" / "state.json").read_text())["start"]
    assert s["rmse_energy_meV_atom"] < 5 and s["rmse_forces_eV_A"] < 0.05


def test_labels_on_dask_equal_the_oracles_calculator():
    """label_structures on a Dask LocalCluster (threads), in chunks of 2: in input order, equal to the Zhou EAM's ASE
    calculator; a structure of another element is a failure, the rest go on."""
    from ase.build import bulk

    from mtpjax.active.learn import label_structures, make_executor
    from mtpjax.generate.config import ExecutorConfig
    from mtpjax.io import read_structures
    from mtpjax.oracles import make_oracle

    oracle = make_oracle("zhou:Mg")
    structures = read_structures(need(GOLDEN / "train.cfg"), species=["Mg"])[:3]
    structures.insert(1, bulk("Cu", "fcc", a=3.6))
    executor = make_executor(ExecutorConfig(kind="dask", workers=1, processes=False), oracle)
    try:
        assert executor.name.startswith("dask")
        good, bad = label_structures(oracle, structures, executor, chunk_size=2)
    finally:
        executor.close()
    check_labels_of_three_and_a_stranger(oracle, structures, good, bad)


def check_labels_of_three_and_a_stranger(oracle, structures, good, bad):
    """``structures`` = three Mg cells with a Cu cell second: the Cu cell is the one failure, and the others' labels
    equal the oracle's ASE calculator's, in input order."""
    from mtpjax.oracles import get_calculator

    assert len(good) == 3 and len(bad) == 1 and bad[0]["reason"] == "unknown_element"
    calc = get_calculator(oracle)
    for a, ref in zip(good, [structures[0], *structures[2:]]):
        np.testing.assert_allclose(a.positions, ref.positions, atol=0)
        b = ref.copy()
        b.calc = calc
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-8)
