"""Content-addressed checkpoints of the pipeline (one file per stage chunk), written atomically.

A checkpoint is ``DIR/<stage>/<key>.pkl``: a first line holding the SHA-256 of the rest, then a pickle. The key
is a hash of everything the result depends on (stage, parameters, oracle, seed, input structures), so a resumed
run reuses exactly the work it already did, and a changed input never reuses stale work. Files are written to a
temporary name and renamed (a kill leaves either the old file or the new one, never half of one). A file whose
hash does not match is reported (warning naming the file) and recomputed. Writes go through
:func:`mtpjax.io.files.atomic_write` (temporary file, fsync, rename).
"""
from __future__ import annotations

import hashlib
import json
import pickle
import warnings
from pathlib import Path

import numpy as np

from ..io.files import atomic_write


def content_hash(*parts) -> str:
    """SHA-256 (hex, 32 chars) of JSON-able parts, numpy arrays and ase.Atoms (positions, cell, numbers, id)."""
    h = hashlib.sha256()

    def add(x):
        if hasattr(x, "get_positions") and hasattr(x, "cell"):
            for arr in (x.numbers, x.positions, x.cell.array, x.pbc):
                h.update(np.ascontiguousarray(arr).tobytes())
            h.update(str(x.info.get("id", "")).encode())
        elif isinstance(x, np.ndarray):
            h.update(np.ascontiguousarray(x).tobytes())
        elif isinstance(x, (list, tuple)) and x and not isinstance(x[0], (str, int, float, bool, type(None), dict)):
            for y in x:
                add(y)
        else:
            h.update(json.dumps(x, sort_keys=True, default=str).encode())
        h.update(b"|")

    for p in parts:
        add(p)
    return h.hexdigest()[:32]


class Store:
    """Checkpoints under one folder."""

    def __init__(self, root):
        self.root = Path(root)
        self.corrupt: list[str] = []  # files found corrupted (and recomputed)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.pkl"

    def load(self, stage: str, key: str):
        """The stored object, or None when absent or corrupted (corruption warns naming the file)."""
        p = self.path(stage, key)
        if not p.exists():
            return None
        raw = p.read_bytes()
        head, _, body = raw.partition(b"\n")
        if head.decode(errors="replace") != hashlib.sha256(body).hexdigest():
            warnings.warn(f"{p}: corrupted checkpoint (content hash mismatch); recomputing it")
            self.corrupt.append(str(p))
            return None
        try:
            return pickle.loads(body)
        except Exception as err:
            warnings.warn(f"{p}: unreadable checkpoint ({err}); recomputing it")
            self.corrupt.append(str(p))
            return None

    def save(self, stage: str, key: str, obj) -> None:
        body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        atomic_write(self.path(stage, key), hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
