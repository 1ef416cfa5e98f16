"""The one binary file format of mtpjax: a JSON header line, then equinox-serialised array leaves.

Used by trained potentials (``.mtpjax``, :func:`mtpjax.model.write_native`) and fit checkpoints
(:mod:`mtpjax.fit.checkpoint`). The header is one line of JSON holding at least ``format`` (what the file is) and
``version``; everything needed to build a template pytree of the right structure and shapes goes in the header too,
because :func:`equinox.tree_deserialise_leaves` fills a template and stores no structure of its own. The arrays follow
bit for bit (float64 stays float64), so what is written loads back exactly.

Writes are atomic (:func:`mtpjax.io.files.atomic_open`: a temporary file, fsync, a rename), so a crash or a full
disk leaves the old file in place. Every read error is a :class:`mtpjax.errors.FormatError` naming the file (and
line 1 for a header fault) with the caller's ``hint`` appended (such as "delete it to start afresh").
"""
from __future__ import annotations

import json

import equinox as eqx

from ..errors import FormatError
from .files import atomic_open


def write(path, fmt: str, version: int, header: dict, tree) -> None:
    """Write ``{"format": fmt, "version": version, **header}`` as one JSON line, then the leaves of ``tree``
    (atomically). ``header`` must be JSON-serialisable."""
    line = json.dumps({"format": fmt, "version": version, **header})
    with atomic_open(path, "wb") as f:
        f.write((line + "\n").encode())
        eqx.tree_serialise_leaves(f, tree)


def _fault(message: str, path, line, hint: str) -> FormatError:
    return FormatError(message + (f"; {hint}" if hint else ""), path, line)


def _header(f, path, fmt: str, version: int, what: str, hint: str) -> dict:
    try:
        header = json.loads(f.readline())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fault(f"not {what} (bad header: {err})", path, 1, hint) from err
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise _fault(f"not {what} (the first line must be a JSON header with format {fmt!r})", path, 1, hint)
    if header.get("version") != version:
        raise _fault(f"format version {header.get('version')} is not supported (this mtpjax reads version {version})",
                     path, 1, hint)
    return header


def read_header(path, fmt: str, version: int, what: str = "an mtpjax file", hint: str = "") -> dict:
    """The header of a file of format ``fmt`` and ``version``. ``what`` names the kind of file in messages
    ("an mtpjax potential"); a missing file raises OSError as open() does."""
    with open(path, "rb") as f:
        return _header(f, path, fmt, version, what, hint)


def read(path, fmt: str, version: int, like, what: str = "an mtpjax file", hint: str = ""):
    """(header, tree) of a file of format ``fmt``: ``like`` is a template pytree, or a function of the header
    that returns one (it may raise KeyError/TypeError/ValueError for an inconsistent header)."""
    with open(path, "rb") as f:
        header = _header(f, path, fmt, version, what, hint)
        if callable(like) and not isinstance(like, eqx.Module):
            try:
                like = like(header)
            except (KeyError, TypeError, ValueError) as err:
                raise _fault(f"inconsistent header ({type(err).__name__}: {err})", path, 1, hint) from err
        try:
            tree = eqx.tree_deserialise_leaves(f, like)
        except Exception as err:  # equinox raises many kinds for short or mismatched data
            raise _fault(f"the arrays after the header are truncated or corrupt ({type(err).__name__}: {err})",
                         path, None, hint) from err
    return header, tree
