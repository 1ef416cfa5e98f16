"""mtpjax's own potential format (``.mtpjax``): one JSON header line, then the equinox-serialised parameters.

The header holds the format version, the basis index arrays, the species and free-form metadata (how the
potential was fitted); the parameters follow bit for bit (float64), so a saved MTP loads back exactly. MLIP's
``.almtp`` stays the exchange format with MLIP and LAMMPS; this one keeps what ``.almtp`` has no room for.
"""
from __future__ import annotations

# The implementation lives in mtpjax.model, next to the MTP pytree it serialises (load_mtp/save_mtp dispatch to it).
from ..model import NATIVE_FORMAT as FORMAT
from ..model import NATIVE_SUFFIX as SUFFIX
from ..model import NATIVE_VERSION as VERSION
from ..model import read_native, write_native

__all__ = ["FORMAT", "VERSION", "SUFFIX", "read_native", "write_native"]
