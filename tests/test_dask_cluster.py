"""Labelling on a Dask cluster started the way a batch job starts one: ``dask scheduler --scheduler-file`` and
``dask worker`` in their own processes, reached through ``executor.address`` (its ``tcp://`` address or the scheduler
file). The labels equal the oracle's ASE calculator; the generate pipeline writes the same files as in-process; a
scheduler that does not answer, or a missing scheduler file, is a ConfigError naming ``executor.address``."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

import mtpjax  # noqa: F401  (float64 before jax)
from conftest import SHARED, need

from mtpjax.errors import ConfigError
from mtpjax.generate.config import ExecutorConfig
from mtpjax.generate.executors import DaskExecutor

pytest.importorskip("dask.distributed")
DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"], [sys.executable, "-m", "distributed.cli.dask_worker"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and one worker process (one thread), as ``srun dask worker --scheduler-file`` would start them."""
    d = tmp_path_factory.mktemp("dask")
    sched_file = d / "scheduler.json"
    procs = [subprocess.Popen([*DASK[0], "--scheduler-file", str(sched_file), "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(600):
            if sched_file.is_file() and sched_file.read_text().strip():
                break
            time.sleep(0.1)
        else:
            pytest.fail("dask scheduler wrote no scheduler file in 60 s")
        procs.append(subprocess.Popen([*DASK[1], "--scheduler-file", str(sched_file), "--nthreads", "1",
                                       "--no-nanny", "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield sched_file, json.loads(sched_file.read_text())["address"]
    finally:
        for p in procs[1:]:
            p.kill()  # the worker: no nanny, so no child process is left behind
        procs[0].terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_labels_on_a_running_scheduler_equal_the_oracles_calculator(cluster):
    """executor.address = the scheduler file: label_structures runs on the worker process, in input order, with the
    Zhou EAM's ASE calculator's energies and forces; a structure of another element is a failure, the rest go on."""
    from ase.build import bulk

    from mtpjax.active.learn import label_structures, make_executor
    from mtpjax.io import read_structures
    from mtpjax.oracles import make_oracle
    from test_learn import check_labels_of_three_and_a_stranger

    sched_file, address = cluster
    oracle = make_oracle("zhou:Mg")
    structures = read_structures(need(SHARED / "golden" / "mlip-grade" / "train.cfg"), species=["Mg"])[:3]
    structures.insert(1, bulk("Cu", "fcc", a=3.6))
    executor = make_executor(ExecutorConfig(kind="dask", address=str(sched_file)), oracle)
    try:
        assert executor.name == f"dask ({sched_file})"
        good, bad = label_structures(oracle, structures, executor, chunk_size=2)
        workers = executor.client.scheduler_info()["workers"]
    finally:
        executor.close()
    assert len(workers) == 1  # the worker process of the fixture, not a LocalCluster
    check_labels_of_three_and_a_stranger(oracle, structures, good, bad)


@pytest.mark.slow
def test_generate_on_a_running_scheduler_writes_the_in_process_files(cluster, tmp_path):
    """The micro generate config with executor.address = the scheduler's tcp address: RANDSPG, relaxations and
    labels on the worker process; the same extxyz files, byte for byte, as the in-process run."""
    from test_generate import MICRO, _files

    from mtpjax.generate import pipeline
    from mtpjax.generate.config import config_from_dict

    _, address = cluster
    pipeline.run(config_from_dict(MICRO), tmp_path / "here", progress=False)
    m = pipeline.run(config_from_dict({**MICRO, "executor": {"kind": "dask", "address": address, "chunk_size": 4}}),
                     tmp_path / "there", progress=False)
    assert m["executor"] == {"relax_label": f"dask ({address})", "randspg": f"dask ({address})"}
    assert m["checkpoints"]["chunks"]["VOLMIN:computed"] > 1
    assert _files(tmp_path / "there") == _files(tmp_path / "here")


def _first(executor):
    return next(executor.imap(abs, [-1]))


def test_an_address_nobody_answers_names_the_field():
    import dask

    executor = DaskExecutor("tcp://127.0.0.1:9")  # the discard port: nothing listens
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(ConfigError, match=r"^executor\.address: no Dask scheduler answered at tcp://127\.0\.0\.1:9"):
            _first(executor)
    executor.close()


def test_a_missing_scheduler_file_names_the_field(tmp_path):
    executor = DaskExecutor(str(tmp_path / "scheduler.json"))
    with pytest.raises(ConfigError, match=r"^executor\.address: scheduler file .*scheduler\.json does not exist"):
        _first(executor)
    executor.close()
