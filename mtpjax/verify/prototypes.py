"""Structures and checks shared by the physics tests: the element's ground state, oriented hcp cells, supercells,
scaled and strained copies, which element, table rows, evaluation, plotting helpers.

The crystal prototypes (hcp, fcc, dhcp, bcc at a volume per atom) and their equilibrium live in
:mod:`mtpjax.relax.lattice`, as does the space-group check of a relaxed cell; ``PHASES``, ``prototype``,
``SPACE_GROUPS`` and ``space_group`` are re-exported here for code that imports them from this module. Lengths in
Å, volumes in Å³/atom.
"""
from __future__ import annotations

import math

import numpy as np
from ase import Atoms

from ..errors import MtpjaxError
# re-exported: experiments, tests and the verify modules import them from here
from ..relax.lattice import PHASES, SPACE_GROUPS, prototype, space_group  # noqa: F401


#: Lattices whose elastic constants and defects the tests build. An element whose lowest prototype is dhcp is
#: verified on hcp (the same close-packed planes and basal faults).
LATTICES = ("hcp", "fcc", "bcc")


def phase_energies(oracle, element: str) -> dict:
    """{phase: relaxed energy per atom (eV/atom), or None where the relaxation failed or the cell left its prototype's
    space group (e.g. bcc sliding to fcc along the Bain path)} of hcp, fcc, dhcp and bcc with ``oracle`` (full
    relaxations by :func:`mtpjax.relax.equilibrium`, as the tests themselves do)."""
    from ..relax import equilibrium

    eq = equilibrium(oracle, PHASES, element)
    out = {}
    for k, r in eq.items():
        ok = r.ok and r.atoms is not None and np.isfinite(r.energy_per_atom)
        out[k] = float(r.energy_per_atom) if ok and space_group(r.atoms) == SPACE_GROUPS[k] else None
    return out


def detect_ground_state(oracle, element: str) -> dict:
    """The lowest-energy prototype of ``element`` with ``oracle``: {"phase" (hcp, fcc, dhcp or bcc), "lattice" (the one
    of :data:`LATTICES` the tests build: dhcp -> hcp), "energies" {phase: eV/atom, None for one that did not relax or
    did not keep its symmetry}}. Raises MtpjaxError when no prototype relaxes."""
    e = phase_energies(oracle, element)
    ok = {k: v for k, v in e.items() if v is not None}
    if not ok:
        raise MtpjaxError(f"ground state of {element}: none of {list(PHASES)} relaxed (keeping its symmetry) with "
                          "the oracle")
    phase = min(ok, key=ok.get)
    return {"phase": phase, "lattice": "hcp" if phase == "dhcp" else phase, "energies": e}


def ground_state(oracle, element: str, override: str | None = None) -> str:
    """The lattice (hcp, fcc or bcc) the tests take as ``element``'s ground state: ``override`` when given (e.g. the
    ``ground_state`` key of the ``[verify]`` config; checked), else :func:`detect_ground_state` with ``oracle``."""
    if override:
        g = str(override).strip().lower()
        if g not in LATTICES:
            raise MtpjaxError(f"ground_state must be one of {', '.join(LATTICES)}, got {override!r}")
        return g
    return detect_ground_state(oracle, element)["lattice"]


def hcp_orthorhombic(element: str, a: float, c: float) -> Atoms:
    """The 4-atom orthorhombic hcp cell: x along [2-1-10] (a), y along [01-10] (√3 a), z along [0001] (c)."""
    cell = np.diag([a, math.sqrt(3.0) * a, c])
    frac = [[0.0, 0.0, 0.25], [0.5, 0.5, 0.25], [0.5, 1 / 6, 0.75], [0.0, 2 / 3, 0.75]]
    atoms = Atoms([element] * 4, scaled_positions=frac, cell=cell, pbc=True)
    atoms.info["name"] = "hcp-ortho"
    return atoms


def cubic_parameter(atoms: Atoms, kind: str) -> float:
    """Conventional cubic lattice constant (Å) of an fcc/bcc cell from its volume per atom."""
    v = atoms.get_volume() / len(atoms)
    return float((4 * v) ** (1 / 3) if kind == "fcc" else (2 * v) ** (1 / 3))


def supercell(atoms: Atoms, reps) -> Atoms:
    """``atoms`` repeated (n1, n2, n3) times (or by an integer 3x3 matrix P: new cell = P @ cell), keeping info."""
    reps = np.asarray(reps)
    if reps.ndim == 1 or reps.ndim == 0:
        out = atoms.repeat(tuple(np.broadcast_to(reps, (3,)).astype(int)))
    else:
        from ase.build import make_supercell

        out = make_supercell(atoms, reps, wrap=True)
    out.info = dict(atoms.info)
    return out


def scaled(atoms: Atoms, volume_per_atom: float) -> Atoms:
    """A copy isotropically scaled to ``volume_per_atom`` Å³/atom (fractional coordinates kept)."""
    out = atoms.copy()
    v = abs(out.get_volume()) / len(out)
    out.set_cell(out.cell.array * (volume_per_atom / v) ** (1.0 / 3.0), scale_atoms=True)
    return out


def strained(atoms: Atoms, strain) -> Atoms:
    """A copy under the homogeneous deformation x -> x (I + ε) (row vectors; ε a 3x3 strain, applied to the cell and
    positions)."""
    out = atoms.copy()
    F = np.eye(3) + np.asarray(strain, dtype=np.float64)
    out.set_cell(out.cell.array @ F, scale_atoms=True)
    return out


