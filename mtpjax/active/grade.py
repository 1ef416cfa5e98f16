"""Active sets of trained MTPs, extrapolation grades of structures and active selection (like MLIP-2's
``mlp calc-grade`` and ``mlp select-add``), and storing the active set with the potential.

    active = build_active_set(mtp, read_cfg("train.cfg"))               # MaxVol over the training set
    g = grade(mtp, active, read_cfg("new.cfg"))                         # g.grades: γ per structure
    picked, active2 = select_add(mtp, active, read_cfg("candidates.cfg"))  # candidates that enter the active set

Structures are :class:`mtpjax.io.Configuration` objects, ASE Atoms with an ``arrays['mlip_type']`` column, or
(positions Å, cell Å, pbc, types, name) tuples. Grades are dimensionless (γ ≤ 1: interpolation).

Storage: in a ``.mtpjax`` potential the active set goes into the header's metadata (key ``active_set``; a potential
without one loads as before); next to an MLIP ``.mtp``/``.almtp`` it is a JSON file ``POT.active.json``
(:func:`active_set_path`). :func:`load_active_set` also reads MLIP-3's own section of an ``.almtp`` (``#MVS_v1.1``),
and :func:`mtpjax.active.almtp.write_almtp` writes one (:mod:`mtpjax.active.almtp`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FormatError, MtpjaxError
from .compat import check_active_set, fingerprint
from .maxvol import THRESHOLD_INIT, THRESHOLD_SELECT, THRESHOLD_SWAP, ActiveSet
from .rows import check_mode, rows

__all__ = ["Grades", "build_active_set", "grade", "select_add", "check_active_set", "fingerprint", "active_set_path",
           "save_active_set", "load_active_set"]

#: Metadata key of the active set in a ``.mtpjax`` potential.
METADATA_KEY = "active_set"
#: Suffix of the active-set file next to an MLIP potential.
SIDECAR_SUFFIX = ".active.json"


@dataclass
class Grades:
    """Extrapolation grades: ``grades`` (n_structures,) γ per structure; ``atom_grades`` a list of (N_k,) arrays, γ of
    each atom (neighbourhood mode only, else None)."""

    grades: np.ndarray
    atom_grades: list | None = None


def build_active_set(mtp, training, mode: str = "cfg", threshold_init: float = THRESHOLD_INIT,
                     threshold_select: float = THRESHOLD_SELECT, threshold_swap: float = THRESHOLD_SWAP,
                     source: str = "training set") -> ActiveSet:
    """The MaxVol active set of ``mtp`` over the structures ``training`` (MLIP-2's ``calc-grade`` first step): rows
    tagged by their structure's index in ``training``."""
    mode = check_mode(mode)
    B, owner = rows(mtp, list(training), mode, source)
    if B.shape[0] == 0:
        raise MtpjaxError(f"{source}: no configurations to build the active set from")
    start = ActiveSet.initial(B.shape[1], mode, threshold_init, fingerprint(mtp))
    return start.select(B, owner, threshold_select, threshold_swap, equations=_equations(owner))[0]


def _equations(owner) -> np.ndarray:
    """The row of each row within its structure (0 in cfg mode, the atom in nbh mode); rows grouped by structure."""
    owner = np.asarray(owner)
    first = np.searchsorted(owner, owner, side="left") if len(owner) and np.all(np.diff(owner) >= 0) else None
    if first is None:
        raise ValueError("rows must be grouped by structure")
    return np.arange(len(owner)) - first


def grade(mtp, active: ActiveSet, structures, source: str = "structures") -> Grades:
    """Grades of ``structures`` against ``active`` (in the active set's mode)."""
    check_active_set(mtp, active)
    structures = list(structures)
    B, owner = rows(mtp, structures, active.mode, source)
    g = active.grades(B)
    if active.mode == "cfg":
        return Grades(grades=g)
    per_structure = np.zeros(len(structures))
    np.maximum.at(per_structure, owner, g)
    return Grades(grades=per_structure, atom_grades=[g[owner == k] for k in range(len(structures))])


def select_add(mtp, active: ActiveSet, candidates, threshold_select: float = THRESHOLD_SELECT,
               threshold_swap: float = THRESHOLD_SWAP, swap_limit: int | None = None,
               source: str = "candidates") -> tuple[list[int], ActiveSet]:
    """MLIP-2's ``select-add``: MaxVol selection over all ``candidates`` at once, starting from ``active``.

    Returns (indices of the candidates now in the active set, in the order of the active set's rows, each once; the
    new active set, whose ``origin`` tags candidates k as -(k + 2) so they stay apart from the training indices).
    """
    check_active_set(mtp, active)
    B, owner = rows(mtp, list(candidates), active.mode, source)
    new, _ = active.select(B, -(owner + 2), threshold_select, threshold_swap, swap_limit, equations=_equations(owner))
    picked = []
    for o in new.origin.tolist():
        if o <= -2 and -(o + 2) not in picked:
            picked.append(-(o + 2))
    return picked, new


# ------------------------------------------------------------------------------------------------ storage
def active_set_path(potential_path) -> Path:
    """Where the active set of a potential is stored: the ``.mtpjax`` file itself, else ``POT.active.json`` next to
    an MLIP potential."""
    p = Path(potential_path)
    from ..io.native import SUFFIX

    return p if p.suffix == SUFFIX else p.with_name(p.name + SIDECAR_SUFFIX)


def save_active_set(potential_path, active: ActiveSet, mtp=None) -> Path:
    """Store ``active`` with the potential at ``potential_path`` (see the module docstring); returns the file written.

    For a ``.mtpjax`` file the potential is rewritten (atomically) with the active set in its metadata; ``mtp`` (the
    potential, optional) is checked against the active set first.
    """
    from ..io.files import write_json
    from ..io.native import read_native, write_native

    target = active_set_path(potential_path)
    if target == Path(potential_path):
        stored, metadata = read_native(potential_path)
        check_active_set(mtp if mtp is not None else stored, active, f"the active set for {potential_path}")
        metadata = dict(metadata)
        metadata[METADATA_KEY] = active.to_dict()
        write_native(stored, potential_path, metadata)
    else:
        if mtp is not None:
            check_active_set(mtp, active, f"the active set for {potential_path}")
        write_json(target, active.to_dict(), indent=None)
    return target


def load_active_set(potential_path, mtp=None) -> ActiveSet | None:
    """The active set stored with the potential at ``potential_path`` (``.mtpjax`` metadata, ``POT.active.json``, or
    else MLIP-3's ``#MVS_v1.1`` section of the file itself), or None if there is none. With ``mtp``, the active set is
    checked to belong to it (MtpjaxError otherwise). Malformed data raise FormatError naming the file."""
    from ..io.files import read_json
    from ..io.native import FORMAT, VERSION
    from ..io import eqxfile

    target = active_set_path(potential_path)
    if target == Path(potential_path):
        header = eqxfile.read_header(target, FORMAT, VERSION, what="an mtpjax potential")
        data = (header.get("metadata") or {}).get(METADATA_KEY)
    else:
        if not target.exists():  # MLIP-3's own active set in the potential file (#MVS_v1.1), if any
            from .almtp import read_active_set

            active = read_active_set(potential_path)
            if active is not None and mtp is not None:
                check_active_set(mtp, active, f"the active set in {potential_path}")
            return active
        data = read_json(target, "active set")
    if data is None:
        return None
    if not isinstance(data, dict):
        raise FormatError("bad active set (not a JSON object)", target)
    active = ActiveSet.from_dict(data, target)
    if mtp is not None:
        check_active_set(mtp, active, f"the active set in {target}")
    return active
