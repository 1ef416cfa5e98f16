"""The training-set pipeline (mtpjax.generate): RANDSPG, relaxations, deformations, labels, storage, resume,
executors, bad input. The oracle is the project's default, the Zhou 2004 EAM for Mg."""
from __future__ import annotations

import argparse
import json
import warnings

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk

from mtpjax.errors import MtpjaxError
from mtpjax.generate import pipeline
from mtpjax.generate.config import ConfigError, DeformConfig, RandspgConfig, RelaxConfig, config_from_dict, load_config
from mtpjax.generate.deform import deform
from mtpjax.oracles import label
from mtpjax.generate.randspg import generate_one, tasks
from mtpjax.generate.structures import is_failure, min_distance, rng
from mtpjax.neighbors import pairs
from mtpjax.oracles import ASEOracle, make_oracle

MICRO = {
    "element": "Mg", "seed": 11, "oracle": {"type": "zhou"},
    "randspg": {"space_groups": [191, 194], "n_atoms": [1, 3], "workers": 1},
    "relax": {"max_steps": 300},
    "deform": {"copies": 1},
    "executor": {"kind": "jax", "chunk_size": 64},
}


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(d.glob("*.extxyz"))}


def _random_cells(ref, n=6, seed=3):
    """A few RANDSPG structures (small cells, far below the cutoff) of the micro config."""
    cfg = RandspgConfig(space_groups=(1, 2), n_atoms=(1, 3), workers=1)
    out = [generate_one(t, "Mg", ref["omega0"], 0.6 * ref["nn_distance"], cfg, seed, k) for k, t in enumerate(tasks(cfg)[0])]
    return [a for a in out if not is_failure(a)][:n]


# ------------------------------------------------------------------------------------------------ config, bad input
def test_reference_is_the_oracles_own_hcp(ref):
    # reference_properties.csv: Zhou2004_EAM_ase a = 3.199 Å, c/a = 1.629, V0 = 23.093 Å³
    assert ref["a"] == pytest.approx(3.199, abs=2e-3)
    assert ref["c_over_a"] == pytest.approx(1.629, abs=2e-3)
    assert ref["omega0"] == pytest.approx(23.093, abs=0.01)
    assert ref["max_stress_GPa"] < 1e-4


@pytest.mark.parametrize("change, field", [
    ({"element": "Xx"}, "element"),
    ({"randspg": {"volume_range": [-0.1, 1.1]}}, "randspg.volume_range"),
    ({"randspg": {"volume_range": [0.0, 1.1]}}, "randspg.volume_range"),
    ({"randspg": {"volume_range": [1.2, 1.1]}}, "randspg.volume_range"),
    ({"randspg": {"space_groups": [0, 231]}}, "randspg.space_groups"),
    ({"randspg": {"n_atmos": [1, 3]}}, "randspg.n_atmos"),
    ({"relax": {"fmax": -1}}, "relax.fmax"),
    ({"subsets": ["RANDSPG", "EVERYTHING2"]}, "subsets"),
    ({"executor": {"kind": "mpi"}}, "executor.kind"),
])
def test_bad_config_names_the_field(change, field):
    data = json.loads(json.dumps(MICRO))
    for k, v in change.items():
        data[k] = {**data[k], **v} if isinstance(v, dict) else v
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert err.value.field == field and str(err.value).startswith(field)


def test_bad_config_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("seed = [1,\n")
    with pytest.raises(MtpjaxError, match="bad.toml"):
        load_config(p)
    p.write_text('element = "Mg"\n[relax]\nskin = 0\n')
    with pytest.raises(ConfigError, match=r"relax\.skin.*bad\.toml"):
        load_config(p)


