"""MLIP's potential file (``.mtp`` / ``.almtp``): reading, validation and exact writing.

Layout (see ``shared/docs/mtp-spec.md`` section 1)::

    MTP
    version = 1.1.0
    potential_name = MTP1m
    scaling = ...                      (optional, default 1)
    species_count = S
    potential_tag =
    radial_basis_type = RBChebyshev
        min_dist = r_min               (Å)
        max_dist = R_cut               (Å)
        radial_basis_size = R
        radial_funcs_count = K
        radial_coeffs                  (trained only: S*S blocks "a-b", each K rows of R numbers)
    alpha_moments_count = n
    alpha_index_basic_count = nb
    alpha_index_basic = {{mu, a, b, c}, ...}
    alpha_index_times_count = nt
    alpha_index_times = {{p, q, m, o}, ...}
    alpha_scalar_moments = ns
    alpha_moment_mapping = {...}
    species_coeffs = {...}             (trained only, S numbers, eV)
    moment_coeffs = {...}              (trained only, ns numbers, eV)
    #MVS_v1.1 ...                      (.almtp only: binary active-set data, kept verbatim)

Parsing tolerates any indentation (spaces or tabs), keys in any order, CRLF line ends and arrays
that continue over several lines. Every malformed input raises :class:`mtpjax.errors.FormatError`
naming the file and the 1-based line.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import MISSING, dataclass

import numpy as np

from mtpjax.errors import FormatError

from .files import atomic_write

__all__ = ["MTPFile", "read_mtp", "write_mtp", "mtp_to_bytes", "RADIAL_BASIS_TYPES"]

RADIAL_BASIS_TYPES = ("RBChebyshev", "RBChebyshev_repuls")
_TAIL_MARK = b"#MVS_v"
_BLOCK_RE = re.compile(r"^(\d+)\s*-\s*(\d+)$")
_ROWS_SPLIT_RE = re.compile(r"\}\s*,\s*\{")

_INT_KEYS = (
    "species_count", "radial_basis_size", "radial_funcs_count", "alpha_moments_count",
    "alpha_index_basic_count", "alpha_index_times_count", "alpha_scalar_moments",
)
_FLOAT_KEYS = ("scaling", "min_dist", "max_dist")
_STR_KEYS = ("version", "potential_name", "potential_tag", "radial_basis_type")
_ARRAY_KEYS = ("alpha_index_basic", "alpha_index_times", "alpha_moment_mapping", "species_coeffs", "moment_coeffs")
_KNOWN_KEYS = frozenset(_INT_KEYS + _FLOAT_KEYS + _STR_KEYS + _ARRAY_KEYS)
_REQUIRED_KEYS = (
    "species_count", "radial_basis_type", "min_dist", "max_dist", "radial_basis_size", "radial_funcs_count",
    "alpha_moments_count", "alpha_index_basic_count", "alpha_index_basic", "alpha_index_times_count",
    "alpha_index_times", "alpha_scalar_moments", "alpha_moment_mapping",
)


def _arr_equal(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b))


@dataclass(eq=False, kw_only=True)
class MTPFile:
    """The contents of an MTP potential file.

    Lengths in Å, coefficients in eV (``species_coeffs``, ``moment_coeffs``; radial coefficients are
    dimensionless weights of the Chebyshev basis, which ``scaling`` multiplies). ``radial_coeffs[a, b]``
    is the block ``a-b`` of the file (a = central-atom type, b = neighbour type), shape (S, S, K, R).
    The coefficient arrays are all None for an untrained template. ``tail`` holds everything from the
    line ``#MVS_v1.1`` on (the binary active-set section of ``.almtp``), verbatim; b"" if none.
    Constructing an instance runs :meth:`validate`.
    """

    species_count: int
    min_dist: float
    max_dist: float
    radial_basis_size: int
    radial_funcs_count: int
    alpha_moments_count: int
    alpha_index_basic: np.ndarray
    alpha_index_times: np.ndarray
    alpha_moment_mapping: np.ndarray
    version: str = "1.1.0"
    potential_name: str = "MTP1m"
    scaling: float = 1.0
    potential_tag: str = ""
    radial_basis_type: str = "RBChebyshev"
    radial_coeffs: np.ndarray | None = None
    species_coeffs: np.ndarray | None = None
    moment_coeffs: np.ndarray | None = None
    tail: bytes = b""

    def __post_init__(self):
        self._coerce()
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def is_trained(self) -> bool:
        """True when the file carries radial, species and moment coefficients."""
        return self.radial_coeffs is not None

    @property
    def alpha_index_basic_count(self) -> int:
        return int(self.alpha_index_basic.shape[0])

    @property
    def alpha_index_times_count(self) -> int:
        return int(self.alpha_index_times.shape[0])

    @property
    def alpha_scalar_moments(self) -> int:
        return int(self.alpha_moment_mapping.shape[0])

    def __eq__(self, other):
        if not isinstance(other, MTPFile):
            return NotImplemented
        for name in ("version", "potential_name", "scaling", "species_count", "potential_tag",
                     "radial_basis_type", "min_dist", "max_dist", "radial_basis_size",
                     "radial_funcs_count", "alpha_moments_count", "tail"):
            if getattr(self, name) != getattr(other, name):
                return False
        return all(_arr_equal(getattr(self, n), getattr(other, n)) for n in (
            "alpha_index_basic", "alpha_index_times", "alpha_moment_mapping",
            "radial_coeffs", "species_coeffs", "moment_coeffs"))

    # --------------------------------------------------------------- validation
    def _coerce(self):
        def ints(x, ndim):
            a = np.asarray(x)
            if a.size == 0:
                return np.zeros((0, 4) if ndim == 2 else (0,), dtype=np.int64)
            if not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"index arrays must be integer, got dtype {a.dtype}")
            return a.astype(np.int64)

        self.alpha_index_basic = ints(self.alpha_index_basic, 2)
        self.alpha_index_times = ints(self.alpha_index_times, 2)
        self.alpha_moment_mapping = ints(self.alpha_moment_mapping, 1)
        for name in ("radial_coeffs", "species_coeffs", "moment_coeffs"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, np.asarray(v, dtype=np.float64))
        if not isinstance(self.tail, (bytes, bytearray)):
            raise ValueError("tail must be bytes")
        self.tail = bytes(self.tail)

    def validate(self) -> None:
        """Check counts, shapes and every index range; raise FormatError on the first fault."""
        self._validate(None, {})

    def _validate(self, path, lines: dict) -> None:  # noqa: C901 (a flat list of checks)
        def fail(key, msg):
            raise FormatError(msg, path=path, line=lines.get(key))

        for key in _STR_KEYS:
            v = getattr(self, key)
            if not isinstance(v, str) or "\n" in v or "\r" in v:
                fail(key, f"{key}: expected a one-line string, got {v!r}")
        if self.radial_basis_type not in RADIAL_BASIS_TYPES:
            fail("radial_basis_type", f"radial_basis_type: expected one of {', '.join(RADIAL_BASIS_TYPES)}, "
                                      f"got {self.radial_basis_type!r}")
        if not self.version.strip():
            fail("version", "version: expected a version string such as 1.1.0")
        for key in _FLOAT_KEYS:
            v = getattr(self, key)
            if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                fail(key, f"{key}: expected a finite number, got {v!r}")
        if not self.scaling > 0:
            fail("scaling", f"scaling: expected a positive number, got {self.scaling!r}")
        if not 0 <= self.min_dist < self.max_dist:
            fail("max_dist", f"expected 0 <= min_dist < max_dist, got min_dist={self.min_dist!r}, "
                             f"max_dist={self.max_dist!r}")
        for key in ("species_count", "radial_basis_size", "radial_funcs_count", "alpha_moments_count"):
            v = getattr(self, key)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                fail(key, f"{key}: expected a positive integer, got {v!r}")
        S, K, R, n = self.species_count, self.radial_funcs_count, self.radial_basis_size, self.alpha_moments_count

        basic = self.alpha_index_basic
        if basic.ndim != 2 or basic.shape[1] != 4 or basic.shape[0] < 1:
            fail("alpha_index_basic", f"alpha_index_basic: expected a non-empty list of {{mu, a, b, c}} entries, "
                                      f"got shape {basic.shape}")
        nb = basic.shape[0]
        if nb > n:
            fail("alpha_index_basic", f"alpha_index_basic has {nb} entries, more than alpha_moments_count = {n}")
        bad = np.flatnonzero((basic[:, 0] < 0) | (basic[:, 0] >= K))
        if bad.size:
            i = int(bad[0])
            fail("alpha_index_basic", f"alpha_index_basic entry {i} {basic[i].tolist()}: expected mu in "
                                      f"[0, radial_funcs_count={K})")
        bad = np.flatnonzero((basic[:, 1:] < 0).any(axis=1))
        if bad.size:
            i = int(bad[0])
            fail("alpha_index_basic", f"alpha_index_basic entry {i} {basic[i].tolist()}: expected exponents >= 0")

        times = self.alpha_index_times
        if times.ndim != 2 or times.shape[1] != 4:
            fail("alpha_index_times", f"alpha_index_times: expected a list of {{p, q, m, o}} entries, "
                                      f"got shape {times.shape}")
        if times.shape[0]:
            p, q, o = times[:, 0], times[:, 1], times[:, 3]
            bad = np.flatnonzero((p < 0) | (p >= n) | (q < 0) | (q >= n))
            if bad.size:
                i = int(bad[0])
                fail("alpha_index_times", f"alpha_index_times entry {i} {times[i].tolist()}: expected p and q in "
                                          f"[0, alpha_moments_count={n})")
            bad = np.flatnonzero((o < nb) | (o >= n))
            if bad.size:
                i = int(bad[0])
                fail("alpha_index_times", f"alpha_index_times entry {i} {times[i].tolist()}: expected output o in "
                                          f"[alpha_index_basic_count={nb}, alpha_moments_count={n})")
        # topological order: every input p, q is a basic moment or the output of an earlier entry
        nt = times.shape[0]
        first = np.full(n, nt, dtype=np.int64)  # index of the first entry producing each moment
        first[:nb] = -1
        if nt:
            np.minimum.at(first, times[:, 3], np.arange(nt))
            steps = np.arange(nt)
            bad = np.flatnonzero((first[times[:, 0]] >= steps) | (first[times[:, 1]] >= steps))
            if bad.size:
                i = int(bad[0])
                fail("alpha_index_times", f"alpha_index_times entry {i} {times[i].tolist()}: uses a moment that no "
                                          f"earlier entry computes (expected topological order)")
        produced = first < nt

        mapping = self.alpha_moment_mapping
        if mapping.ndim != 1 or mapping.shape[0] < 1:
            fail("alpha_moment_mapping", f"alpha_moment_mapping: expected a non-empty list, got shape {mapping.shape}")
        bad = np.flatnonzero((mapping < 0) | (mapping >= n))
        if bad.size:
            i = int(bad[0])
            fail("alpha_moment_mapping", f"alpha_moment_mapping entry {i} = {int(mapping[i])}: expected an index in "
                                         f"[0, alpha_moments_count={n})")
        bad = np.flatnonzero(~produced[mapping])
        if bad.size:
            i = int(bad[0])
            fail("alpha_moment_mapping", f"alpha_moment_mapping entry {i} = {int(mapping[i])}: no basic moment or "
                                         f"alpha_index_times entry computes it")
        ns = mapping.shape[0]

        present = [self.radial_coeffs is not None, self.species_coeffs is not None, self.moment_coeffs is not None]
        if any(present) and not all(present):
            missing = [k for k, p in zip(("radial_coeffs", "species_coeffs", "moment_coeffs"), present) if not p]
            have = next(k for k, p in zip(("radial_coeffs", "species_coeffs", "moment_coeffs"), present) if p)
            fail(have, f"{have} is given but {', '.join(missing)} missing: expected all coefficients "
                       f"(trained potential) or none (untrained template)")
        if self.radial_coeffs is not None:
            if self.radial_coeffs.shape != (S, S, K, R):
                fail("radial_coeffs", f"radial_coeffs: expected shape (species_count, species_count, "
                                      f"radial_funcs_count, radial_basis_size) = {(S, S, K, R)}, "
                                      f"got {self.radial_coeffs.shape}")
            if self.species_coeffs.shape != (S,):
                fail("species_coeffs", f"species_coeffs: expected species_count = {S} numbers, "
                                       f"got {self.species_coeffs.size}")
            if self.moment_coeffs.shape != (ns,):
                fail("moment_coeffs", f"moment_coeffs: expected alpha_scalar_moments = {ns} numbers, "
                                      f"got {self.moment_coeffs.size}")
            for key in ("radial_coeffs", "species_coeffs", "moment_coeffs"):
                if not np.isfinite(getattr(self, key)).all():
                    fail(key, f"{key}: expected finite numbers, found NaN or inf")
        if self.tail and not self.tail.startswith(_TAIL_MARK):
            fail("tail", f"tail: expected the active-set section to start with {_TAIL_MARK.decode()!r}")


# ====================================================================== reading
class _Src:
    """Location helper for error messages."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def err(self, line, msg):
        return FormatError(msg, path=self.path, line=line)

    def int(self, tok, what, line):
        try:
            return int(tok.strip())
        except ValueError:
            raise self.err(line, f"{what}: expected an integer, got {tok.strip()!r}") from None

    def float(self, tok, what, line):
        try:
            v = float(tok.strip())
        except ValueError:
            raise self.err(line, f"{what}: expected a number, got {tok.strip()!r}") from None
        if not math.isfinite(v):
            raise self.err(line, f"{what}: expected a finite number, got {tok.strip()!r}")
        return v

    def list1(self, s, what, line, conv):
        s = s.strip()
        if not (s.startswith("{") and s.endswith("}")):
            raise self.err(line, f"{what}: expected a list '{{v1, v2, ...}}', got {_short(s)!r}")
        inner = s[1:-1]
        if "{" in inner or "}" in inner:
            raise self.err(line, f"{what}: expected a flat list of numbers, found nested braces")
        if not inner.strip():
            return []
        toks = inner.split(",")
        try:
            return [conv(t) for t in toks]
        except ValueError:
            for k, t in enumerate(toks):
                try:
                    conv(t)
                except ValueError:
                    kind = "an integer" if conv is int else "a number"
                    raise self.err(line, f"{what}: entry {k}: expected {kind}, got {t.strip()!r}") from None
            raise  # pragma: no cover

    def list2(self, s, what, line, width=4):
        s = s.strip()
        if not (s.startswith("{") and s.endswith("}")):
            raise self.err(line, f"{what}: expected '{{{{...}}, {{...}}, ...}}', got {_short(s)!r}")
        inner = s[1:-1].strip()
        if not inner:
            return np.zeros((0, width), dtype=np.int64)
        if not (inner.startswith("{") and inner.endswith("}")):
            raise self.err(line, f"{what}: expected a list of '{{...}}' entries, got {_short(s)!r}")
        parts = _ROWS_SPLIT_RE.split(inner[1:-1])
        flat = []
        for k, part in enumerate(parts):
            if "{" in part or "}" in part:
                raise self.err(line, f"{what}: entry {k}: malformed braces near {_short(part)!r}")
            toks = part.split(",")
            if len(toks) != width:
                raise self.err(line, f"{what}: entry {k} has {len(toks)} numbers, expected {width}")
            flat.extend(toks)
        try:
            vals = [int(t) for t in flat]
        except ValueError:
            for j, t in enumerate(flat):
                try:
                    int(t)
                except ValueError:
                    raise self.err(line, f"{what}: entry {j // width}: expected an integer, "
                                         f"got {t.strip()!r}") from None
            raise  # pragma: no cover
        return np.array(vals, dtype=np.int64).reshape(-1, width)


