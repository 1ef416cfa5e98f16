"""Tabulated EAM potentials (LAMMPS/DYNAMO files) as JAX potentials.

Formats (https://docs.lammps.org/pair_eam.html), chosen from the file name or ``form=``:

- ``alloy`` (setfl, ``*.eam.alloy``): 3 comment lines; ``N el_1 .. el_N``; ``nrho drho nr dr cutoff``; per
  element a line ``Z mass [a lattice]``, F(rho) (nrho values), rho(r) (nr values); then r*phi(r) (nr values)
  for each pair i >= j in the order (1,1), (2,1), (2,2), (3,1), ...
- ``fs`` (Finnis–Sinclair, ``*.eam.fs``): as alloy, but each element's block holds N density tables; table b of
  element a's block is the density an atom of element a puts on an atom of element b (LAMMPS's and ASE's
  reading).
- ``funcfl`` (``*.eam``, one element): a comment line; ``Z mass a lattice``; ``nrho drho nr dr cutoff``; F(rho);
  Z(r) (nr values); rho(r). r*phi = 27.2 * 0.529 * Z(r)^2 eV Å, LAMMPS's constant (ASE's reader uses
  Hartree * Bohr = 14.39964 instead of 14.3888; pass ``zz_to_rphi`` to get that).

Grids: rho_k = k drho (k < nrho), r_k = k dr (k < nr); units Å, eV. Values run on across lines in any layout;
Fortran ``D`` exponents are accepted. A malformed file raises :class:`mtpjax.errors.FormatError` naming the
file and line.

Interpolation reproduces ASE's :class:`ase.calculators.eam.EAM` exactly: scipy's interpolating cubic spline
(``InterpolatedUnivariateSpline``, k=3, not-a-knot ends) through F(rho_k), rho(r_k) and phi(r_k) = (r phi)_k / r_k
for k >= 1, extrapolated by the end cubics beyond the tables. The spline is converted once, on the host, to
one cubic per grid cell (expanded around the cell's midpoint), which JAX evaluates with a gather. The cutoff is
the file's; pairs at r >= cutoff do not interact.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from ase.data import chemical_symbols
from scipy.interpolate import InterpolatedUnivariateSpline

from ..errors import FormatError
from ..io.files import atomic_write
from .base import UNITS
from .eam import eam_dimer_energy, eam_site_energies

#: LAMMPS's conversion of funcfl effective charges: r phi(r) = 27.2 * 0.529 * Z_i(r) Z_j(r) (eV Å).
LAMMPS_ZZ_TO_RPHI = 27.2 * 0.529

FORMS = ("alloy", "fs", "funcfl")


@dataclass
class EAMTables:
    """The raw tables of an EAM file (host arrays; eV, Å).

    ``embedding`` (S, nrho): F_a(k drho). ``density`` (S, S, nr): density[b, a] = rho_{b->a}(k dr), the density an
    atom of element b puts on one of element a (independent of a for alloy/funcfl). ``rphi`` (S, S, nr):
    r phi_ab(r), symmetric.
    """

    form: str
    elements: list
    numbers: list
    masses: list
    lattice_constants: list
    lattices: list
    nrho: int
    drho: float
    nr: int
    dr: float
    cutoff: float
    embedding: np.ndarray
    density: np.ndarray
    rphi: np.ndarray
    comments: list = field(default_factory=lambda: ["", "", ""])
    path: str | None = None
    sha256: str | None = None


# ------------------------------------------------------------------------------------------------------------------
# reading


class _Reader:
    """Lines of a text file as a stream of values, remembering line numbers for error messages."""

    def __init__(self, path, text: str):
        self.path = str(path)
        self.lines = text.splitlines()
        self.pos = 0  # index of the next unread line
        self.rest: list[str] = []  # unread tokens of the current line
        self.lineno = 0  # 1-based number of the current line

    def error(self, message, line=None):
        return FormatError(message, self.path, self.lineno if line is None else line)

    def line(self, what: str) -> list[str]:
        """The tokens of the next non-blank line (which must start fresh: no values left on the current one)."""
        if self.rest:
            raise self.error(f"unexpected extra values {self.rest[:3]} before {what}")
        while self.pos < len(self.lines):
            self.pos += 1
            self.lineno = self.pos
            tokens = self.lines[self.pos - 1].split()
            if tokens:
                return tokens
        raise self.error(f"the file ends before {what}", len(self.lines))

    def raw_line(self, what: str) -> str:
        """The next line, as text (comment lines)."""
        if self.pos >= len(self.lines):
            raise self.error(f"the file ends before {what}", len(self.lines))
        self.pos += 1
        self.lineno = self.pos
        return self.lines[self.pos - 1]

    def floats(self, n: int, what: str) -> np.ndarray:
        """The next n values, running on across lines."""
        out, k = np.empty(n), 0
        while k < n:
            if not self.rest:
                if self.pos >= len(self.lines):
                    raise self.error(f"{what}: expected {n} values, the file ends after {k}", len(self.lines))
                self.pos += 1
                self.lineno = self.pos
                self.rest = self.lines[self.pos - 1].split()
                continue
            take, self.rest = self.rest[: n - k], self.rest[n - k:]
            out[k:k + len(take)] = [self.number(t, what) for t in take]
            k += len(take)
        if not np.isfinite(out).all():
            raise self.error(f"{what}: non-finite value {out[~np.isfinite(out)][0]}")
        return out

    def number(self, token: str, what: str, kind=float):
        try:
            return kind(token.replace("D", "E").replace("d", "e") if kind is float else token)
        except ValueError:
            raise self.error(f"{what}: expected {'an integer' if kind is int else 'a number'}, found {token!r}") from None

    def end(self):
        """Only blank lines (or nothing) may follow the last table."""
        extra = self.rest
        for k in range(self.pos, len(self.lines)):
            if extra:
                break
            extra, self.lineno = self.lines[k].split(), k + 1
        if extra:
            raise self.error(f"unexpected extra values after the last table (starting {extra[0]!r}); "
                             "wrong nrho/nr, element count or format?")


def _grid(r: _Reader, what: str):
    t = r.line(what)
    if len(t) < 5:
        raise r.error(f"{what}: expected 'nrho drho nr dr cutoff', found {len(t)} value(s)")
    nrho, nr = r.number(t[0], "nrho", int), r.number(t[2], "nr", int)
    drho, dr, cutoff = (r.number(t[k], n) for k, n in ((1, "drho"), (3, "dr"), (4, "cutoff")))
    if nrho < 5 or nr < 5:
        raise r.error(f"nrho = {nrho} and nr = {nr}: each table needs at least 5 points")
    if not (drho > 0 and dr > 0 and cutoff > 0 and np.isfinite([drho, dr, cutoff]).all()):
        raise r.error(f"drho = {drho}, dr = {dr} and cutoff = {cutoff} must be positive")
    return nrho, drho, nr, dr, cutoff


def _element_line(r: _Reader, what: str):
    t = r.line(what)
    if len(t) < 2:
        raise r.error(f"{what}: expected at least 'Z mass', found {t}")
    z = r.number(t[0], f"{what} (atomic number)", int)
    mass = r.number(t[1], f"{what} (mass)")
    a = r.number(t[2], f"{what} (lattice constant)") if len(t) > 2 else 0.0
    return z, mass, a, (t[3] if len(t) > 3 else "")


def guess_form(path) -> str:
    """'alloy', 'fs' or 'funcfl' from a file name (``.eam.alloy``/``.alloy``/``.setfl``, ``.eam.fs``/``.fs``, ``.eam``)."""
    name = Path(path).name.lower()
    if name.endswith((".fs",)):
        return "fs"
    if name.endswith((".alloy", ".setfl")):
        return "alloy"
    if name.endswith(".eam"):
        return "funcfl"
    raise FormatError(f"cannot tell the EAM format from the file name; pass form= one of {list(FORMS)}", path)


def read_eam(path, form: str | None = None, zz_to_rphi: float = LAMMPS_ZZ_TO_RPHI) -> EAMTables:
    """Read a setfl (``alloy``), Finnis–Sinclair (``fs``) or ``funcfl`` file (form from the name unless given)."""
    form = guess_form(path) if form is None else form
    if form not in FORMS:
        raise FormatError(f"unknown EAM form {form!r}; known: {list(FORMS)}", path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise FormatError(f"cannot read the EAM file: {e.strerror or e}", path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    r = _Reader(path, text)
    if form == "funcfl":
        t = _read_funcfl(r, zz_to_rphi)
    else:
        t = _read_setfl(r, form)
    t.path, t.sha256 = str(path), hashlib.sha256(data).hexdigest()
    return t


def _read_setfl(r: _Reader, form: str) -> EAMTables:
    comments = [r.raw_line("the 3 comment lines") for _ in range(3)]
    t = r.line("the element line 'N el_1 ... el_N'")
    n = r.number(t[0], "the number of elements", int)
    if n < 1 or len(t) < 1 + n:
        raise r.error(f"the element line says {n} element(s) but names {len(t) - 1}: {t[1:]}")
    elements = t[1:1 + n]
    numeric = [el for el in elements if el.replace(".", "", 1).replace("-", "", 1).isdigit()]
    if numeric:
        raise r.error(f"expected {n} element symbol(s), found the number {numeric[0]!r}")
    nrho, drho, nr, dr, cutoff = _grid(r, "the grid line 'nrho drho nr dr cutoff'")
    F = np.empty((n, nrho))
    dens = np.empty((n, n, nr))
    heads = []
    for a, el in enumerate(elements):
        heads.append(_element_line(r, f"the header line 'Z mass [a lattice]' of element {el}"))
        F[a] = r.floats(nrho, f"F(rho) of {el}")
        if form == "fs":
            dens[a] = r.floats(n * nr, f"the {n} density tables of {el}").reshape(n, nr)
        else:
            dens[a] = r.floats(nr, f"rho(r) of {el}")
    rphi = np.empty((n, n, nr))
    for i in range(n):
        for j in range(i + 1):
            rphi[i, j] = rphi[j, i] = r.floats(nr, f"r*phi(r) of {elements[i]}-{elements[j]}")
    r.end()
    return EAMTables(form, elements, [h[0] for h in heads], [h[1] for h in heads], [h[2] for h in heads],
                     [h[3] for h in heads], nrho, drho, nr, dr, cutoff, F, dens, rphi, comments)


def _read_funcfl(r: _Reader, zz_to_rphi: float) -> EAMTables:
    comment = r.raw_line("the comment line")
    z, mass, a, lattice = _element_line(r, "the line 'Z mass a lattice'")
    if not 0 < z < len(chemical_symbols):
        raise r.error(f"atomic number {z} is not an element")
    nrho, drho, nr, dr, cutoff = _grid(r, "the grid line 'nrho drho nr dr cutoff'")
    F = r.floats(nrho, "F(rho)")
    zr = r.floats(nr, "Z(r)")
    rho = r.floats(nr, "rho(r)")
    r.end()
    return EAMTables("funcfl", [chemical_symbols[z]], [z], [mass], [a], [lattice], nrho, drho, nr, dr, cutoff,
                     F[None], rho[None, None], (zz_to_rphi * zr**2)[None, None], [comment, "", ""])


def write_setfl(tables: EAMTables, path, form: str | None = None) -> None:
    """Write ``tables`` as a setfl (``alloy``) or ``fs`` file (5 values a line, 16 significant digits)."""
    form = form or ("fs" if tables.form == "fs" else "alloy")
    S = len(tables.elements)

    def block(values):
        v = np.asarray(values).ravel()
        return "".join(" ".join(f"{x:.16e}" for x in v[k:k + 5]) + "\n" for k in range(0, len(v), 5))

    out = [(list(tables.comments) + ["", "", ""])[k].rstrip("\n") + "\n" for k in range(3)]
    out.append(f"{S} {' '.join(tables.elements)}\n")
    out.append(f"{tables.nrho} {tables.drho:.16e} {tables.nr} {tables.dr:.16e} {tables.cutoff:.16e}\n")
    for a in range(S):
        out.append(f"{tables.numbers[a]} {tables.masses[a]} {tables.lattice_constants[a]} {tables.lattices[a] or 'unknown'}\n")
        out.append(block(tables.embedding[a]))
        out.append(block(tables.density[a] if form == "fs" else tables.density[a, 0]))
    for i in range(S):
        for j in range(i + 1):
            out.append(block(tables.rphi[i, j]))
    atomic_write(path, "".join(out))


# ------------------------------------------------------------------------------------------------------------------
# interpolation


def spline_cells(h: float, y: np.ndarray, skip_first: bool = False) -> np.ndarray:
    """Cubic coefficients (n-1, 4) of scipy's interpolating cubic spline through (k h, y_k) (through k >= 1 only with
    ``skip_first``), one cubic per cell [k h, (k+1) h] in t = x - (k + 1/2) h: c0 + c1 t + c2 t^2 + c3 t^3."""
    x = np.arange(len(y)) * h
    s = slice(1, None) if skip_first else slice(None)
    spl = InterpolatedUnivariateSpline(x[s], y[s], k=3)
    mid = x[:-1] + 0.5 * h
    return np.stack([spl(mid, nu) for nu in range(4)], axis=-1) / np.array([1.0, 1.0, 2.0, 6.0])


def eval_cells(coeffs, h: float, x, table):
    """Evaluate per-cell cubics ``coeffs`` (T, n_cells, 4) of grid step h at x with table index ``table`` (same
    shape as x); outside the grid the end cubics extrapolate."""
    n = coeffs.shape[1]
    k = jnp.floor(jnp.clip(x / h, 0.0, n - 1.0)).astype(jnp.int32)
    k = jnp.minimum(k, n - 1)
    t = x - (k + 0.5) * h
    c = coeffs[table, k]
    return c[..., 0] + t * (c[..., 1] + t * (c[..., 2] + t * c[..., 3]))


class TabulatedEAM(eqx.Module):
    """A tabulated EAM/FS potential (a JAX potential) interpolated exactly like ASE's EAM calculator.

    Leaves: per-cell cubic coefficients of F (S, nrho-1, 4), of the densities (S*S, nr-1, 4; table b*S + a is
    rho_{b->a}) and of phi (S*S, nr-1, 4). Static: grid steps, cutoff (Å), species, source file. Build with
    :meth:`from_file` or :meth:`from_tables`.
    """

    F_coeffs: jax.Array
    density_coeffs: jax.Array
    phi_coeffs: jax.Array
    drho: float = eqx.field(static=True)
    dr: float = eqx.field(static=True)
    cutoff: float = eqx.field(static=True)
    species: tuple = eqx.field(static=True)
    form: str = eqx.field(static=True)
    path: str | None = eqx.field(static=True, default=None)
    sha256: str | None = eqx.field(static=True, default=None)
    title: str = eqx.field(static=True, default="")

    @classmethod
    def from_tables(cls, t: EAMTables, species=None) -> "TabulatedEAM":
        """From :class:`EAMTables`; ``species`` renames the elements (same order)."""
        S = len(t.elements)
        species = tuple(t.elements) if species is None else tuple(species)
        if len(species) != S:
            raise FormatError(f"species {list(species)} do not match the file's {S} element(s) {t.elements}", t.path)
        F = np.stack([spline_cells(t.drho, t.embedding[a]) for a in range(S)])
        dens = np.stack([spline_cells(t.dr, t.density[b, a]) for b in range(S) for a in range(S)])
        r = np.arange(t.nr) * t.dr
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = np.stack([spline_cells(t.dr, t.rphi[a, b] / np.where(r > 0, r, 1.0), skip_first=True)
                            for a in range(S) for b in range(S)])
        title = next((c.strip() for c in t.comments if c.strip()), "")
        return cls(jnp.asarray(F), jnp.asarray(dens), jnp.asarray(phi), float(t.drho), float(t.dr), float(t.cutoff),
                   species, t.form, t.path, t.sha256, title[:200])

    @classmethod
    def from_file(cls, path, form: str | None = None, species=None, **kw) -> "TabulatedEAM":
        """Read ``path`` (see :func:`read_eam`; ``kw``: ``zz_to_rphi`` for funcfl)."""
        return cls.from_tables(read_eam(path, form, **kw), species)

    @property
    def n_species(self) -> int:
        return len(self.species)

    @property
    def name(self) -> str:
        return f"EAM {Path(self.path).name if self.path else 'tables'} ({'-'.join(self.species)})"

    def density(self, r, a, b):
        return eval_cells(self.density_coeffs, self.dr, r, b * self.n_species + a)

    def pair(self, r, a, b):
        return eval_cells(self.phi_coeffs, self.dr, r, a * self.n_species + b)

    def embed(self, rho, a):
        return eval_cells(self.F_coeffs, self.drho, rho, a)

    def site_energies_from_pairs(self, R, types, nbrs, **kw):
        """Site energies (N,) in eV (the :class:`mtpjax.potential.Potential` protocol; extra keywords ignored)."""
        return eam_site_energies(R, types, nbrs, self.cutoff, self.pair, self.density, self.embed)

    def dimer_energy(self, r, a, b):
        """Binding (eV) of an isolated a-b pair at r (Å) below the cutoff (:func:`mtpjax.oracles.interaction_range`)."""
        return eam_dimer_energy(r, a, b, self.pair, self.density, self.embed)

    @property
    def spec(self) -> dict:
        """JSON recipe for :func:`mtpjax.oracles.make_oracle` (``file`` is None for tables not read from a file)."""
        return {"type": "eam", "file": self.path, "form": self.form, "species": list(self.species)}

    def describe(self) -> dict:
        return {**self.spec, "name": self.name, "sha256": self.sha256, "title": self.title, "cutoff": self.cutoff,
                "units": UNITS, "cutoff_treatment": "hard cutoff at the file's cutoff",
                "interpolation": "cubic spline through the tables (scipy InterpolatedUnivariateSpline, as ASE's EAM)"}