def test_unknown_element_and_impossible_volume(tmp_path):
    with pytest.raises(ConfigError) as err:  # the Zhou EAM has no Xe
        pipeline.run(config_from_dict({**MICRO, "element": "Xe"}), tmp_path / "xe", progress=False)
    assert err.value.field == "element"
    with pytest.raises(ConfigError) as err:  # LJ oracle that only knows Ar
        pipeline.run(config_from_dict(MICRO), tmp_path / "ar", oracle=make_oracle({"type": "lj"}), progress=False)
    assert err.value.field == "element"
    cfg = config_from_dict({**MICRO, "randspg": {**MICRO["randspg"], "volume_range": [0.01, 0.02]}})
    with pytest.raises(ConfigError) as err:  # 0.6 d_nn apart needs more than 2 % of Ω0
        pipeline.run(cfg, tmp_path / "small", progress=False)
    assert err.value.field == "randspg.volume_range"


# ------------------------------------------------------------------------------------------------ RANDSPG
def test_randspg_volume_spacegroup_determinism(ref):
    cfg = RandspgConfig(space_groups=(160, 166), n_atoms=(1, 4), copies=2, volume_range=(0.9, 1.1), workers=1)
    todo, n_bad = tasks(cfg)
    assert len(todo) == 2 * (28 - n_bad) and n_bad > 0
    dmin = 0.6 * ref["nn_distance"]
    out = [generate_one(t, "Mg", ref["omega0"], dmin, cfg, 5, k) for k, t in enumerate(todo)]
    again = [generate_one(t, "Mg", ref["omega0"], dmin, cfg, 5, k) for k, t in enumerate(todo)]
    ok = [a for a in out if not is_failure(a)]
    assert len(ok) >= len(todo) // 2
    for t, a, b in zip(todo, out, again):
        if is_failure(a):
            assert is_failure(b) and a.reason == b.reason and a.reason in ("min_distance", "pyxtal_failed", "timeout")
            continue
        sg, n, c = t
        target = ref["omega0"] * rng(5, "VOLUME", sg, n, c).uniform(0.9, 1.1)
        assert a.get_volume() / len(a) == pytest.approx(target, rel=1e-12)  # rescaled exactly
        assert len(a) == n and a.info["spacegroup_requested"] == sg
        import spglib

        assert a.info["spacegroup"] == spglib.get_symmetry_dataset(
            (a.cell.array, a.get_scaled_positions(), a.numbers), symprec=1e-3).number
        assert a.info["symprec"] == 1e-3
        assert min_distance(a, dmin) >= dmin
        np.testing.assert_array_equal(a.positions, b.positions)  # deterministic for a seed
        np.testing.assert_array_equal(a.cell.array, b.cell.array)
    other = generate_one(todo[0], "Mg", ref["omega0"], dmin, cfg, 6, 0)  # another seed, another structure
    assert is_failure(other) or is_failure(out[0]) or not np.allclose(other.cell.array, out[0].cell.array)


# ------------------------------------------------------------------------------------------------ deformations
def test_deformation_statistics():
    parent = bulk("Mg", "hcp", a=3.2, c=5.2) * (5, 5, 4)  # 200 atoms
    parent.info.update(key=np.array([194, 2, 0]), id="INTMIN/sg194-n2-c0")
    cfg = DeformConfig(copies=60, min_volume_ratio=-np.inf)
    out = {s: deform(parent, s, cfg, seed=1, dmin=0.0, symprec=1e-3) for s in ("TRIAX", "SHEAR", "RATTLE")}
    eps = {s: np.array([a.info["strain"].reshape(3, 3) for a in v]) for s, v in out.items()}
    off = ~np.eye(3, dtype=bool)
    t, s, r = eps["TRIAX"], eps["SHEAR"], eps["RATTLE"]
    assert np.abs(t[:, off]).max() == 0 and np.abs(t).max() <= 0.8 and np.abs(t).max() > 0.7  # uniform in ±0.8
    assert abs(t[:, np.eye(3, dtype=bool)].mean()) < 0.1
    assert np.abs(s[:, ~off]).max() == 0 and np.abs(s).max() <= 0.8 and np.abs(s).max() > 0.7
    np.testing.assert_array_equal(s, np.swapaxes(s, 1, 2))
    assert np.abs(r).max() <= 0.05 and np.abs(r).max() > 0.045
    np.testing.assert_array_equal(r, np.swapaxes(r, 1, 2))
    disp = []
    for a, e in zip(out["RATTLE"], r):
        F = np.eye(3) + e
        np.testing.assert_allclose(a.cell.array, parent.cell.array @ F, atol=1e-12)
        disp.append(a.positions - parent.positions @ F)
    for a, e in zip(out["TRIAX"], t):  # pure strain: positions follow the cell
        np.testing.assert_allclose(a.positions, parent.positions @ (np.eye(3) + e), atol=1e-12)
    norms = np.linalg.norm(np.concatenate(disp), axis=1)  # 12000 displacements
    assert norms.mean() == pytest.approx(0.5, rel=0.02)  # mean norm 0.5 Å
    sigma = 0.5 / np.sqrt(8 / np.pi)
    assert np.concatenate(disp).std() == pytest.approx(sigma, rel=0.02)  # isotropic Gaussian
    a = out["SHEAR"][3]
    assert a.info["subset"] == a.info["config_type"] == "SHEAR" and a.info["parent"] == "INTMIN/sg194-n2-c0"
    assert a.info["id"] == "SHEAR/sg194-n2-c0-k3"
    again = deform(parent, "RATTLE", cfg, seed=1, dmin=0.0, symprec=1e-3)
    np.testing.assert_array_equal(again[7].positions, out["RATTLE"][7].positions)