def _short(s, n=40):
    return s if len(s) <= n else s[:n] + "..."


def _split_tail(data: bytes) -> tuple[bytes, bytes]:
    if data.startswith(_TAIL_MARK):
        return b"", data
    i = data.find(b"\n" + _TAIL_MARK)
    if i < 0:
        return data, b""
    return data[: i + 1], data[i + 1:]


def read_mtp(path) -> MTPFile:
    """Read an MLIP potential file (``.mtp`` of MLIP-2, ``.almtp`` of MLIP-3, trained or untrained)."""
    src = _Src(path)
    with open(path, "rb") as f:
        data = f.read()
    head, tail = _split_tail(data)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        raise src.err(head.count(b"\n", 0, e.start) + 1, "expected text (the binary section may only follow "
                                                          "a line '#MVS_v1.1')") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    nlines = len(lines)

    values: dict[str, str] = {}
    where: dict[str, int] = {}
    blocks: dict[tuple[int, int], tuple[int, list]] = {}
    block_order: list[tuple[int, int]] = []
    seen_header = False
    in_radial = False
    current = None  # current radial block key

    # a value (or a radial row) may continue over several lines until its braces balance
    def take_balanced(s, start_line):
        nonlocal i
        depth = s.count("{") - s.count("}")
        while depth > 0:
            if i >= nlines:
                raise src.err(start_line, "unterminated '{': the file ends before the closing '}'")
            nxt = lines[i].strip()
            i += 1
            s += " " + nxt
            depth += nxt.count("{") - nxt.count("}")
        if depth < 0:
            raise src.err(start_line, "unbalanced '}'")
        return s

    i = 0
    while i < nlines:
        lineno = i + 1
        s = lines[i].strip()
        i += 1
        if not s:
            continue
        if not seen_header:
            if s != "MTP":
                raise src.err(lineno, f"expected 'MTP' as the first line of a potential file, got {_short(s)!r}")
            seen_header = True
            continue
        if in_radial:
            m = _BLOCK_RE.match(s)
            if m:
                key = (int(m.group(1)), int(m.group(2)))
                if key in blocks:
                    raise src.err(lineno, f"radial_coeffs block {key[0]}-{key[1]} appears twice "
                                          f"(first at line {blocks[key][0]})")
                blocks[key] = (lineno, [])
                block_order.append(key)
                current = key
                continue
            if s.startswith("{"):
                if current is None:
                    raise src.err(lineno, "expected a block label 'a-b' (e.g. 0-0) before radial coefficients")
                row = take_balanced(s, lineno)
                blocks[current][1].append(
                    (lineno, src.list1(row, f"radial_coeffs block {current[0]}-{current[1]}", lineno, float)))
                continue
            in_radial = False
            current = None
        if s == "radial_coeffs":
            if "radial_coeffs" in where:
                raise src.err(lineno, f"radial_coeffs appears twice (first at line {where['radial_coeffs']})")
            where["radial_coeffs"] = lineno
            in_radial = True
            continue
        if "=" not in s:
            raise src.err(lineno, f"expected 'key = value', 'radial_coeffs' or a radial block, got {_short(s)!r}")
        key, val = s.split("=", 1)
        key = key.strip()
        if key not in _KNOWN_KEYS:
            raise src.err(lineno, f"unknown key {key!r} (expected one of the MTP keys: "
                                  f"{', '.join(sorted(_KNOWN_KEYS))})")
        if key in values:
            raise src.err(lineno, f"{key} appears twice (first at line {where[key]})")
        val = val.strip()
        if val.startswith("{"):
            val = take_balanced(val, lineno)
        values[key] = val
        where[key] = lineno

    if not seen_header:
        raise src.err(max(nlines, 1), "empty file: expected an MTP potential starting with 'MTP'")
    for key in _REQUIRED_KEYS:
        if key not in values:
            raise src.err(max(nlines, 1), f"file ends without the required key {key!r} (truncated or not an "
                                          f"MTP file?)")

    kw: dict = {}
    for key in _STR_KEYS:
        if key in values:
            kw[key] = values[key]
    for key in _INT_KEYS:
        if key in values:
            kw[key] = src.int(values[key], key, where[key])
    for key in _FLOAT_KEYS:
        if key in values:
            kw[key] = src.float(values[key], key, where[key])
    kw["alpha_index_basic"] = src.list2(values["alpha_index_basic"], "alpha_index_basic", where["alpha_index_basic"])
    kw["alpha_index_times"] = src.list2(values["alpha_index_times"], "alpha_index_times", where["alpha_index_times"])
    kw["alpha_moment_mapping"] = np.array(
        src.list1(values["alpha_moment_mapping"], "alpha_moment_mapping", where["alpha_moment_mapping"], int),
        dtype=np.int64)
    for key in ("species_coeffs", "moment_coeffs"):
        if key in values:
            kw[key] = np.array(src.list1(values[key], key, where[key], float), dtype=np.float64)

    # declared counts against array lengths
    for count_key, arr_key in (("alpha_index_basic_count", "alpha_index_basic"),
                               ("alpha_index_times_count", "alpha_index_times"),
                               ("alpha_scalar_moments", "alpha_moment_mapping")):
        declared, actual = kw.pop(count_key), len(kw[arr_key])
        if declared != actual:
            raise src.err(where[arr_key], f"{arr_key} has {actual} entries but {count_key} = {declared} "
                                          f"(line {where[count_key]})")

    S = kw["species_count"]
    if S < 1:
        raise src.err(where["species_count"], f"species_count: expected a positive integer, got {S}")
    K, R = kw["radial_funcs_count"], kw["radial_basis_size"]
    if "radial_coeffs" in where:
        if K < 1 or R < 1:
            raise src.err(where["radial_coeffs"], "radial_coeffs: radial_funcs_count and radial_basis_size "
                                                  "must be positive")
        rc = np.empty((S, S, K, R), dtype=np.float64)
        for key in block_order:
            bl, rows = blocks[key]
            a, b = key
            if a >= S or b >= S:
                raise src.err(bl, f"radial_coeffs block {a}-{b}: expected species indices < species_count = {S}")
            if len(rows) != K:
                raise src.err(bl, f"radial_coeffs block {a}-{b} has {len(rows)} rows, expected "
                                  f"radial_funcs_count = {K}")
            for mu, (rl, row) in enumerate(rows):
                if len(row) != R:
                    raise src.err(rl, f"radial_coeffs block {a}-{b} row {mu} has {len(row)} numbers, expected "
                                      f"radial_basis_size = {R}")
                rc[a, b, mu] = row
            where[f"radial_coeffs[{a},{b}]"] = bl
        if len(blocks) != S * S:
            missing = [f"{a}-{b}" for a in range(S) for b in range(S) if (a, b) not in blocks]
            raise src.err(where["radial_coeffs"], f"radial_coeffs has {len(blocks)} blocks, expected "
                                                  f"species_count^2 = {S * S} (missing {', '.join(missing)})")
        kw["radial_coeffs"] = rc
    kw["tail"] = tail

    obj = MTPFile.__new__(MTPFile)
    obj.__dict__.update({n: f.default for n, f in MTPFile.__dataclass_fields__.items() if f.default is not MISSING})
    obj.__dict__.update(kw)
    obj._coerce()
    obj._validate(src.path, where)
    return obj


