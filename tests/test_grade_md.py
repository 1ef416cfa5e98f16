"""The extrapolation grade inside MD (issue 15, item 4): the grade computed in the jitted loop equals the one of
``mtpjax.active.grade`` (rows through the evaluator's own exact neighbour list), frames above gamma_select are
written out, gamma_break stops the run with the last good frame, and both modes' in-simulation grades equal the
offline rows'. Potential: MLIP-2's level-8 Mg MTP and its training set (../shared/golden/mlip-grade)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import mtpjax  # noqa: F401  (float64 before jax)
from conftest import SHARED, need

import jax
import jax.numpy as jnp

from mtpjax.active import build_active_set, configuration_rows, grade, site_energy_rows
from mtpjax.active.simulation import structure_grade_fn
from mtpjax.errors import MtpjaxError
from mtpjax.io.cfg import read_cfg
from mtpjax.md import MDExtrapolation, energy_fn, run_md
from mtpjax.md.energy import potential_types

GOLDEN = SHARED / "golden" / "mlip-grade"


@pytest.fixture(scope="module")
def setup():
    mtp = mtpjax.load_mtp(need(GOLDEN / "pot08_m2.mtp"))
    train = read_cfg(GOLDEN / "train.cfg")
    return mtp, train, build_active_set(mtp, train), None


def _atoms(cfg):
    from ase import Atoms

    a = Atoms("Mg" * len(cfg.positions), positions=cfg.positions, cell=cfg.cell, pbc=True)
    a.arrays["mlip_type"] = np.asarray(cfg.types, dtype=np.int64)
    return a


def test_in_simulation_grade_equals_offline_rows_in_both_modes(setup):
    """structure_grade_fn (jitted, on mtpjax.md's Verlet list) against ActiveSet.grades of mtpjax.active.rows (the
    evaluator's exact list; in cfg mode also MLIP-2's printed grade): cfg and nbh mode, to 1e-9 relative."""
    mtp, train, active, _ = setup
    atoms = _atoms(read_cfg(GOLDEN / "cand.cfg")[0])  # MLIP-2's calc-grade: MV_grade 3.405185
    _, nfn = energy_fn(mtp, atoms)
    R, cell = jnp.asarray(atoms.positions), jnp.asarray(atoms.cell.array)
    nb = nfn.allocate(R, cell=cell)
    types = jnp.asarray(potential_types(mtp, atoms), jnp.int32)
    g = float(jax.jit(structure_grade_fn(mtp, active))(R, cell, types, nb.neighbours))
    ref = float(active.grades(configuration_rows(mtp, [atoms]))[0])
    assert abs(ref - 3.405185) < 1e-6 and abs(g - ref) < 1e-9 * ref
    nbh = build_active_set(mtp, train[:6], mode="nbh")
    g = float(jax.jit(structure_grade_fn(mtp, nbh))(R, cell, types, nb.neighbours))
    ref = float(nbh.grades(site_energy_rows(mtp, [atoms])[0]).max())
    assert abs(g - ref) < 1e-9 * ref
    with pytest.raises(MtpjaxError, match="do not belong"):
        structure_grade_fn(mtp, dataclasses.replace(active, A=np.eye(3), A_inv=np.eye(3), origin=np.zeros(3, int)))


def test_md_logs_grades_writes_extrapolative_frames_and_breaks(setup):
    """NVT of a training cell: each chunk's grade (graded once, at its end) equals mtpjax.active.grade of the frame;
    with gamma_select below the grades every chunk's frame is written out; a gamma_break below them stops the run with
    MDExtrapolation carrying the last good frame (step 0) and the extrapolated one."""
    mtp, train, active, _ = setup
    atoms = _atoms(train[0])
    frames, extra = [], []
    r = run_md(mtp, atoms, ensemble="nvt_langevin", steps=20, timestep=1.0, temperature=300.0, log_every=10,
               grade_every=10, active_set=active, trajectory=frames, trajectory_every=10, gamma_select=1e-6,
               gamma_break=1e6, extrapolative=extra)
    grades = r.column("grade")
    assert np.all(np.isfinite(grades)) and len(frames) == 3 and len(extra) == 2 and r.extrapolative == 2
    ref = grade(mtp, active, frames).grades
    np.testing.assert_allclose(grades, ref, rtol=1e-9)
    np.testing.assert_allclose([a.info["grade"] for a in extra], ref[1:], rtol=1e-9)
    np.testing.assert_allclose(extra[-1].positions, frames[-1].positions, atol=0)
    assert r.max_grade == pytest.approx(max(grades))
    plain = run_md(mtp, atoms, ensemble="nvt_langevin", steps=10, timestep=1.0, temperature=300.0, log_every=10)
    assert np.isnan(plain.column("grade")).all()
    with pytest.raises(MDExtrapolation, match="gamma_break") as err:
        run_md(mtp, atoms, ensemble="nvt_langevin", steps=20, timestep=1.0, temperature=300.0, log_every=10,
               grade_every=5, active_set=active, gamma_select=1e-6, gamma_break=2e-6)
    assert err.value.step == 0 and err.value.extrapolated.info["grade"] > 2e-6
    np.testing.assert_allclose(err.value.atoms.positions, atoms.positions)
    with pytest.raises(MtpjaxError, match="divide"):
        run_md(mtp, atoms, steps=10, log_every=10, grade_every=3, active_set=active)


def test_md_command_grades_with_the_stored_active_set(tmp_path, setup):
    """``mtpjax md`` with ``active_set`` = the potential (its POT.active.json): the log has the grades, frames above
    gamma_select go to extrapolative.extxyz with their grade, the summary has the largest; gamma_break stops the run
    (exit code 1, the last good frame kept in final.extxyz)."""
    import csv
    import json
    import shutil

    from mtpjax.active import save_active_set
    from mtpjax.cli import main

    mtp, train, active, _ = setup
    pot = tmp_path / "pot.mtp"
    shutil.copy(GOLDEN / "pot08_m2.mtp", pot)
    save_active_set(pot, active, mtp)
    start = tmp_path / "start.extxyz"
    mtpjax.write_structures([_atoms(train[0])], start, format="extxyz")
    cfg = tmp_path / "md.toml"
    cfg.write_text(f'[md]\npotential = "{pot}"\nspecies = ["Mg"]\nstructure = "{start}"\nactive_set = "{pot}"\n'
                   'steps = 20\nlog_every = 10\ngrade_every = 5\ntrajectory_every = 10\ngamma_select = 1e-6\noutput = "out"\n')
    assert main(["md", str(cfg)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "thermo.csv")))
    grades = [float(r["grade"]) for r in rows]
    assert len(grades) == 3 and all(0 < g < 10 for g in grades)
    extra = mtpjax.read_structures(tmp_path / "out" / "extrapolative.extxyz")
    assert len(extra) == 2 and [a.info["grade"] for a in extra] == pytest.approx(grades[1:], rel=1e-9)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["max_grade"] == pytest.approx(max(grades)) and summary["extrapolative"] == 2
    cfg.write_text(cfg.read_text().replace("gamma_select = 1e-6", "gamma_select = 1e-6\ngamma_break = 2e-6"))
    assert main(["md", str(cfg)]) != 0
    assert "gamma_break" in json.loads((tmp_path / "out" / "summary.json").read_text())["stopped"]


def test_relax_grades_initial_and_relaxed_structures(setup):
    """relax(active_set=...): grades before and after equal mtpjax.active.grade of those structures (the candidate
    as given: MLIP-2's 3.405185); relaxed structures above gamma_select are written out with their grade; a
    gamma_break between the two relaxed grades fails the higher one with reason 'extrapolation', not the other."""
    from mtpjax.relax import relax

    mtp, train, active, _ = setup
    structures = [_atoms(train[0]), _atoms(read_cfg(GOLDEN / "cand.cfg")[0])]
    extra = []
    res = relax(mtp, structures, max_steps=30, active_set=active, extrapolative=extra, gamma_select=1.0)
    before = grade(mtp, active, structures).grades
    after = grade(mtp, active, [r.atoms for r in res]).grades
    np.testing.assert_allclose([r.info["initial_grade"] for r in res], before, rtol=1e-9)
    np.testing.assert_allclose([r.grade for r in res], after, rtol=1e-9)
    assert before[1] == pytest.approx(3.405185, rel=1e-6)
    assert [a.info["grade"] for a in extra] == pytest.approx([g for g in after if g > 1.0], rel=1e-9)
    cut = 0.5 * (after[0] + after[1])
    res = relax(mtp, structures, max_steps=30, active_set=active, gamma_select=min(after) / 2, gamma_break=cut)
    worse = int(np.argmax(after))
    assert res[worse].reason == "extrapolation" and "gamma_break" in res[worse].message
    assert res[1 - worse].reason in (None, "not_converged")
