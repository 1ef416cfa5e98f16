"""Any ASE calculator (EMT, ASE's EAM, a DFT code such as GPAW or VASP) as an oracle.

Not a JAX potential (no gradients through it): it labels structures on the host, each in its own worker
process of a :class:`concurrent.futures.ProcessPoolExecutor` (``n_workers`` > 1) or in this process
(``n_workers`` = 1). Each worker builds its calculator once, from a picklable *factory*:

- a string ``"module.Class"`` or ``"module:function"`` (called with ``params`` as keyword arguments);
- a dict ``{"calculator": "module.Class", "kwargs": {...}}`` (``params`` are merged into ``kwargs``);
- a module-level callable (pickled by reference).

Workers are started with the ``spawn`` method (forking a process that runs JAX's threads can deadlock). A
structure whose calculation raises, or whose worker dies, becomes an error result; the others go on.
Units: eV, eV/Å, eV/Å³ (ASE's stress, Voigt order xx yy zz yz xz xy); stress only for fully periodic cells.
"""
from __future__ import annotations

import importlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from ..errors import MtpjaxError
from .base import UNITS

_WORKER_CALC = None  # the calculator of this (worker) process


def import_object(path: str):
    """The object named ``"package.module.Name"`` or ``"package.module:Name"``."""
    if not isinstance(path, str) or not path.strip():
        raise MtpjaxError(f"expected a dotted name like 'ase.calculators.emt.EMT', got {path!r}")
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as e:
        raise MtpjaxError(f"cannot import {path!r}: {e}") from None
    return obj


def _name_of(factory) -> str:
    """A dotted name for a callable factory (for the spec)."""
    return f"{factory.__module__}:{factory.__qualname__}"


def build_calculator(factory, params: dict | None = None):
    """A calculator from a factory (string, dict spec or callable) and keyword ``params``."""
    kwargs = dict(params or {})
    if isinstance(factory, dict):
        unknown = set(factory) - {"calculator", "kwargs"}
        if "calculator" not in factory or unknown:
            raise MtpjaxError(f"an ASE calculator spec needs 'calculator' (and optionally 'kwargs'), got keys {sorted(factory)}")
        kwargs = {**factory.get("kwargs", {}), **kwargs}
        factory = factory["calculator"]
    if isinstance(factory, str):
        factory = import_object(factory)
    if not callable(factory):
        raise MtpjaxError(f"the calculator factory {factory!r} is not callable")
    return factory(**kwargs)


def _init_worker(factory, params):
    global _WORKER_CALC
    _WORKER_CALC = build_calculator(factory, params)


def _compute(atoms, calc=None):
    """(energy eV, forces (N, 3) eV/Å, stress (6,) eV/Å³ or None) of ``atoms`` with ``calc`` (default: this worker
    process's calculator); an exception becomes ("error", message)."""
    try:
        a = atoms.copy()
        a.calc = _WORKER_CALC if calc is None else calc
        e = float(a.get_potential_energy())
        f = np.array(a.get_forces(), dtype=float)
        s = np.array(a.get_stress(voigt=True), dtype=float) if a.pbc.all() else None
        return e, f, s
    except Exception as exc:  # noqa: BLE001 - any failure of the wrapped code is one structure's failure
        return "error", f"{type(exc).__name__}: {exc}"


class ASEOracle:
    """An ASE calculator as an oracle (see the module docstring).

    ``calculator``: the factory; ``species``: the elements it may be asked about (None: any, errors then come
    from the calculator); ``name``: for manifests; ``params``: keyword arguments of the factory (recorded in
    the spec); ``n_workers``: worker processes (1: label in this process).
    """

    def __init__(self, calculator, species=None, name: str | None = None, params: dict | None = None, n_workers: int = 1):
        if isinstance(calculator, dict):
            if "calculator" not in calculator:
                raise MtpjaxError(f"an ASE calculator spec needs 'calculator', got keys {sorted(calculator)}")
        elif not isinstance(calculator, str) and not callable(calculator):
            raise MtpjaxError(f"calculator must be a dotted name, a {{'calculator': ..., 'kwargs': ...}} dict or a callable, got {calculator!r}")
        if int(n_workers) < 1:
            raise MtpjaxError(f"n_workers must be >= 1, got {n_workers}")
        self.factory = calculator
        self.species = None if species is None else ((species,) if isinstance(species, str) else tuple(species))
        self.params = dict(params or {})
        self.n_workers = int(n_workers)
        self.name = name or f"ASE {self._factory_name()}"
        self._local = None

    def _factory_name(self) -> str:
        f = self.factory
        return f["calculator"] if isinstance(f, dict) else (f if isinstance(f, str) else _name_of(f))

    @property
    def cutoff(self):
        return None

    def make_calculator(self):
        """A fresh ASE calculator built from the factory."""
        return build_calculator(self.factory, self.params)

    def compute(self, structures, progress=None) -> list:
        """Label ``structures`` (ase.Atoms): per structure (energy, forces, stress or None) or ("error", message).
        ``progress(n_done, n_total)`` is called as results arrive."""
        n = len(structures)
        if n == 0:
            return []
        if self.n_workers == 1:
            if self._local is None:
                self._local = self.make_calculator()
            out = []
            for k, a in enumerate(structures):
                out.append(_compute(a, self._local))
                if progress is not None:
                    progress(k + 1, n)
            return out
        return self._compute_pool(structures, progress)

    def _compute_pool(self, structures, progress):
        name = self.factory.get("calculator") if isinstance(self.factory, dict) else self.factory
        if isinstance(name, str):
            import_object(name)  # fail here, clearly, rather than in every worker
        results: dict[int, tuple] = {}
        pending = list(range(len(structures)))
        isolate = False  # after a worker died: one structure per fresh pool, to find the culprit
        ctx = multiprocessing.get_context("spawn")
        while pending:
            batch = pending[:1] if isolate else pending
            workers = 1 if isolate else min(self.n_workers, len(batch))
            broken = []
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(self.factory, self.params)) as pool:
                futures = [(k, pool.submit(_compute, structures[k])) for k in batch]
                for k, fut in futures:
                    try:
                        results[k] = fut.result()
                    except BrokenProcessPool:
                        broken.append(k)
                    except Exception as exc:  # noqa: BLE001 (e.g. an unpicklable result)
                        results[k] = ("error", f"{type(exc).__name__}: {exc}")
                    if progress is not None and k in results:
                        progress(len(results), len(structures))
            if isolate and broken:
                results[broken[0]] = ("error", "the worker process died while labelling this structure")
                if progress is not None:
                    progress(len(results), len(structures))
            isolate = isolate or bool(broken)
            pending = [k for k in pending if k not in results]
        return [results[k] for k in range(len(structures))]

    @property
    def spec(self) -> dict:
        """JSON recipe for :func:`mtpjax.oracles.make_oracle` (a callable factory is recorded by its dotted name)."""
        f = self.factory
        calc = f["calculator"] if isinstance(f, dict) else (f if isinstance(f, str) else _name_of(f))
        kwargs = {**(f.get("kwargs", {}) if isinstance(f, dict) else {}), **self.params}
        return {"type": "ase", "calculator": calc, "kwargs": kwargs,
                "species": None if self.species is None else list(self.species), "name": self.name,
                "n_workers": self.n_workers}

    def describe(self) -> dict:
        import ase

        return {**self.spec, "units": UNITS, "ase_version": ase.__version__}
