"""What every relaxation path shares: the result record, the cell modes and the stress projection on the free
cell components (host side), the options given per structure."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from ..errors import MtpjaxError

#: Cell modes (``relax(cell=...)``); a 3x3 ``cell_mask`` of free strain components is the general case.
CELL_MODES = ("fixed", "full", "volume", "shape", "normal")

#: Why a relaxation failed (``RelaxResult.reason``).
REASONS = {
    "non_finite": "the energy, forces, stress or positions became NaN/inf",
    "collapsed": "two atoms came closer than min_distance",
    "volume": "V/V_start left [1/max_volume_factor, max_volume_factor]",
    "not_converged": "not converged within max_steps",
    "oracle_error": "the (ASE) oracle raised",
    "unknown_element": "an element the potential does not know",
    "neighbour_list": "no FIRE step fits inside a fresh neighbour list (internal; should not happen)",
    "extrapolation": "the relaxed structure's extrapolation grade exceeds gamma_break (relax(active_set=...))",
}


@dataclass
class RelaxResult:
    """One relaxation. ``atoms``: the relaxed structure, a copy of the input (``info`` and arrays kept, no calculator)
    with the new cell and positions (also when it did not converge; None when it blew up or never started).
    energy (eV), forces (N, 3) eV/Å, stress (6,) ASE Voigt eV/Å³ (positive in tension) of the final structure;
    fmax (eV/Å, free components) and smax (GPa, projected on the free cell components) at the end; steps (FIRE
    steps); initial_energy (eV): of the structure as given; max_displacement (Å): largest move of an atom relative to
    the homogeneous cell deformation, |(u_final − u_start)·F_final|; n_builds: neighbour lists built (0 on the ASE
    path); grade: the extrapolation grade γ of the relaxed structure (``relax(active_set=...)``; NaN otherwise), and
    ``info['initial_grade']`` that of the structure as given; reason: None or why it failed (:data:`REASONS`), message:
    details."""

    name: str
    atoms: Atoms | None
    energy: float = float("nan")
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    fmax: float = float("nan")
    smax: float = float("nan")
    initial_energy: float = float("nan")
    steps: int = 0
    converged: bool = False
    max_displacement: float = float("nan")
    n_builds: int = 0
    grade: float = float("nan")
    reason: str | None = None
    message: str = ""
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def energy_per_atom(self) -> float:
        return self.energy / len(self.atoms) if self.atoms is not None and len(self.atoms) else float("nan")

    def summary(self) -> dict:
        """JSON-able convergence record."""
        f = lambda x: None if x is None or not np.isfinite(x) else float(x)  # noqa: E731
        return {"name": self.name, "converged": bool(self.converged), "steps": int(self.steps),
                "fmax_eV_A": f(self.fmax), "smax_GPa": f(self.smax), "max_displacement_A": f(self.max_displacement),
                "n_builds": int(self.n_builds), "grade": f(self.grade), "reason": self.reason}


def cell_dofs(mode: str, cell_mask=None) -> tuple[np.ndarray, float, float]:
    """(mask (3, 3) of free strain components, hydrostatic flag, constant-volume flag) of a cell mode, or of a 3x3
    ``cell_mask`` (symmetrised; with ``mode='shape'`` also volume-preserving)."""
    if cell_mask is not None:
        m = np.asarray(cell_mask, dtype=bool)
        if m.shape != (3, 3):
            raise MtpjaxError(f"cell_mask must be a 3x3 boolean array, got shape {m.shape}")
        return (m | m.T).astype(np.float64), 0.0, 1.0 if mode == "shape" else 0.0
    if mode == "fixed":
        return np.zeros((3, 3)), 0.0, 0.0
    if mode in ("full", "volume", "shape"):
        return np.ones((3, 3)), 1.0 if mode == "volume" else 0.0, 1.0 if mode == "shape" else 0.0
    if mode == "normal":
        m = np.zeros((3, 3))
        m[2, 2] = 1.0
        return m, 0.0, 0.0
    raise MtpjaxError(f"unknown cell mode {mode!r}; known: {list(CELL_MODES)}")


def project(W, smask, hydro, constvol) -> np.ndarray:
    """A virial or stress (3x3) restricted to the free strain components, symmetrised (host side; the jitted twin
    is :func:`mtpjax.relax.fire.project`)."""
    W = 0.5 * (W + W.T) * smask
    if hydro:
        W = np.eye(3) * np.trace(W) / 3.0
    if constvol:
        W = W - np.eye(3) * np.trace(W) / 3.0
    return W


def per_structure(value, n: int, what: str, kinds=(list, tuple)) -> list:
    """``value`` as one entry per structure: a list/tuple of length n as is, anything else repeated."""
    if isinstance(value, kinds):
        if len(value) != n:
            raise MtpjaxError(f"relax: give one {what} per structure ({n}), or one for all; got {len(value)}")
        return list(value)
    return [value] * n


def free_components(n: int, positions: bool, fix) -> np.ndarray:
    """(n, 3) float mask of the position components FIRE moves: none with ``positions=False``, else all but the
    True entries of ``fix`` ((n, 3) bool or None)."""
    free = np.ones((n, 3)) if positions else np.zeros((n, 3))
    if fix is not None:
        fix = np.asarray(fix, dtype=bool)
        if fix.size != 3 * n:
            raise MtpjaxError(f"relax: fix must be an ({n}, 3) boolean array, got shape {fix.shape}")
        free = free * (~fix).reshape(n, 3)
    return free
