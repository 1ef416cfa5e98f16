"""Oracles from JSON-able specs (config files, dataset manifests), and ASE calculators from oracles.

Specs (every key but ``type`` optional unless marked):

- ``{"type": "zhou", "elements": ["Mg"]}`` (or ``"element": "Mg"``; ``cutoff``, ``smooth_width``, ``parameters``);
- ``{"type": "eam", "file": PATH}`` (required ``file``; ``form``, ``species``, ``zz_to_rphi``);
- ``{"type": "lj", "epsilon": 0.01032, "sigma": 3.40, "cutoff": 8.5, "shift": false}`` (``onset``, ``species``);
- ``{"type": "ase", "calculator": "ase.calculators.emt.EMT", "kwargs": {...}}`` (``species``, ``name``, ``n_workers``).

Strings: ``"zhou"``, ``"zhou:Mg"``, ``"zhou:Cu,Ag"``, ``"lj"``, ``"eam:PATH"``, a path ending in one of
:data:`EAM_SUFFIXES`, ``"ase:module.Class"``, or a JSON object. ``oracle.spec`` round-trips through
:func:`make_oracle`. Trained MTP files (:data:`MTP_SUFFIXES`) are potentials, not oracles: see
:func:`mtpjax.oracles.make_potential`, which takes every spec here too.
"""
from __future__ import annotations

import json

from ..errors import MtpjaxError
from .ase_oracle import ASEOracle
from .base import Oracle
from .eam_tabulated import TabulatedEAM
from .lj import LennardJones
from .zhou import ZhouEAM

#: The project's default oracle: the Zhou 2004 EAM for Mg (LAMMPS's create.f conventions, hard cutoff 7.147 Å).
DEFAULT_ORACLE = {"type": "zhou", "elements": ["Mg"]}

#: File names of tabulated EAM potentials (the form follows the name: see :func:`mtpjax.oracles.eam_tabulated.guess_form`).
EAM_SUFFIXES = (".eam", ".eam.alloy", ".eam.fs", ".alloy", ".fs", ".setfl")
#: File names of trained MTPs (:func:`mtpjax.model.load_mtp`): MLIP's text formats and mtpjax's own.
MTP_SUFFIXES = (".almtp", ".mtp", ".mtpjax")


def is_eam_file(spec) -> bool:
    """Whether ``spec`` (str or Path) names a tabulated EAM file by its suffix (:data:`EAM_SUFFIXES`)."""
    return str(spec).strip().lower().endswith(EAM_SUFFIXES)


def is_mtp_file(spec) -> bool:
    """Whether ``spec`` (str or Path) names a trained MTP file by its suffix (:data:`MTP_SUFFIXES`)."""
    return str(spec).strip().lower().endswith(MTP_SUFFIXES)

_KEYS = {
    "zhou": {"elements", "element", "cutoff", "smooth_width", "parameters"},
    "eam": {"file", "form", "species", "zz_to_rphi"},
    "lj": {"epsilon", "sigma", "cutoff", "shift", "onset", "species"},
    "ase": {"calculator", "kwargs", "species", "name", "n_workers", "params"},
}


def _from_string(s: str) -> dict:
    s = s.strip()
    if s.startswith("{"):
        try:
            return json.loads(s)
        except json.JSONDecodeError as e:
            raise MtpjaxError(f"oracle spec {s!r} is not valid JSON: {e}") from None
    kind, _, arg = s.partition(":")
    kind = kind.lower()
    if kind == "zhou":
        return {"type": "zhou", "elements": arg.split(",") if arg else ["Mg"]}
    if kind == "lj" and not arg:
        return {"type": "lj"}
    if kind == "eam" and arg:
        return {"type": "eam", "file": arg}
    if kind == "ase" and arg:
        return {"type": "ase", "calculator": arg}
    if is_eam_file(s):
        return {"type": "eam", "file": s}
    if is_mtp_file(s):
        raise MtpjaxError(f"{s!r} is a trained MTP, not an oracle: load it with mtpjax.oracles.make_potential")
    raise MtpjaxError(f"unknown oracle {s!r}; use zhou[:El,El], lj, eam:FILE, a file ending in {', '.join(EAM_SUFFIXES)}, "
                      "ase:module.Class or a JSON spec")


def make_oracle(spec=None):
    """An oracle from a spec dict or string (see the module docstring); None gives :data:`DEFAULT_ORACLE`; an
    oracle object is returned as is."""
    if spec is None:
        spec = DEFAULT_ORACLE
    if isinstance(spec, str):
        spec = _from_string(spec)
    if not isinstance(spec, dict):
        if isinstance(spec, Oracle):
            return spec
        raise MtpjaxError(f"an oracle spec must be a dict or a string, got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in _KEYS:
        raise MtpjaxError(f"unknown oracle type {kind!r}; known: {sorted(_KEYS)}")
    kw = {k: v for k, v in spec.items() if k != "type"}
    unknown = sorted(set(kw) - _KEYS[kind])
    if unknown:
        raise MtpjaxError(f"oracle type {kind!r}: unknown key(s) {unknown}; allowed: {sorted(_KEYS[kind])}")
    if kind == "zhou":
        if "element" in kw and "elements" in kw:
            raise MtpjaxError("give either 'element' or 'elements' for the Zhou EAM")
        elements = kw.pop("elements", None) or kw.pop("element", "Mg")
        return ZhouEAM(elements, **kw)
    if kind == "eam":
        if not kw.get("file"):
            raise MtpjaxError(f"an 'eam' oracle needs 'file' (a file ending in {', '.join(EAM_SUFFIXES)})")
        return TabulatedEAM.from_file(kw.pop("file"), **kw)
    if kind == "lj":
        return LennardJones(**{k: v for k, v in kw.items() if v is not None or k == "onset"})
    if "calculator" not in kw:
        raise MtpjaxError("an 'ase' oracle needs 'calculator' (e.g. 'ase.calculators.emt.EMT')")
    params = {**kw.pop("kwargs", {}), **kw.pop("params", {})}
    return ASEOracle(kw.pop("calculator"), params=params, **kw)


def get_calculator(oracle):
    """An ASE calculator for any oracle: :class:`mtpjax.calculator.PotentialCalculator` for a JAX oracle, the
    wrapped calculator for an :class:`ASEOracle`."""
    if isinstance(oracle, ASEOracle):
        return oracle.make_calculator()
    from ..calculator import PotentialCalculator

    return PotentialCalculator(oracle)
