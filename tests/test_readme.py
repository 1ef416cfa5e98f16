"""The README's Python examples run as written, in order, in one session, and their results make sense; the public
API (``mtpjax.__all__``) resolves and stays lazy."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mtpjax

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_python_examples_run_as_written(tmp_path, monkeypatch):
    blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) == 3, "tests/test_readme.py expects the README's three Python examples"
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__readme__"}
    for code in blocks:
        exec(compile(code, "README.md", "exec"), ns)  # noqa: S102 (the README's own code)
    # the fit wrote what the README says, where it says
    assert {p.name for p in tmp_path.iterdir()} >= {"pot.almtp", "pot.mtpjax", "pot.fit"}
    assert {"checkpoint.eqx", "metrics.jsonl", "result.json", "loss.png"} <= {p.name for p in (tmp_path / "pot.fit").iterdir()}
    rmse = ns["result"]["train"]["all"]
    assert rmse["energy"] < 5.0 and rmse["forces"] < 0.05  # meV/atom, eV/Å on its own training data
    # the padded pure-function result is the calculator's (an independent path: ASE calculator over the .almtp)
    atoms, n, F = ns["atoms"], ns["n"], np.asarray(ns["F"])
    assert F.shape == (ns["n_pad"], 3) and ns["n_pad"] > n == 36
    assert np.all(F[n:] == 0.0)
    np.testing.assert_allclose(np.asarray(ns["forces"]), atoms.get_forces(), atol=1e-10)
    assert float(ns["E"]) == pytest.approx(atoms.get_potential_energy(), abs=1e-8)
    # and close to the oracle it was fitted to, on a cell it never saw
    ref = atoms.copy()
    ref.calc = mtpjax.get_calculator(ns["oracle"])
    assert abs(float(ns["E"]) - ref.get_potential_energy()) / n < 0.01  # eV/atom
    # the parameter gradient is an MTP-shaped pytree of finite numbers
    grads = ns["dE_dparams"]
    assert type(grads).__name__ == "MTP" and np.isfinite(np.asarray(grads.moment_coeffs)).all()


def test_public_names_resolve_and_import_lazily():
    missing = [name for name in mtpjax.__all__ if not hasattr(mtpjax, name)]
    assert not missing
    assert set(mtpjax.__all__) <= set(dir(mtpjax))
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        mtpjax.not_a_name  # noqa: B018
    # `import mtpjax` loads none of the heavy subpackages; the first use of a name loads its module only
    # (not even jax: float64 is switched on by an import hook when jax is first imported, before any array exists)
    code = ("import sys, mtpjax; heavy = [m for m in ('jax', 'mtpjax.fit', 'mtpjax.model', 'mtpjax.oracles', 'mtpjax.verify',"
            " 'phonopy', 'pyxtal', 'matplotlib') if m in sys.modules]; print(heavy); mtpjax.FitConfig;"
            " print('mtpjax.fit' in sys.modules, 'mtpjax.verify' in sys.modules);"
            " import jax.numpy as jnp; print(jnp.zeros(1).dtype, jnp.asarray(1.0).dtype)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"MTPJAX_CACHE_DIR": "0", "PATH": "/usr/bin:/bin"}).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "True False" and out[2] == "float64 float64", out