def test_degenerate_deformations_are_counted():
    parent = bulk("Mg", "hcp", a=3.2, c=5.2)
    parent.info.update(key=np.array([194, 2, 0]), id="INTMIN/sg194-n2-c0")
    res = deform(parent, "SHEAR", DeformConfig(copies=40), seed=0, dmin=2.5, symprec=1e-3)
    reasons = {f.reason for f in res if is_failure(f)}
    assert reasons == {"min_distance", "volume_collapse"}
    assert all(min_distance(a, 2.5) >= 2.5 for a in res if not is_failure(a))


# ------------------------------------------------------------------------------------------------ relaxations
# (the VOLMIN / CELLMIN / INTMIN relaxations themselves, batched and through ASE, are tested in test_relax.py)
class NaNZhou(eqx.Module):
    """The Zhou EAM, but NaN for every atom with fewer than ``n_min`` neighbours inside the cutoff (some structures)."""

    inner: eqx.Module
    n_min: int = eqx.field(static=True)

    @property
    def cutoff(self):
        return self.inner.cutoff

    @property
    def n_species(self):
        return 1

    @property
    def species(self):
        return self.inner.species

    def site_energies_from_pairs(self, R, types, nbrs, **kw):
        e = self.inner.site_energies_from_pairs(R, types, nbrs)
        n = jnp.sum(nbrs.mask & (jnp.sum(R * R, -1) < self.inner.cutoff ** 2), axis=1)
        return jnp.where((types >= 0) & (n < self.n_min), jnp.nan, e)


def nan_calculator(inner=None):
    """An ASE calculator (Zhou EAM) that raises for 1-atom cells and returns NaN for 2-atom cells."""
    from mtpjax.calculator import PotentialCalculator

    class Flaky(PotentialCalculator):
        def calculate(self, atoms=None, properties=("energy",), system_changes=None):
            if len(atoms) == 1:
                raise RuntimeError("SCF did not converge")
            super().calculate(atoms, properties, system_changes or [])
            if len(atoms) == 2:
                self.results["energy"] = np.nan

    return Flaky(make_oracle({"type": "zhou", "element": "Mg"}))


