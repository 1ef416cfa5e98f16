"""Shared fixtures: locations of ../shared and random MTPs built from MLIP's templates."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# The suite's time is mostly XLA compiling small programs once each: at LLVM's optimisation level 0 they compile
# about 30 % faster (the slowest tests: 306 -> 222 s) and compute the same numbers up to rounding (a level-16 cell:
# 2e-14 eV in 97 eV). Set before any test creates JAX's CPU backend (which reads XLA_FLAGS once), inherited by the
# subprocesses the tests start, and left out when the caller chose a level:
# ``XLA_FLAGS=--xla_backend_optimization_level=3 make test`` tests XLA's default build.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TEMPLATES = SHARED / "data" / "mtp_templates"
GOLDEN = SHARED / "golden" / "mlip"


def need(path: Path) -> Path:
    """Skip the test with a clear message when a file of ../shared is absent (e.g. a user's clone)."""
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (it lives in ../shared beside the repository)")
    return path


def random_mtp(level: int = 8, n_species: int = 1, rcut: float = 5.0, rmin: float = 2.0, seed: int = 0, scale: float = 1.0):
    """An MTP with MLIP's level-``level`` basis and random coefficients (deterministic in ``seed``)."""
    from mtpjax.io import read_mtp
    from mtpjax.model import mtp_from_arrays

    t = read_mtp(need(TEMPLATES / f"{level:02d}.almtp"))
    rng = np.random.default_rng(seed)
    K, R = t.radial_funcs_count, t.radial_basis_size
    return mtp_from_arrays(
        radial_coeffs=rng.uniform(-0.5, 0.5, (n_species, n_species, K, R)),
        species_coeffs=rng.normal(size=n_species),
        moment_coeffs=rng.normal(size=len(t.alpha_moment_mapping)) * 0.1 * scale,
        scaling=0.05,
        min_dist=rmin,
        max_dist=rcut,
        alpha_index_basic=t.alpha_index_basic,
        alpha_index_times=t.alpha_index_times,
        alpha_moment_mapping=t.alpha_moment_mapping,
        alpha_moments_count=t.alpha_moments_count,
    )


def pytest_configure(config):
    """Share compiled programs between the many Evaluators of a test process and the subprocesses its tests start
    (``mtpjax`` commands, notebooks) through JAX's persistent compilation cache, in a fresh temporary folder per
    process, unless the user configured one. The subprocesses get it as ``MTPJAX_CACHE_DIR``: they neither read
    nor fill the user's own cache (``~/.cache/mtpjax/jax``), so a run here compiles what a clean CI machine
    compiles, and the two xdist workers never write one folder at once. (A worker inherits the controller's
    variable, marked by ``MTPJAX_TEST_SESSION_CACHE``, and replaces it with its own folder.)"""
    import jax

    if not jax.config.jax_compilation_cache_dir:
        config._mtpjax_cache = tempfile.mkdtemp(prefix="mtpjax-jax-cache-")
        jax.config.update("jax_compilation_cache_dir", config._mtpjax_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        if os.environ.get("MTPJAX_CACHE_DIR") in (None, os.environ.get("MTPJAX_TEST_SESSION_CACHE")):
            os.environ["MTPJAX_CACHE_DIR"] = os.environ["MTPJAX_TEST_SESSION_CACHE"] = config._mtpjax_cache


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's in-memory compiled programs after each test module: a suite of a thousand tests would otherwise
    accumulate memory maps until the process limit (65,530) crashes XLA's compiler; later modules reload what they
    need from the session's persistent compilation cache."""
    yield
    import jax

    jax.clear_caches()


def pytest_unconfigure(config):
    """Remove the session's temporary compilation cache."""
    import shutil

    path = getattr(config, "_mtpjax_cache", None)
    if path:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def jax_cache_dir():
    import jax

    return jax.config.jax_compilation_cache_dir


@pytest.fixture(scope="session")
def zhou():
    """The Zhou 2004 EAM for Mg (a test module may define its own ``zhou``)."""
    from mtpjax.oracles import make_oracle

    return make_oracle({"type": "zhou", "element": "Mg"})


@pytest.fixture(scope="session")
def ref(zhou):
    """The Zhou EAM's relaxed hcp Mg (:func:`mtpjax.generate.reference.hcp_reference`), shared by the generator's and
    the relaxation module's tests."""
    from mtpjax.generate.reference import hcp_reference

    return hcp_reference(zhou, "Mg")


def load_script(name: str):
    """scripts/<name>.py as a module (scripts/ and experiments/ on sys.path, as when it is run from the repo)."""
    import importlib.util
    import sys

    root = Path(__file__).resolve().parents[1]
    for d in ("scripts", "experiments"):
        if str(root / d) not in sys.path:
            sys.path.insert(0, str(root / d))
    spec = importlib.util.spec_from_file_location(name, root / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
