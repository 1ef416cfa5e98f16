"""mtpjax's own potential format (``.mtpjax``): one JSON header line, then the equinox-serialised parameters.

The header holds the format version, the basis index arrays, the species and free-form metadata (how the
potential was fitted); the parameters follow bit for bit (float64), so a saved MTP loads back exactly. MLIP's
``.almtp`` stays the exchange format with MLIP and LAMMPS; this one keeps what ``.almtp`` has no room for.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import equinox as eqx
import numpy as np

from ..errors import FormatError

FORMAT = "mtpjax-potential"
VERSION = 1
SUFFIX = ".mtpjax"


def write_native(mtp, path, metadata: dict | None = None) -> None:
    """Write an :class:`mtpjax.model.MTP` (atomically) with optional JSON-serialisable ``metadata``."""
    basic, times, mapping, nm = mtp.plan.source
    header = {
        "format": FORMAT,
        "version": VERSION,
        "species": list(mtp.species) if mtp.species else None,
        "radial_coeffs_shape": list(mtp.radial_coeffs.shape),
        "n_basis": int(mtp.moment_coeffs.shape[0]),
        "alpha_moments_count": int(nm),
        "alpha_index_basic": np.asarray(basic).tolist(),
        "alpha_index_times": np.asarray(times).tolist(),
        "alpha_moment_mapping": np.asarray(mapping).tolist(),
        "metadata": metadata or {},
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write((json.dumps(header) + "\n").encode())
        eqx.tree_serialise_leaves(f, mtp)
    os.replace(tmp, path)


def read_native(path, species=None):
    """Read a ``.mtpjax`` file: returns (MTP, metadata dict). ``species`` overrides the stored element list."""
    from ..model import mtp_from_arrays

    path = Path(path)
    with open(path, "rb") as f:
        try:
            header = json.loads(f.readline())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise FormatError(f"not an mtpjax potential (bad header: {err})", path, 1) from err
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise FormatError(f"not an mtpjax potential (the first line must be a JSON header with format {FORMAT!r})", path, 1)
        if header.get("version") != VERSION:
            raise FormatError(f"format version {header.get('version')} is not supported (this mtpjax reads version {VERSION})", path, 1)
        try:
            S, _, K, R = header["radial_coeffs_shape"]
            species = species if species is not None else header["species"]
            like = mtp_from_arrays(
                radial_coeffs=np.zeros((S, S, K, R)),
                species_coeffs=np.zeros(S),
                moment_coeffs=np.zeros(header["n_basis"]),
                scaling=1.0,
                min_dist=0.0,
                max_dist=1.0,
                alpha_index_basic=np.asarray(header["alpha_index_basic"], dtype=np.int64).reshape(-1, 4),
                alpha_index_times=np.asarray(header["alpha_index_times"], dtype=np.int64).reshape(-1, 4),
                alpha_moment_mapping=np.asarray(header["alpha_moment_mapping"], dtype=np.int64),
                alpha_moments_count=header["alpha_moments_count"],
                species=species,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise FormatError(f"inconsistent header ({type(err).__name__}: {err})", path, 1) from err
        try:
            mtp = eqx.tree_deserialise_leaves(f, like)
        except Exception as err:
            raise FormatError(f"the parameters after the header are truncated or corrupt ({type(err).__name__}: {err})", path) from err
    return mtp, header.get("metadata", {})