def test_failures_are_counted_never_raised(zhou, ref):
    structures = _random_cells(ref, n=6)
    nnb = [np.bincount(pairs(a.positions, a.cell.array, True, zhou.cutoff)[0], minlength=len(a)).min() for a in structures]
    n_min = int(np.median(nnb)) + 1  # about half the structures go NaN
    bad = NaNZhou(zhou, n_min)
    lab = label(bad, structures)
    assert {f.reason for f in lab if is_failure(f)} == {"non_finite"}
    assert [is_failure(x) for x in lab] == [n < n_min for n in nnb]
    rel = pipeline.relax_structures(bad, structures, "volume", RelaxConfig(max_volume_factor=3.0))
    assert all(is_failure(r) and r.reason == "non_finite" for r, n in zip(rel, nnb) if n < n_min)
    flaky = ASEOracle("test_generate:nan_calculator", species=("Mg",))
    one_two = [a for a in structures if len(a) in (1, 2)] + [bulk("Mg", "hcp", a=3.2, c=5.2) * (1, 1, 2)]
    lab = label(flaky, one_two)
    assert [getattr(x, "reason", None) for x in lab] == [
        {1: "oracle_error", 2: "non_finite"}[len(a)] for a in one_two[:-1]] + [None]
    rel = pipeline.relax_structures(flaky, one_two, "positions", RelaxConfig())
    assert [getattr(x, "reason", None) for x in rel][:-1] == [{1: "oracle_error", 2: "non_finite"}[len(a)] for a in one_two[:-1]]


# ------------------------------------------------------------------------------------------------ the pipeline
@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("micro") / "a"
    manifest = pipeline.run(config_from_dict(MICRO), out, progress=False)
    return out, manifest


def test_pipeline_outputs(micro_run):
    from mtpjax.data import load_records

    out, m = micro_run
    assert (out / "summary.md").read_text().count("|") > 40
    assert json.loads((out / "manifest.json").read_text())["seed"] == 11
    for k in ("mtpjax", "jax", "pyxtal", "spglib", "ase", "numpy"):
        assert m["versions"][k]
    assert m["oracle"]["type"] == "zhou" and m["omega0"] == pytest.approx(23.093, abs=0.01)
    subsets = m["subsets"]
    sp = subsets["RANDSPG"]
    assert sp["attempted"] == sp["compatible_pairs"] and sp["incompatible_pairs"] > 0
    assert sp["structures"] + sum(sp["rejected"].values()) == sp["attempted"]
    assert subsets["VOLMIN"]["attempted"] == sp["structures"]
    assert subsets["INTMIN"]["structures"] > 0
    for s in ("TRIAX", "SHEAR", "RATTLE"):
        assert subsets[s]["attempted"] == subsets["INTMIN"]["structures"]
    total = sum(subsets[s]["structures"] for s in ("RANDSPG", "VOLMIN", "CELLMIN", "INTMIN", "TRIAX", "SHEAR", "RATTLE"))
    assert subsets["EVERYTHING"]["structures"] == total
    records = load_records(out / "EVERYTHING.extxyz", species=["Mg"])
    assert len(records) == total
    assert all(r.energy is not None and r.forces is not None and r.virial is not None for r in records)
    assert {r.subset for r in records} == {s for s in subsets if s != "EVERYTHING" and subsets[s]["structures"]}
    import ase.io

    vol = ase.io.read(out / "VOLMIN.extxyz", ":")
    assert all(a.info["parent"].startswith("RANDSPG/") and a.info["spacegroup"] > 0 for a in vol)
    assert set(m["timings"]) >= {"reference", "RANDSPG", "VOLMIN", "CELLMIN", "INTMIN", "total"}


def test_cli_is_deterministic(micro_run, tmp_path):
    from mtpjax.generate.cli import add_parser, main

    out, _ = micro_run
    (tmp_path / "micro.toml").write_text(_toml(MICRO))
    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["generate", "--config", str(tmp_path / "micro.toml"), "--out", str(tmp_path / "b"), "-q"])
    assert args.func(args) == 0 and main is args.func
    assert _files(tmp_path / "b") == _files(out)  # same seed: identical files
    assert (tmp_path / "b" / "fig1_space_groups.png").exists() and (tmp_path / "b" / "fig3_distances.png").exists()
    with pytest.raises(MtpjaxError, match="--resume"):  # never silently overwrite a run
        main(args)