# ====================================================================== writing
def _f(x) -> str:
    return "%.16e" % x


def _flist(a) -> str:
    return "{" + ", ".join("%.16e" % v for v in np.asarray(a, dtype=np.float64).ravel().tolist()) + "}"


def _ilist2(a) -> str:
    a = np.asarray(a)
    return "{" + (("{%d, %d, %d, %d}, " * a.shape[0]) % tuple(a.ravel().tolist()))[:-2] + "}"


def mtp_to_bytes(mtp: MTPFile) -> bytes:
    """The file contents that :func:`write_mtp` writes."""
    mtp.validate()
    out = ["MTP", f"version = {mtp.version}", f"potential_name = {mtp.potential_name}"]
    if mtp.is_trained or mtp.scaling != 1.0:
        out.append(f"scaling = {_f(mtp.scaling)}")
    out += [
        f"species_count = {mtp.species_count}",
        f"potential_tag = {mtp.potential_tag}",
        f"radial_basis_type = {mtp.radial_basis_type}",
        f"\tmin_dist = {_f(mtp.min_dist)}",
        f"\tmax_dist = {_f(mtp.max_dist)}",
        f"\tradial_basis_size = {mtp.radial_basis_size}",
        f"\tradial_funcs_count = {mtp.radial_funcs_count}",
    ]
    if mtp.is_trained:
        out.append("\tradial_coeffs")
        S = mtp.species_count
        for a in range(S):
            for b in range(S):
                out.append(f"\t\t{a}-{b}")
                out += ["\t\t\t" + _flist(row) for row in mtp.radial_coeffs[a, b]]
    out += [
        f"alpha_moments_count = {mtp.alpha_moments_count}",
        f"alpha_index_basic_count = {mtp.alpha_index_basic_count}",
        f"alpha_index_basic = {_ilist2(mtp.alpha_index_basic)}",
        f"alpha_index_times_count = {mtp.alpha_index_times_count}",
        f"alpha_index_times = {_ilist2(mtp.alpha_index_times)}",
        f"alpha_scalar_moments = {mtp.alpha_scalar_moments}",
        "alpha_moment_mapping = {" + ", ".join(str(v) for v in mtp.alpha_moment_mapping.tolist()) + "}",
    ]
    if mtp.is_trained:
        out.append(f"species_coeffs = {_flist(mtp.species_coeffs)}")
        out.append(f"moment_coeffs = {_flist(mtp.moment_coeffs)}")
    return ("\n".join(out) + "\n").encode("utf-8") + mtp.tail


def write_mtp(mtp: MTPFile, path) -> None:
    """Write ``mtp`` in MLIP's layout (tab indentation, ``{...}`` arrays, floats as ``%.16e``).

    An untrained template is written without coefficient lines; ``tail`` is appended verbatim. The file is
    replaced atomically: a failed write leaves the old one.
    """
    atomic_write(path, mtp_to_bytes(mtp))
