"""Fits with the force-constant term (``LossConfig.force_constant_weight``; :mod:`mtpjax.fit.residuals`) for every
full-batch optimiser:

    method = force_constant_method(cfg, force_constant_data(cells, cutoff))
    result = fit_models(models, batches, cfg, method=method)

- ``lm``: :class:`mtpjax.fit.loss.ForceConstantLM` (the term's normal equations added at every pass);
- ``lbfgs``/``bfgs``: :class:`ForceConstantGradient`: the optimiser's step on :func:`mtpjax.fit.loss.loss` with
  ``force_constants`` (its gradient: the fast gradient of the energy/force/virial terms plus plain autodiff through
  the MTP's exact Hessian), and MLIP's scheduled exact linear solves done on the loss with the term (the species and
  moment coefficients enter the Hessian linearly, so the elimination of :meth:`LevenbergMarquardt.system` is exact;
  relative ridge ``lm_ridge``);
- ``adam`` (minibatches) is refused: the term is full-batch.

With ``force_constant_weight`` 0 or no labelled structures, each method is exactly its plain counterpart.

From files (what :func:`mtpjax.fit.train_potential`, ``mtpjax fit --force-constants`` and ``mtpjax run`` use):
:func:`read_force_constant_labels` reads the structures that carry force constants (the per-atom array ``hessian``,
(N, 9N) eV/Å², of :func:`mtpjax.oracles.hessian.attach_force_constants`) from extended-XYZ files such as ``mtpjax
generate``'s ``HESSIAN.extxyz``, checking each label (:func:`check_force_constants`: shape, finite, symmetric);
:func:`mtpjax.io.write_structures` writes them at full precision (read back bit for bit).
"""
from __future__ import annotations

import hashlib
import os

import jax.numpy as jnp
import numpy as np

from ..errors import FormatError, MtpjaxError
from ..oracles.hessian import HESSIAN_KEY
from ..model import MTP
from .config import FitConfig
from .jacobian import n_parameters, unflatten
from .loss import ForceConstantLM
from .optimizers import GradientMethod

class ForceConstantGradient(GradientMethod):
    """L-BFGS or BFGS (:class:`mtpjax.fit.optimizers.GradientMethod`) on the loss with the force-constant term of the
    structures ``force_constants`` (:class:`~mtpjax.fit.residuals.ForceConstantData`): the structures go to the
    full-batch loss, and the scheduled linear solves eliminate the linear coefficients on the loss with the term."""

    def __init__(self, cfg: FitConfig, name: str, force_constants=()):
        if name == "adam":
            raise MtpjaxError("the force-constant term is full-batch: use optimizer lm, lbfgs or bfgs, not adam")
        super().__init__(cfg, name)
        # weight 0: no structures at all, so the method is exactly GradientMethod (the same compiled step)
        self.force_constants = tuple(force_constants) if cfg.loss.force_constant_weight != 0 else ()

    @property
    def active(self) -> bool:
        return bool(self.force_constants)

    def solve_linear(self, m: MTP, batches, n_structures: int):
        """As :meth:`GradientMethod.solve_linear`, on the loss with the term (the normal equations of
        :class:`~mtpjax.fit.loss.ForceConstantLM`)."""
        if not self.active:
            return super().solve_linear(m, batches, n_structures)
        theta, H, _, _ = ForceConstantLM(self.cfg, self.force_constants).system(m, batches, n_structures)
        m = unflatten(m, jnp.asarray(theta, m.moment_coeffs.dtype))
        return m, np.diag(H)[n_parameters(m)[0]:]


def force_constant_method(cfg: FitConfig, force_constants=()):
    """The method of ``cfg.method`` with the force-constant term of ``force_constants``, for
    :func:`mtpjax.fit.fit_models` (``method=``): :class:`~mtpjax.fit.loss.ForceConstantLM` or
    :class:`ForceConstantGradient`."""
    if cfg.method == "lm":
        return ForceConstantLM(cfg, force_constants)
    return ForceConstantGradient(cfg, cfg.method, force_constants)


# --------------------------------------------------------------------------------------------------
# labels from files

#: The largest asymmetry max |H - H^T| of a force-constant label accepted, relative to max(1 eV/Å², max |H|): force
#: constants are symmetric (exact autodiff: ~1e-13 relative; central differences are symmetrised; ASE's 8-decimal
#: extended XYZ rounds by 5e-9 eV/Å²), so anything larger is a wrong or transposed-and-mangled label.
SYMMETRY_TOLERANCE = 1e-6


