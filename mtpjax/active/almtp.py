"""MLIP-3's active-set section of an ``.almtp`` file (``#MVS_v1.1``), read and written.

Layout, after the MTP text (``shared/docs/mtp-spec.md`` §1; the section as ``mlp train`` of MLIP-3 writes it):

    #MVS_v1.1
    energy_weight 1.0000000000000000e+00      (configuration mode; 0 in neighbourhood mode)
    force_weight 0.0000000000000000e+00
    stress_weight 0.0000000000000000e+00
    site_en_weight 0.0000000000000000e+00     (1 in neighbourhood mode)
    weight_scaling 2
    #<A: n·n float64, row-major><(A⁻¹)ᵀ: n·n float64>
    #
    <configuration index> <equation index>    (n lines; -1 -1 for an initial row)
    #
    <the selected configurations, MLIP's text cfg>

The energy rows are dE/dθ / N as in MLIP-2 (checked: the rows of the A stored by MLIP-3 for
``shared/bench/fit/mlip3_l16_rc6p5.almtp`` equal mtpjax's rows of the configurations stored with it to 1e-14).
LAMMPS's ML-MTP pair style reads the weights and the two matrices.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..errors import FormatError, MtpjaxError
from .maxvol import ActiveSet

MARK = b"#MVS_v1.1"
#: MLIP-3's initial active set: INIT_VALUE·I.
MLIP3_THRESHOLD_INIT = 1e-6
_KEYS = ("energy_weight", "force_weight", "stress_weight", "site_en_weight", "weight_scaling")


def parse_section(tail: bytes, n: int, path=None) -> dict:
    """The parts of an ``#MVS_v1.1`` section (``tail`` starts with it) of a potential with n parameters: ``weights``
    (dict), ``A`` and ``A_inv`` (n, n), ``links`` (n, 2) int, ``configurations`` (bytes of MLIP text cfg).
    FormatError naming ``path`` for anything malformed."""
    def bad(msg):
        return FormatError(f"active-set section ({MARK.decode()}): {msg}", path)

    if not tail.startswith(MARK):
        raise bad("missing")
    pos = len(MARK)
    weights = {}
    for key in _KEYS:
        end = tail.find(b"\n", pos + 1)
        words = tail[pos:end].split()
        if end < 0 or len(words) != 2 or words[0].decode(errors="replace") != key:
            raise bad(f"expected the line '{key} <number>'")
        weights[key] = float(words[1])
        pos = end
    if tail[pos:pos + 2] != b"\n#":
        raise bad("expected '#' before the matrices")
    pos += 2
    size = 8 * n * n
    if len(tail) < pos + 2 * size:
        raise bad(f"truncated: {2 * size} bytes of matrices expected for {n} parameters, {len(tail) - pos} present")
    A = np.frombuffer(tail[pos:pos + size], dtype="<f8").reshape(n, n).astype(np.float64)
    A_inv = np.frombuffer(tail[pos + size:pos + 2 * size], dtype="<f8").reshape(n, n).T.astype(np.float64)
    rest = tail[pos + 2 * size:]
    if not rest.startswith(b"\n#\n"):
        raise bad("expected '#' after the matrices (does the potential have as many parameters as the active set?)")
    lines = rest[3:].split(b"\n", n + 1)
    try:
        links = np.array([[int(w) for w in line.split()] for line in lines[:n]], dtype=np.int64).reshape(n, 2)
    except ValueError as err:
        raise bad(f"bad configuration links ({err})") from err
    if len(lines) <= n or not lines[n].startswith(b"#"):
        raise bad("expected '#' after the configuration links")
    configurations = lines[n + 1] if len(lines) > n + 1 else b""
    return {"weights": weights, "A": A, "A_inv": A_inv, "links": links, "configurations": configurations}


def mode_of(weights: dict, path=None) -> str:
    """"cfg" (energy rows only) or "nbh" (site-energy rows only); MtpjaxError for force or stress rows."""
    e, f, s, nbh = (weights[k] for k in _KEYS[:4])
    if f == 0 and s == 0 and e == 1 and nbh == 0:
        return "cfg"
    if f == 0 and s == 0 and e == 0 and nbh == 1:
        return "nbh"
    raise MtpjaxError(f"{path}: active sets with weights {weights} are not supported (only energy_weight = 1 or "
                      f"site_en_weight = 1, the rest 0)")


def read_active_set(path, mtp=None) -> ActiveSet | None:
    """The active set in the ``#MVS_v1.1`` section of an MLIP ``.almtp``/``.mtp`` file, or None without one. Its
    ``origin`` indexes the configurations stored in the section (:func:`read_selected`)."""
    from ..io import read_mtp
    from ..model import mtp_from_mtpfile
    from .compat import fingerprint

    f = read_mtp(path)
    if not f.tail:
        return None
    own = mtp_from_mtpfile(f)
    n = int(own.radial_coeffs.size + own.species_coeffs.size + own.moment_coeffs.size)
    part = parse_section(f.tail, n, path)
    mode = mode_of(part["weights"], path)
    links = part["links"]
    return ActiveSet(A=part["A"], A_inv=part["A_inv"], mode=mode, origin=links[:, 0].copy(),
                     threshold_init=MLIP3_THRESHOLD_INIT, fingerprint=fingerprint(own if mtp is None else mtp),
                     equation=links[:, 1].copy())


def read_selected(path) -> list:
    """The configurations stored in the ``#MVS_v1.1`` section of an MLIP potential file (list of Configurations)."""
    from ..io import read_cfg, read_mtp
    from ..model import mtp_from_mtpfile

    f = read_mtp(path)
    own = mtp_from_mtpfile(f)
    n = int(own.radial_coeffs.size + own.species_coeffs.size + own.moment_coeffs.size)
    data = parse_section(f.tail, n, path)["configurations"]
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "selected.cfg"
        p.write_bytes(data)
        return read_cfg(p)


