"""mtpjax: Moment Tensor Potentials as pure JAX functions.

float64 is switched on at import. Set ``MTPJAX_X64=0`` in the environment before importing
mtpjax to keep JAX's float32 default (faster on GPUs, not bit-compatible with MLIP).

Compiled programs are kept in a persistent JAX compilation cache, so a second run with the same shapes does
not compile again: ``$MTPJAX_CACHE_DIR`` or ``~/.cache/mtpjax/jax`` (``MTPJAX_CACHE_DIR=""`` or ``0`` turns it
off). A cache the user configured (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is left as it is, and an
unwritable folder silently means no cache.
"""
import os as _os

import jax as _jax

if _os.environ.get("MTPJAX_X64", "1") != "0":
    _jax.config.update("jax_enable_x64", True)


def _compilation_cache_dir():
    """The folder for JAX's persistent compilation cache, or None (disabled, configured by the user, unwritable)."""
    setting = _os.environ.get("MTPJAX_CACHE_DIR")
    if setting is not None and setting.strip() in ("", "0"):
        return None
    if _os.environ.get("JAX_COMPILATION_CACHE_DIR") or _jax.config.jax_compilation_cache_dir:
        return None  # the user's own cache
    path = _os.path.expanduser(setting or _os.path.join("~", ".cache", "mtpjax", "jax"))
    try:
        _os.makedirs(path, exist_ok=True)
        if not _os.access(path, _os.W_OK | _os.X_OK):
            return None
    except (OSError, ValueError):
        return None
    return path


def _enable_compilation_cache():
    path = _compilation_cache_dir()
    if path is None:
        return
    try:
        _jax.config.update("jax_compilation_cache_dir", path)
        _jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
        _jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except Exception:  # an older or newer jax without these options: run without the cache
        pass


_enable_compilation_cache()

__version__ = "0.1.0"

#: The public API: name -> the module that defines it. Each is imported on first use (PEP 562), so ``import mtpjax``
#: and the command line stay fast; ``from mtpjax import X`` and ``mtpjax.X`` work for every name here.
_PUBLIC = {
    # errors
    "MtpjaxError": "errors", "FormatError": "errors", "StructureError": "errors", "ConfigError": "errors",
    # the model and the potential protocol (energies in eV, forces eV/Å, virial eV)
    "MTP": "model", "load_mtp": "model", "save_mtp": "model", "Potential": "potential", "energy": "potential",
    "energy_forces_virial": "potential", "site_energies": "potential", "neighbour_list": "neighbors",
    "Neighbours": "neighbors", "generate_basis": "basis",
    # ASE
    "MTPCalculator": "calculator", "PotentialCalculator": "calculator",
    # files
    "read_structures": "io", "write_structures": "io", "read_cfg": "io", "write_cfg": "io", "read_mtp": "io",
    "write_mtp": "io",
    # oracles and labels
    "make_oracle": "oracles", "make_potential": "oracles", "get_calculator": "oracles", "label": "oracles",
    # training data and fitting
    "Record": "data", "load_records": "data", "records_from_atoms": "data", "FitConfig": "fit", "LossConfig": "fit",
    "train_potential": "fit", "train_potentials": "fit", "run_sweep": "sweep",
    # the study
    "GenerateConfig": "generate", "RunConfig": "pipeline", "load_run_config": ("pipeline", "load_config"),
    "run_study": ("pipeline", "run"),
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name):
    target = _PUBLIC.get(name)
    if target is None:
        raise AttributeError(f"module 'mtpjax' has no attribute {name!r}")
    import importlib

    module, attr = (target, name) if isinstance(target, str) else target
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value  # looked up once
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
