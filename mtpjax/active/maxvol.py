"""The MaxVol active set and the extrapolation grade, as MLIP-2 computes them (``shared/docs/mtp-spec.md`` §6).

The active set is a square matrix A (n × n, n = number of parameters) whose rows are rows of the training set (see
:mod:`mtpjax.active.rows`), chosen to (locally) maximise |det A|. It starts as ``threshold_init``·I (MLIP-2: 1e-5·I).
Given candidate rows B, C = B A⁻¹; while max |C_kl| exceeds the swap threshold, row k of B and row l of A swap places
(the greatest |C_kl| first, the first one in row-major order on ties), A⁻¹ and C following by Sherman–Morrison
rank-one updates. A selection only starts when max |C| exceeds the selection threshold (MLIP-2: 1.1); it then swaps
down to the swap threshold (MLIP-2: 1.0000001).

The grade of a row b is γ = max_l |(b A⁻¹)_l|: γ ≤ 1 interpolates the active set, γ > 1 extrapolates. A structure's
grade is the largest grade of its rows (one row per configuration, or one per atom in neighbourhood mode).
Everything here is host numpy on float64: the matrices are small (n ≈ 10²–10³).
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import FormatError, MtpjaxError

#: MLIP-2's defaults (``mlp calc-grade`` / ``mlp select-add``): A starts as THRESHOLD_INIT·I; a selection starts when
#: a grade exceeds THRESHOLD_SELECT and swaps until every grade is at most THRESHOLD_SWAP.
THRESHOLD_INIT = 1e-5
THRESHOLD_SELECT = 1.1
THRESHOLD_SWAP = 1.0000001
#: Grades above this are printed as MLIP prints them ("9.9e99").
GRADE_PRINT_LIMIT = 1e10


@dataclass
class ActiveSet:
    """A MaxVol active set: ``A`` (n, n) its rows, ``A_inv`` its inverse (kept updated as MLIP does, not recomputed),
    ``mode`` "cfg" or "nbh" (what a row is, :mod:`mtpjax.active.rows`), ``origin`` (n,) the tag of the structure each
    row came from (-1: an initial ``threshold_init``·I row), ``equation`` (n,) which row of that structure it is (0 in
    cfg mode, the atom in nbh mode; -1 for initial rows), ``fingerprint`` of the potential's parameters it was built
    for (:func:`parameter_fingerprint`), or "" if unknown."""

    A: np.ndarray
    A_inv: np.ndarray
    mode: str = "cfg"
    origin: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    threshold_init: float = THRESHOLD_INIT
    fingerprint: str = ""
    equation: np.ndarray | None = None

    def __post_init__(self):
        n = self.A.shape[0]
        if len(self.origin) != n:
            self.origin = np.full(n, -1, dtype=np.int64)
        if self.equation is None or len(self.equation) != n:
            self.equation = np.where(np.asarray(self.origin) == -1, -1, 0).astype(np.int64)

    @classmethod
    def initial(cls, n: int, mode: str = "cfg", threshold_init: float = THRESHOLD_INIT, fingerprint: str = "") -> "ActiveSet":
        """The empty active set threshold_init·I of n parameters."""
        if not threshold_init > 0:
            raise MtpjaxError(f"threshold_init must be > 0, got {threshold_init}")
        return cls(A=threshold_init * np.eye(n), A_inv=np.eye(n) / threshold_init, mode=mode,
                   origin=np.full(n, -1, dtype=np.int64), threshold_init=float(threshold_init), fingerprint=fingerprint)

    @property
    def n(self) -> int:
        return int(self.A.shape[0])

    def coefficients(self, rows) -> np.ndarray:
        """C = rows A⁻¹ (m, n): the rows in the basis of the active set."""
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        if rows.shape[1] != self.n:
            raise MtpjaxError(f"rows of {rows.shape[1]} parameters for an active set of {self.n}: the potential does "
                              f"not match the active set")
        return rows @ self.A_inv

    def grades(self, rows) -> np.ndarray:
        """γ = max_l |(b A⁻¹)_l| of each row b (m,)."""
        C = self.coefficients(rows)
        return np.abs(C).max(axis=1) if C.shape[0] else np.zeros(0)

    def select(self, rows, tags, threshold_select: float = THRESHOLD_SELECT, threshold_swap: float = THRESHOLD_SWAP,
               swap_limit: int | None = None, equations=None) -> tuple["ActiveSet", list]:
        """MaxVol selection of candidate ``rows`` (m, n) tagged ``tags`` (m,) ints (which structure each row is) and
        ``equations`` (m,) (which row of its structure; default 0).

        Returns (the new active set, the swaps [(candidate row k, active row l), ...] in order). Nothing is swapped
        unless a grade exceeds ``threshold_select``; then rows swap until every |C| ≤ ``threshold_swap`` or
        ``swap_limit`` swaps were made. This active set is not changed.
        """
        if threshold_swap < 1 or threshold_select < threshold_swap:
            raise MtpjaxError(f"need 1 <= threshold_swap <= threshold_select, got {threshold_swap} and {threshold_select}")
        B = np.array(rows, dtype=np.float64, ndmin=2)
        tags = np.array(tags, dtype=np.int64).reshape(-1)
        eqs = np.zeros(len(tags), dtype=np.int64) if equations is None else np.array(equations, dtype=np.int64).reshape(-1)
        if len(tags) != B.shape[0] or len(eqs) != B.shape[0]:
            raise ValueError(f"{len(tags)} tags and {len(eqs)} equations for {B.shape[0]} rows")
        A, A_inv, origin, equation = self.A.copy(), self.A_inv.copy(), self.origin.copy(), self.equation.copy()
        swaps = []

        def result():
            return replace(self, A=A, A_inv=A_inv, origin=origin, equation=equation), swaps

        if B.shape[0] == 0:
            return result()
        C = self.coefficients(B)
        n = self.n
        k, l = divmod(int(np.argmax(np.abs(C))), n)
        if not abs(C[k, l]) > threshold_select:
            return result()
        while abs(C[k, l]) > threshold_swap and (swap_limit is None or len(swaps) < swap_limit):
            c_kl = C[k, l]
            # A' = A with row l replaced by B[k]: A'^-1 = A^-1 - A^-1[:, l] (B[k] - A[l]) A^-1 / c_kl
            d = B[k] - A[l]
            A_inv -= np.outer(A_inv[:, l] / c_kl, d @ A_inv)
            # C' (row k of B now holds the old A[l]): C - (C[:, l] + e_k) (C[k] - e_l) / c_kl
            u = C[:, l] / c_kl
            u[k] += 1.0 / c_kl
            v = C[k].copy()
            v[l] -= 1.0
            C -= np.outer(u, v)
            A[l], B[k] = B[k].copy(), A[l].copy()
            origin[l], tags[k] = tags[k], origin[l]
            equation[l], eqs[k] = eqs[k], equation[l]
            swaps.append((int(k), int(l)))
            k, l = divmod(int(np.argmax(np.abs(C))), n)
        return result()

    # ---------------------------------------------------------------- storage (JSON-serialisable, exact)
    def to_dict(self) -> dict:
        """A JSON-serialisable dict; the matrices as base64 of little-endian float64 (exact)."""
        def enc(x):
            return base64.b64encode(np.ascontiguousarray(x, dtype="<f8").tobytes()).decode("ascii")

        return {"format": "mtpjax-active-set", "version": 1, "mode": self.mode, "n": self.n,
                "threshold_init": self.threshold_init, "origin": [int(o) for o in self.origin],
                "equation": [int(e) for e in self.equation],
                "fingerprint": self.fingerprint, "A": enc(self.A), "A_inv": enc(self.A_inv)}

    @classmethod
    def from_dict(cls, d: dict, path=None) -> "ActiveSet":
        """Inverse of :meth:`to_dict`; FormatError naming ``path`` for a malformed dict."""
        try:
            if d.get("format") != "mtpjax-active-set" or d.get("version") != 1:
                raise ValueError(f"not an mtpjax active set of version 1 (format {d.get('format')!r}, "
                                 f"version {d.get('version')!r})")
            n = int(d["n"])

            def dec(s):
                return np.frombuffer(base64.b64decode(s), dtype="<f8").astype(np.float64).reshape(n, n)

            return cls(A=dec(d["A"]), A_inv=dec(d["A_inv"]), mode=str(d["mode"]),
                       origin=np.asarray(d["origin"], dtype=np.int64).reshape(n),
                       equation=np.asarray(d["equation"], dtype=np.int64).reshape(n) if "equation" in d else None,
                       threshold_init=float(d["threshold_init"]), fingerprint=str(d.get("fingerprint", "")))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise FormatError(f"bad active set: {err}", path) from err


def parameter_fingerprint(theta) -> str:
    """A short hash of a parameter vector (float64 bytes): an active set belongs to the potential it was built for."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(theta), dtype="<f8").tobytes()).hexdigest()[:16]


def format_grade(g: float) -> str:
    """A grade as MLIP writes the ``MV_grade`` feature: 6 decimals, "9.9e99" above 1e10."""
    return "9.9e99" if not g <= GRADE_PRINT_LIMIT else f"{g:.6f}"