def section_bytes(active: ActiveSet, training) -> bytes:
    """The ``#MVS_v1.1`` section of ``active``, whose ``origin`` indexes the Configurations ``training``; the
    configurations of the active set are stored after the links, each once, in training order (the links index
    this list; MLIP-3 keeps its own order)."""
    from ..io import write_cfg
    from ..io.cfg import Configuration

    used = sorted({o for o in active.origin.tolist() if o >= 0})  # in training order (any order is valid)
    if used and max(used) >= len(training):
        raise MtpjaxError(f"the active set refers to training configuration {max(used) + 1}, but {len(training)} were given")
    index = {o: k for k, o in enumerate(used)}
    weights = {"energy_weight": 1.0 if active.mode == "cfg" else 0.0, "force_weight": 0.0, "stress_weight": 0.0,
               "site_en_weight": 1.0 if active.mode == "nbh" else 0.0}
    out = [MARK + b"\n"]
    out += [f"{k} {v:.16e}\n".encode() for k, v in weights.items()]
    out.append(b"weight_scaling 2\n#")
    out.append(np.ascontiguousarray(active.A, dtype="<f8").tobytes())
    out.append(np.ascontiguousarray(active.A_inv.T, dtype="<f8").tobytes())
    out.append(b"\n#\n")
    for o, e in zip(active.origin.tolist(), active.equation.tolist()):
        out.append(f"{index[o]} {e}\n".encode() if o >= 0 else b"-1 -1\n")
    out.append(b"#\n")
    if used:
        cfgs = []
        for o in used:
            c = training[o]
            if not isinstance(c, Configuration):
                raise MtpjaxError("section_bytes: the training configurations must be mtpjax.io.Configuration objects")
            eqs = ",".join(str(e) for oo, e in zip(active.origin.tolist(), active.equation.tolist()) if oo == o)
            features = [f for f in c.features if f[0] != "selected_eqn_inds"] + [("selected_eqn_inds", eqs)]
            cfgs.append(Configuration(types=c.types, positions=c.positions, cell=c.cell, energy=c.energy,
                                      forces=c.forces, plus_stress=c.plus_stress, features=features, ids=c.ids))
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "selected.cfg"
            write_cfg(cfgs, p, precision="full")
            out.append(p.read_bytes())
    return b"".join(out)


def write_almtp(path, mtp, active: ActiveSet, training, potential_name: str = "MTP1m") -> None:
    """Write ``mtp`` as an MLIP ``.almtp`` text file with ``active`` as its ``#MVS_v1.1`` section (readable by
    :func:`read_active_set`; the layout MLIP-3 and LAMMPS's ML-MTP read)."""
    from ..io import write_mtp
    from ..model import mtp_to_mtpfile
    from .compat import check_active_set

    check_active_set(mtp, active)
    write_mtp(mtp_to_mtpfile(mtp, potential_name, tail=section_bytes(active, list(training))), path)