# ------------------------------------------------------------------------------------------------------------------
# pieces shared by the test modules


def element_of(potential, oracle=None, element: str | None = None) -> str:
    """The element both potentials describe. ``element`` must be among each one's ``species`` (when it has any);
    without it, each must name exactly one element and they must agree. Both must be JAX potentials
    (:mod:`mtpjax.potential`). Raises MtpjaxError otherwise."""
    for name, p in (("the potential", potential), ("the oracle", oracle)):
        if p is not None and not callable(getattr(p, "site_energies_from_pairs", None)):
            raise MtpjaxError(f"{name} ({type(p).__name__}) is not a JAX potential (no site_energies_from_pairs): "
                              "the physics tests relax structures with autodiff forces")
    lists = [(name, getattr(p, "species", None))
             for name, p in (("the potential", potential), ("the oracle", oracle)) if p is not None]
    if element is not None:
        for name, sp in lists:
            if sp is not None and element not in sp:
                raise MtpjaxError(f"element {element!r} is not among the species of {name}: {list(sp)}")
        return element
    known = [(name, tuple(sp)) for name, sp in lists if sp]
    if not known:
        raise MtpjaxError("neither potential names its element (species is None): pass element='Mg' (for example)")
    for name, sp in known:
        if len(sp) != 1:
            raise MtpjaxError(f"{name} has species {list(sp)}: pass element=... to choose the element to verify")
    els = {sp[0] for _, sp in known}
    if len(els) > 1:
        raise MtpjaxError(
            "the potential and the oracle describe different elements: "
            + ", ".join(f"{name} {list(sp)}" for name, sp in known)
        )
    return els.pop()


def row(test: str, quantity: str, unit: str, mtp, oracle) -> dict:
    """One table row: values of the potential ('mtp') and the oracle, error = mtp − oracle (None where either is)."""
    def f(x):
        return None if x is None or not np.isfinite(x) else float(x)

    m, o = f(mtp), f(oracle)
    return {"test": test, "quantity": quantity, "unit": unit, "mtp": m, "oracle": o,
            "error": None if m is None or o is None else m - o}


def error_row(test: str, quantity: str, unit: str, error) -> dict:
    """A table row for a quantity that is itself an error (an RMSE): only ``error`` is set."""
    return {"test": test, "quantity": quantity, "unit": unit, "mtp": None, "oracle": None,
            "error": finite_or_none(error)}


def rmse(a, b) -> float | None:
    """Root-mean-square of a − b over entries finite in both (None when none are)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2))) if ok.any() else None


def finite_or_none(x):
    """A JSON-able float, or None for None/NaN/inf."""
    return None if x is None or not np.isfinite(x) else float(x)


def evaluate(evaluator, structures) -> list:
    """:class:`mtpjax.evaluate.EFSResult` of ase.Atoms ``structures`` with an Evaluator (packed batches); types from the
    potential's species (a one-species potential without species takes any single element)."""
    from ..evaluate import types_for_symbols

    pot = evaluator.potential
    species = getattr(pot, "species", None)
    items = []
    for k, a in enumerate(structures):
        name = a.info.get("name") or f"structure {k}"
        types = types_for_symbols(a.get_chemical_symbols(), species, pot.n_species, name)
        items.append((a.positions, a.cell.array, a.pbc, types, name))
    return evaluator.many(items)


def evaluate_safe(evaluator, structures) -> tuple[list, list]:
    """As :func:`evaluate`, but a structure the potential cannot evaluate (non-finite energy, overlapping atoms)
    gives None and a failure {"structure", "reason"} instead of stopping the rest."""
    from ..errors import MtpjaxError

    try:
        return evaluate(evaluator, structures), []
    except MtpjaxError:
        pass
    out, failures = [], []
    for k, a in enumerate(structures):
        try:
            out.append(evaluate(evaluator, [a])[0])
        except MtpjaxError as e:
            out.append(None)
            failures.append({"structure": a.info.get("name") or f"structure {k}", "reason": f"evaluation failed: {e}"})
    return out, failures


def plot_clipped(ax, x, y, lim, **kw):
    """Plot y over x with markers; points outside lim = (lo, hi) are drawn on the edge as ▲/▼ (the potential's
    wild extrapolations must not squash the oracle's curve)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    lo, hi = lim
    inside = (y >= lo) & (y <= hi)
    ax.plot(x[inside], y[inside], **kw)
    kw = {k: v for k, v in kw.items() if k in ("color", "ms", "mfc")}
    if (y > hi).any():
        ax.plot(x[y > hi], np.full((y > hi).sum(), hi), "^", **kw)
    if (y < lo).any():
        ax.plot(x[y < lo], np.full((y < lo).sum(), lo), "v", **kw)


def limits(*series, pad: float = 0.15) -> tuple[float, float]:
    """(lo, hi) spanning the finite values of the given (reference) series, padded by ``pad`` of the span."""
    v = np.concatenate([np.asarray(s, float).ravel() for s in series])
    v = v[np.isfinite(v)]
    if not len(v):
        return -1.0, 1.0
    lo, hi = v.min(), v.max()
    span = max(hi - lo, 1e-6)
    return lo - pad * span, hi + pad * span
