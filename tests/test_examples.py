"""The example notebook (examples/quickstart.ipynb) runs from top to bottom and its results make sense.

The notebook is executed with nbclient in a kernel running *this* interpreter (a kernel spec written to a temporary
folder, so no other Python's ``python3`` kernel can be picked up), with tmp_path as its working directory. Its last
cell prints a JSON summary, which is checked here.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"
KERNEL = "mtpjax-examples-test"


def _prepend(path, var: str) -> str:
    return os.pathsep.join([str(path)] + [p for p in os.environ.get(var, "").split(os.pathsep) if p])


def _kernel_spec(tmp_path: Path, monkeypatch) -> str:
    """A kernel spec named KERNEL that starts ipykernel with sys.executable, found through JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mtpjax test kernel", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", _prepend(tmp_path / "jupyter", "JUPYTER_PATH"))
    # the kernel imports the mtpjax of this checkout even when it is not installed (the kernel's cwd is tmp_path)
    monkeypatch.setenv("PYTHONPATH", _prepend(ROOT, "PYTHONPATH"))
    return KERNEL


def test_notebook_is_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), \
        "clear the notebook's outputs before saving it (the test executes it)"
    assert any("summary" in c.metadata.get("tags", []) for c in code)


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))  # which Python ran it
    work = tmp_path / "work"
    work.mkdir()
    client = nbclient.NotebookClient(nb, timeout=600, startup_timeout=120, kernel_name=_kernel_spec(tmp_path, monkeypatch),
                                     resources={"metadata": {"path": str(work)}})
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the cell's traceback) if any cell fails
    wall = time.perf_counter() - t0

    def stdout(cell):
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")

    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert Path(stdout(nb.cells[-1]).strip()).resolve() == Path(sys.executable).resolve()

    (summary_cell,) = [c for c in nb.cells if "summary" in c.metadata.get("tags", [])]
    s = json.loads(stdout(summary_cell))
    print(f"notebook executed in {wall:.1f} s: {json.dumps(s)}")

    # outputs landed in the working directory
    assert (work / "quickstart_out" / "data" / "EVERYTHING.extxyz").exists()
    assert (work / "quickstart_out" / "fit" / "mg.mtpjax").exists()
    # figures shown inline: the loss curve, the E-V curve and the MD traces
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3

    assert 20 <= s["n_structures"] <= 200
    for key in ("train_energy_rmse_meV_per_atom", "train_force_rmse_eV_per_A", "train_stress_rmse_GPa", "ev_rmse_meV_per_atom"):
        assert math.isfinite(s[key]) and s[key] >= 0, key
    assert s["train_force_rmse_eV_per_A"] < 0.5
    assert s["train_energy_rmse_meV_per_atom"] < 200
    assert s["ev_rmse_meV_per_atom"] < 100  # MTP vs oracle within ±10 % of the equilibrium volume

    assert s["md_energy_check_eV"] < 1e-8  # mtpjax.md's energy function gives the calculator's energy
    assert s["md_steps"] >= 300
    # velocities drawn at 600 K, about half of it going into potential energy: ~300 K with 64 atoms, fluctuating by
    # tens of K, never melting or freezing
    assert 200 < s["md_mean_T_K"] < 420
    assert 0 < s["md_T_min_K"] and s["md_T_max_K"] < 1000
    # NVE conserves the total energy (velocity Verlet, dt = 2 fs)
    assert s["nve_energy_max_deviation_meV_per_atom"] < 1.0
    assert abs(s["nve_energy_drift_meV_per_atom_per_ps"]) < 1.0