def check_force_constants(atoms, where: str = "structure"):
    """The force constants (3N, 3N) eV/Å² stored with ``atoms`` (``atoms.arrays["hessian"]``, (N, 9N): row i holds
    rows 3i..3i+2 of H), or None when it has none. Raises :class:`MtpjaxError` starting with ``where`` (the file
    and structure) for a label of the wrong shape or type, with non-finite entries, or not symmetric within
    :data:`SYMMETRY_TOLERANCE`."""
    arr = atoms.arrays.get(HESSIAN_KEY)
    if arr is None:
        return None
    n = len(atoms)
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fiu":
        raise MtpjaxError(f"{where}: force constants arrays[{HESSIAN_KEY!r}] must be numbers, got {arr.dtype}")
    if arr.shape != (n, 9 * n):
        raise MtpjaxError(f"{where}: force constants arrays[{HESSIAN_KEY!r}] have shape {arr.shape}, expected "
                          f"({n}, {9 * n}) for {n} atoms (row i: rows 3i..3i+2 of the {3 * n} x {3 * n} Hessian, eV/Å²)")
    H = arr.astype(np.float64).reshape(3 * n, 3 * n)
    bad = ~np.isfinite(H)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise MtpjaxError(f"{where}: force constants have {int(bad.sum())} non-finite entries (first: H[{i}, {j}] = {H[i, j]})")
    asym = np.abs(H - H.T)
    scale = max(1.0, float(np.abs(H).max()))
    if asym.max() > SYMMETRY_TOLERANCE * scale:
        i, j = np.unravel_index(int(np.argmax(asym)), asym.shape)
        raise MtpjaxError(f"{where}: force constants are not symmetric: |H[{i}, {j}] - H[{j}, {i}]| = {asym[i, j]:.3g} "
                          f"eV/Å² > {SYMMETRY_TOLERANCE:g} x {scale:.3g} (H[{i}, {j}] = {H[i, j]:.6g}, H[{j}, {i}] = "
                          f"{H[j, i]:.6g}; H is d²E/dx dx, row 3i+a, column 3j+b)")
    return H


def _structure_key(positions, cell) -> bytes:
    return np.ascontiguousarray(positions, np.float64).tobytes() + np.ascontiguousarray(cell, np.float64).tobytes()


def read_force_constant_labels(paths, exclude=()) -> list:
    """The structures (``ase.Atoms``) of the files ``paths`` (one path or several; extended XYZ, e.g. ``mtpjax
    generate``'s ``HESSIAN.extxyz``, or anything :func:`mtpjax.io.read_structures` reads) that carry force constants,
    each checked by :func:`check_force_constants` (a bad one raises :class:`~mtpjax.errors.FormatError` naming the
    file, the structure and its line). Structures without force constants are skipped; a file list without any is an
    error. ``exclude``: records (:class:`mtpjax.data.Record`; e.g. a test split) whose structures (the same
    positions and cell, bit for bit) are dropped, so that a held-out structure's force constants are not fitted."""
    from ..io.extxyz import frame_lines, read_structures

    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise MtpjaxError("no force-constant files given")
    drop = {_structure_key(r.positions, r.cell) for r in exclude}
    out, n_dropped = [], 0
    for path in paths:
        path = os.fspath(path)
        if not os.path.exists(path):
            raise MtpjaxError(f"{path}: no such file (force-constant labels)")
        atoms = read_structures(path)
        lines = frame_lines(path) if path.lower().endswith((".xyz", ".extxyz")) else []
        for k, a in enumerate(atoms):
            name = a.info.get("id")
            where = f"structure {k + 1}" + (f" ({name})" if name is not None else "")
            try:
                H = check_force_constants(a, where)
            except MtpjaxError as e:
                raise FormatError(str(e), path=path, line=lines[k] if k < len(lines) else None) from None
            if H is None:
                continue
            if drop and _structure_key(a.positions, np.where(a.pbc[:, None], a.cell.array, 0.0)) in drop:
                n_dropped += 1
                continue
            out.append(a)
    if not out:
        what = ", ".join(os.fspath(p) for p in paths)
        why = f" ({n_dropped} that do are excluded, e.g. held out as the test set)" if n_dropped else ""
        raise MtpjaxError(f"{what}: no structure carries force constants{why}: expected the per-atom array "
                          f"{HESSIAN_KEY!r} of shape (N, 9N) eV/Å² (mtpjax generate's HESSIAN stage writes HESSIAN.extxyz; "
                          "mtpjax.oracles.hessian.attach_force_constants and mtpjax.io.write_structures write your own)")
    return out


def labels_digest(structures) -> str:
    """SHA-256 of the force-constant labels (positions, cell, force constants, weight) of ``structures``, in order:
    what a resumed fit must match."""
    h = hashlib.sha256()
    for a in structures:
        for x in (a.positions, a.cell.array, check_force_constants(a), [float(a.info.get("weight", 1.0))]):
            h.update(np.ascontiguousarray(x, np.float64).tobytes())
    return h.hexdigest()
