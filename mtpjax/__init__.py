"""mtpjax: Moment Tensor Potentials as pure JAX functions.

float64 is switched on at import (or, when jax is not imported yet, as soon as it is: ``import mtpjax`` does not import
jax itself). Set ``MTPJAX_X64=0`` in the environment before importing mtpjax to keep JAX's float32 default (faster on
GPUs, not bit-compatible with MLIP).

Compiled programs are kept in a persistent JAX compilation cache, so a second run with the same shapes does
not compile again: ``$MTPJAX_CACHE_DIR`` or ``~/.cache/mtpjax/jax`` (``MTPJAX_CACHE_DIR=""`` or ``0`` turns it
off). A cache the user configured (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is left as it is, and an
unwritable folder silently means no cache.
"""
import os as _os
import sys as _sys


def _compilation_cache_dir():
    """The folder for JAX's persistent compilation cache, or None (disabled, configured by the user, unwritable)."""
    setting = _os.environ.get("MTPJAX_CACHE_DIR")
    if setting is not None and setting.strip() in ("", "0"):
        return None
    if _os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None  # the user's own cache
    jax = _sys.modules.get("jax")
    if jax is not None and getattr(jax, "config", None) is not None and jax.config.jax_compilation_cache_dir:
        return None  # configured in jax.config before mtpjax was imported
    path = _os.path.expanduser(setting or _os.path.join("~", ".cache", "mtpjax", "jax"))
    try:
        _os.makedirs(path, exist_ok=True)
        if not _os.access(path, _os.W_OK | _os.X_OK):
            return None
    except (OSError, ValueError):
        return None
    return path


def _configure_jax(jax):
    """float64 (unless ``MTPJAX_X64=0``) and the persistent compilation cache, on an imported jax."""
    if _os.environ.get("MTPJAX_X64", "1") != "0":
        jax.config.update("jax_enable_x64", True)
    path = _compilation_cache_dir()
    if path is None:
        return
    try:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except Exception:  # an older or newer jax without these options: run without the cache
        pass


class _ConfigureJaxOnImport:
    """A one-shot import hook: when ``jax`` is first imported, configure it right after its own ``__init__`` ran
    (before any array exists), so that ``import mtpjax`` itself does not pay the ~1.5 s of importing jax (``mtpjax
    --help`` does not need it). Removed from ``sys.meta_path`` as soon as jax is found."""

    def find_spec(self, name, path=None, target=None):
        if name != "jax":
            return None
        import importlib.util

        _sys.meta_path.remove(self)
        spec = importlib.util.find_spec("jax")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _configure_jax(module)

        spec.loader.exec_module = exec_module  # this spec's own loader instance only
        return spec


if "jax" in _sys.modules:
    _configure_jax(_sys.modules["jax"])
else:
    _sys.meta_path.insert(0, _ConfigureJaxOnImport())

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
