"""The one checkpoint format of a fit (any number of stacked models).

A checkpoint is one JSON header line followed by the equinox serialisation of the loop's arrays (the stacked
models, the method's state, the stopped flags and the validation bookkeeping): the one header-plus-leaves format of
:mod:`mtpjax.io.eqxfile`, shared with ``.mtpjax`` potentials, written atomically. The header holds the step, the loss
histories and what the fit was for: its settings (``FitConfig`` as a dict, level, cutoff, r_min, seed, species, init, model names) and a sha256
digest of the training data. A resumed fit must have the same settings and data: :func:`check_resumable` raises
:class:`mtpjax.errors.MtpjaxError` naming every difference.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import MtpjaxError
from ..io import eqxfile

FORMAT = "mtpjax-fit-checkpoint"
VERSION = 1
#: The checkpoint's file name in a fit's work folder.
CHECKPOINT = "checkpoint.eqx"


def records_digest(records) -> str:
    """sha256 of labelled structures (in order): positions, cells, periodicity, types, energy, forces, virial,
    weight and subset tag of each (not its name, which holds the file it came from)."""
    h = hashlib.sha256(f"records|{len(records)}".encode())
    for r in records:
        for x in (r.positions, r.cell, r.pbc, r.types, r.forces, r.virial):
            if x is None:
                h.update(b"|-")
            else:
                a = np.ascontiguousarray(x)
                h.update(f"|{a.dtype.str}{a.shape}".encode())
                h.update(a.tobytes())
        h.update(f"|{r.energy!r}|{float(r.weight)!r}|{r.subset}".encode())
    return h.hexdigest()


def batches_digest(batches) -> str:
    """sha256 of packed batches (every array leaf, in order): the data digest of a fit given packed data only."""
    import jax

    h = hashlib.sha256(b"batches")
    for lb in batches:
        for x in jax.tree.leaves(lb):
            a = np.ascontiguousarray(np.asarray(x))
            h.update(f"|{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def jsonable(obj):
    """``obj`` as JSON would give it back (dataclasses as dicts, tuples as lists), for comparisons."""

    def default(o):
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    return json.loads(json.dumps(obj, default=default))


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dictionaries as one, with dotted keys (``fit.loss.force_weight``)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def setting_differences(old: dict, new: dict, old_label: str = "checkpoint", new_label: str = "now") -> list[str]:
    """'key: OLD (checkpoint) != NEW (now)' for every key of two settings dictionaries (nested) that differs."""
    a, b = flatten(jsonable(old)), flatten(jsonable(new))
    missing = "(absent)"
    return [f"{k}: {json.dumps(a[k]) if k in a else missing} ({old_label}) != {json.dumps(b[k]) if k in b else missing} ({new_label})"
            for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]


_HINT = "delete it to start afresh"


def save(path, header: dict, tree) -> None:
    """Write ``header`` (one JSON line) and the arrays of ``tree`` atomically (:mod:`mtpjax.io.eqxfile`)."""
    eqxfile.write(path, FORMAT, VERSION, header, tree)


def read_header(path) -> dict:
    """The header of a checkpoint (:class:`mtpjax.errors.FormatError`, an MtpjaxError naming the file, for an
    unreadable file or another format or version)."""
    try:
        return eqxfile.read_header(path, FORMAT, VERSION, what="a checkpoint of this mtpjax", hint=_HINT)
    except OSError as err:
        raise MtpjaxError(f"{path}: unreadable checkpoint ({err}); {_HINT}") from err


def load(path, like):
    """(header, arrays in the structure of ``like``) of a checkpoint."""
    try:
        return eqxfile.read(path, FORMAT, VERSION, like, what="a checkpoint of this mtpjax", hint=_HINT)
    except OSError as err:
        raise MtpjaxError(f"{path}: unreadable checkpoint ({err}); {_HINT}") from err


def check_resumable(path, settings: dict, data_digest: str, header: dict | None = None) -> dict:
    """Raise MtpjaxError naming every setting (and the training data) that differs between the checkpoint at ``path``
    and the fit about to resume from it; returns its header."""
    header = read_header(path) if header is None else header
    diffs = setting_differences(header.get("settings", {}), settings)
    if header.get("data") != data_digest:
        diffs.append(f"training data differ (digest {str(header.get('data'))[:16]} (checkpoint) != {data_digest[:16]} (now))")
    if diffs:
        raise MtpjaxError(f"{path}: cannot resume: the checkpoint is of another fit: " + "; ".join(diffs)
                          + f". Use another work folder, or delete {Path(path).name} to start afresh")
    return header
