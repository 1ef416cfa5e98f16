"""How the pipeline sees an oracle (:mod:`mtpjax.oracles`): a JAX potential (relaxed and labelled in packed
batches, in-process) or an :class:`~mtpjax.oracles.ASEOracle` (an ASE calculator: relaxed structure by structure
in worker processes or on Dask). Oracles are made from the config's ``[oracle]`` table by
:func:`mtpjax.oracles.make_oracle`; worker processes get them pickled or, failing that, rebuilt from ``spec``.
"""
from __future__ import annotations

import json
import pickle

from ..errors import ConfigError, MtpjaxError
from ..oracles import ASEOracle, Oracle, get_calculator, make_oracle
from ..potential import Potential

_BUILT: dict = {}  # per process: spec json -> oracle; id(oracle) -> calculator


def is_jax(oracle) -> bool:
    """Whether the oracle is a JAX potential (batched relaxations and labels)."""
    return isinstance(oracle, Potential)


def make(spec: dict):
    """The oracle of a config's [oracle] table. Errors name the config field."""
    key = json.dumps(spec, sort_keys=True)
    if key not in _BUILT:
        try:
            _BUILT[key] = make_oracle(dict(spec))
        except (MtpjaxError, ValueError, KeyError, TypeError) as err:
            el = spec.get("element") or spec.get("elements")
            field = "element" if el and str(el).strip("[]'\"") in str(err) else "oracle"
            raise ConfigError(field, f"cannot make the oracle {spec}: {err}") from None
    return _BUILT[key]


def calculator(oracle):
    """An ASE calculator for the oracle, built once per process."""
    spec = getattr(oracle, "spec", None)
    key = ("calc", json.dumps(spec, sort_keys=True, default=str) if isinstance(spec, dict) else id(oracle))
    if key not in _BUILT:
        _BUILT[key] = (oracle, get_calculator(oracle))
    return _BUILT[key][1]


def check_element(oracle, element: str) -> None:
    """ConfigError naming ``element`` when the oracle states its species and ``element`` is not among them."""
    sp = getattr(oracle, "species", None)
    if sp is not None and element not in tuple(sp):
        raise ConfigError("element", f"{element!r} is unknown to the oracle {getattr(oracle, 'name', '')} (it knows {list(sp)})")


def describe(oracle) -> dict:
    """The oracle's manifest entry (spec, name, parameters, units)."""
    if isinstance(oracle, Oracle):
        return json.loads(json.dumps(oracle.describe(), default=str))
    return {"class": f"{type(oracle).__module__}.{type(oracle).__qualname__}"}


def single_process(oracle):
    """The oracle for use inside one worker: an ASEOracle with several workers of its own becomes a one-process one."""
    if isinstance(oracle, ASEOracle) and oracle.n_workers > 1:
        return make_oracle({**oracle.spec, "n_workers": 1})
    return oracle


def portable(oracle):
    """What to send to worker processes: the oracle itself if it pickles, else its spec (see :func:`resolve`)."""
    try:
        pickle.dumps(oracle)
        return oracle
    except Exception as err:
        spec = getattr(oracle, "spec", None)
        if isinstance(spec, dict):
            return {"__oracle_spec__": spec}
        raise MtpjaxError(f"the oracle {type(oracle).__name__} can neither be pickled ({err}) nor has a spec; "
                          "run it in-process (executor.kind = 'jax')") from None


def resolve(ref):
    """The oracle of a :func:`portable` reference (built once per process)."""
    if isinstance(ref, dict) and "__oracle_spec__" in ref:
        return make(ref["__oracle_spec__"])
    return ref