def test_resume_after_kill_recomputes_nothing(micro_run, tmp_path, monkeypatch):
    out, _ = micro_run
    cfg = config_from_dict(MICRO)

    class Killed(Exception):
        pass

    def kill(event, stage=None, **_):
        if event == "stage_done" and stage == "CELLMIN":
            raise Killed()

    with pytest.raises(Killed):
        pipeline.run(cfg, tmp_path / "c", hook=kill, progress=False)
    labelled, relaxed = [], []
    real_label, real_relax = pipeline.label_task, pipeline.relax_task
    monkeypatch.setattr(pipeline, "label_task", lambda p, progress=None: labelled.extend(p["structures"]) or real_label(p, progress))
    monkeypatch.setattr(pipeline, "relax_task", lambda p, progress=None: relaxed.extend(p["structures"]) or real_relax(p, progress))
    m = pipeline.run(cfg, tmp_path / "c", resume=True, progress=False)
    assert {a.info["subset"] for a in labelled} == {"INTMIN", "TRIAX", "SHEAR", "RATTLE"}  # no label recomputed
    assert {a.info["subset"] for a in relaxed} == {"CELLMIN"}  # only INTMIN's inputs are relaxed again
    assert m["checkpoints"]["chunks"]["label-CELLMIN:cached"] >= 1
    assert _files(tmp_path / "c") == _files(out)  # identical to an uninterrupted run
    # a corrupted checkpoint is detected and recomputed; a corrupted run state is an error naming the file
    ck = next((tmp_path / "c" / "checkpoints" / "label-VOLMIN").glob("*.pkl"))
    ck.write_bytes(ck.read_bytes()[:-10] + b"garbage!!!")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = pipeline.run(cfg, tmp_path / "c", resume=True, progress=False)
    assert any(str(ck) in str(x.message) for x in w) and m["checkpoints"]["corrupted_and_recomputed"] == [str(ck)]
    assert _files(tmp_path / "c") == _files(out)
    (tmp_path / "c" / "run.json").write_text("{not json")
    with pytest.raises(MtpjaxError, match="run.json"):
        pipeline.run(cfg, tmp_path / "c", resume=True, progress=False)


def test_subset_selection(micro_run, tmp_path):
    out, _ = micro_run
    cfg = config_from_dict({**MICRO, "subsets": ["RANDSPG", "INTMIN", "RATTLE"]})
    m = pipeline.run(cfg, tmp_path / "d", progress=False)
    assert sorted(p.name for p in (tmp_path / "d").glob("*.extxyz")) == ["EVERYTHING.extxyz", "INTMIN.extxyz", "RANDSPG.extxyz",
                                                                         "RATTLE.extxyz"]
    assert m["subsets"]["VOLMIN"]["selected"] is False and "SHEAR" not in m["subsets"]
    assert _files(tmp_path / "d")["RATTLE.extxyz"] == _files(out)["RATTLE.extxyz"]


def test_dask_local_cluster_gives_the_same_files(micro_run, tmp_path):
    pytest.importorskip("dask.distributed")
    out, _ = micro_run
    cfg = config_from_dict({**MICRO, "executor": {"kind": "dask", "workers": 2, "processes": False, "chunk_size": 4}})
    m = pipeline.run(cfg, tmp_path / "e", progress=False)
    assert m["executor"]["relax_label"].startswith("dask LocalCluster")
    assert m["checkpoints"]["chunks"]["VOLMIN:computed"] > 1
    assert _files(tmp_path / "e") == _files(out)


@pytest.mark.slow
def test_process_pools_give_the_same_files(micro_run, tmp_path):
    out, _ = micro_run
    cfg = config_from_dict({**MICRO, "randspg": {**MICRO["randspg"], "workers": 2},
                            "executor": {"kind": "process", "workers": 2, "chunk_size": 4}})
    m = pipeline.run(cfg, tmp_path / "f", progress=False)
    assert m["executor"] == {"relax_label": "process pool (2 workers)", "randspg": "process pool (2 workers)"}
    assert _files(tmp_path / "f") == _files(out)


def _toml(d, prefix=""):
    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    for k, v in tables:
        lines.append(f"[{k}]")
        lines += [f"{kk} = {json.dumps(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"
