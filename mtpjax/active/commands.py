"""The ``mtpjax grade`` and ``mtpjax select`` commands (like MLIP-2's ``mlp calc-grade`` and ``mlp select-add``).

    mtpjax grade POT TRAIN IN OUT [--mode cfg|nbh]     MaxVol active set from TRAIN, grade of every structure of IN
                                                      (TRAIN '-': the active set stored with POT)
    mtpjax select POT TRAIN CANDIDATES OUT [--threshold 1.1]   candidates that enter the active set, to OUT

Inputs are MLIP ``.cfg`` or anything ASE reads (extended XYZ); OUT's format follows its suffix (``.cfg``, ``.xyz``,
``.extxyz``). ``grade`` writes the feature ``MV_grade`` (cfg) or ``info['MV_grade']`` (extxyz) per structure and, in
neighbourhood mode, the per-atom grades as the cfg column ``nbh_grades`` or the extxyz per-atom array ``nbh_grades``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from ..errors import MtpjaxError
from .domain import GRADE_THRESHOLD
from .maxvol import THRESHOLD_INIT, THRESHOLD_SELECT, THRESHOLD_SWAP, format_grade

#: Output formats of both commands, by OUT's suffix.
OUTPUT_FORMATS = {".cfg": "cfg", ".xyz": "extxyz", ".extxyz": "extxyz"}
#: Name of the per-atom grade column (cfg) and per-atom array (extxyz), as MLIP-3 names its cfg column.
ATOM_GRADE_COLUMN = "nbh_grades"


def _is_cfg(path) -> bool:
    return Path(path).suffix.lower() == ".cfg"


def read_input(path, species, n_species: int, what: str):
    """(items as read: Configurations for .cfg, else ASE Atoms; structure tuples for the rows). Errors name the file."""
    from ..evaluate import types_for_symbols
    from ..io import read_cfg, read_structures

    if _is_cfg(path):
        items = read_cfg(path)
        structures = [(c.positions, c.cell, c.cell is not None, c.types, f"{path}: configuration {k + 1}")
                      for k, c in enumerate(items)]
    else:
        items = read_structures(path)
        structures = []
        for k, a in enumerate(items):
            name = f"{path}: structure {k + 1}"
            types = a.arrays["mlip_type"] if "mlip_type" in a.arrays else types_for_symbols(
                a.get_chemical_symbols(), species, n_species, name)
            structures.append((a.positions, a.cell.array, a.pbc, types, name))
    if not items:
        raise MtpjaxError(f"{what} {path}: the file holds no configurations")
    return items, structures


def write_output(items, structures, path, species, info: list[dict] | None = None, columns: list[dict] | None = None):
    """Write ``items`` (Configurations or Atoms) to ``path`` in the format of its suffix, adding per structure the
    features ``info[k]`` (cfg feature / extxyz info) and per-atom ``columns[k]`` (cfg column / extxyz array).
    Positions and cells are written in full precision."""
    from ..io import atoms_to_configuration, configuration_to_atoms, write_cfg, write_structures
    from ..io.cfg import Configuration

    info = info or [{} for _ in items]
    columns = columns or [{} for _ in items]
    if _is_cfg(path):
        out = []
        for k, (x, s) in enumerate(zip(items, structures)):
            if not isinstance(x, Configuration):
                x = atoms_to_configuration(_with_types(x, s), species, index=k)
            features = [f for f in x.features if f[0] not in info[k]] + [(key, v) for key, v in info[k].items()]
            extra = {**x.extra_columns, **columns[k]}
            out.append(Configuration(types=x.types, positions=x.positions, cell=x.cell, energy=x.energy, forces=x.forces,
                                     plus_stress=x.plus_stress, features=features, ids=x.ids, extra_columns=extra))
        write_cfg(out, path, precision="full")
        return
    out = []
    for k, x in enumerate(items):
        a = configuration_to_atoms(x, species) if isinstance(x, Configuration) else x.copy()
        if isinstance(x, Configuration) and x.features:
            a.info.pop("mlip_features", None)
            a.info.update({key: v for key, v in x.features if key not in info[k]})
        if getattr(x, "calc", None) is not None:
            a.calc = x.calc
        a.info.update(info[k])
        for name, col in columns[k].items():
            a.arrays[name] = np.asarray(col, dtype=np.float64)
        out.append(a)
    write_structures(out, path, format="extxyz")


def _with_types(atoms, structure):
    """Atoms with an ``mlip_type`` column (the types evaluated), for the conversion to cfg."""
    if "mlip_type" not in atoms.arrays:
        atoms = atoms.copy()
        atoms.arrays["mlip_type"] = np.asarray(structure[3], dtype=np.int64)
    return atoms


def _prepare(args):
    from ..cli import check_output
    from ..model import load_mtp
    from .rows import check_mode

    check_output(args.output, OUTPUT_FORMATS)
    mode = check_mode(args.mode)
    mtp = load_mtp(args.potential, species=args.species)
    species = args.species or (list(mtp.species) if mtp.species else None)
    return mtp, species, mode


def _build(args, mtp, species, mode, threshold_select):
    from .grade import build_active_set, load_active_set, save_active_set

    if args.train == "-":  # the active set stored with the potential
        active = load_active_set(args.potential, mtp)
        if active is None:
            raise MtpjaxError(f"POT {args.potential}: no active set is stored with it (in a .mtpjax file, "
                              f"{args.potential}.active.json or an .almtp #MVS_v1.1 section); give TRAIN")
        if active.mode != mode and args.mode != "cfg":
            raise MtpjaxError(f"--mode {args.mode}: the active set stored with {args.potential} is in {active.mode} mode")
        return active, int(len(set(active.origin[active.origin >= 0].tolist())))
    _, train = read_input(args.train, species, mtp.n_species, "TRAIN")
    active = build_active_set(mtp, train, mode, threshold_init=args.threshold_init, threshold_select=threshold_select,
                              threshold_swap=args.swap_threshold, source=str(args.train))
    if getattr(args, "save_active_set", False):
        where = save_active_set(args.potential, active, mtp)
        _say(args, f"active set stored in {where}")
    return active, len(train)


def _say(args, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def cmd_grade(args) -> int:
    """``mtpjax grade``: the active set from TRAIN, then the grade of every structure of IN, written to OUT."""
    from .grade import grade

    t0 = time.perf_counter()
    mtp, species, mode = _prepare(args)
    active, n_train = _build(args, mtp, species, mode, args.select_threshold)
    mode = active.mode
    items, structures = read_input(args.input, species, mtp.n_species, "IN")
    g = grade(mtp, active, structures, source=str(args.input))
    info = [{"MV_grade": format_grade(x) if _is_cfg(args.output) else float(x)} for x in g.grades]
    columns = None
    if g.atom_grades is not None:
        columns = [{ATOM_GRADE_COLUMN: ag} for ag in g.atom_grades]
    write_output(items, structures, args.output, species, info, columns)
    n_active = int(np.sum(active.origin >= 0))
    above = int(np.sum(g.grades > args.report_threshold))
    _say(args, f"mtpjax grade: {len(structures)} structures graded ({mode} mode), max grade {float(np.max(g.grades)):.4g}, "
               f"{above} above {args.report_threshold:g}; active set: {n_active}/{active.n} rows from {n_train} training "
               f"configurations; {time.perf_counter() - t0:.1f} s -> {args.output}")
    return 0


def cmd_select(args) -> int:
    """``mtpjax select``: the candidates that enter the active set of TRAIN (MaxVol over all of them), to OUT."""
    from .grade import select_add

    t0 = time.perf_counter()
    mtp, species, mode = _prepare(args)
    # as MLIP-2's select-add: the training set is selected down to the swap threshold, the candidates above --threshold
    active, n_train = _build(args, mtp, species, mode, args.swap_threshold)
    mode = active.mode
    items, structures = read_input(args.candidates, species, mtp.n_species, "CANDIDATES")
    picked, _ = select_add(mtp, active, structures, threshold_select=args.threshold, threshold_swap=args.swap_threshold,
                           swap_limit=args.swap_limit, source=str(args.candidates))
    write_output([items[k] for k in picked], [structures[k] for k in picked], args.output, species)
    _say(args, f"mtpjax select: {len(picked)} of {len(structures)} candidates selected "
               f"({', '.join(str(k + 1) for k in picked) or 'none'}; {mode} mode, threshold {args.threshold:g}, training set "
               f"of {n_train}); {time.perf_counter() - t0:.1f} s -> {args.output}")
    return 0


def add_common(p) -> None:
    """The options shared by ``grade`` and ``select``."""
    p.add_argument("potential", metavar="POT", help="trained potential (.mtp, .almtp or .mtpjax)")
    p.add_argument("train", metavar="TRAIN",
                   help="training set the active set is built from (.cfg or extended XYZ); '-' uses the active set "
                        "stored with POT (.mtpjax metadata, POT.active.json, or MLIP-3's #MVS_v1.1 section of an .almtp)")
    p.add_argument("--mode", default="cfg", choices=["cfg", "nbh", "neighbourhood", "neighborhood"],
                   help="rows of the active set: cfg = one per configuration, dE/dθ / N (MLIP's default); nbh = one per "
                        "atom, dV_i/dθ (grades per atom; a structure's grade is its largest)")
    p.add_argument("--species", nargs="+", default=None,
                   help="element of each MTP type, in type order (for xyz input with several elements)")
    p.add_argument("--threshold-init", type=float, default=THRESHOLD_INIT,
                   help=f"the active set starts as this times the identity (MLIP-2: {THRESHOLD_INIT:g})")
    p.add_argument("--swap-threshold", type=float, default=THRESHOLD_SWAP,
                   help=f"MaxVol swaps rows until every grade is at most this (MLIP-2: {THRESHOLD_SWAP})")
    p.add_argument("--save-active-set", action="store_true",
                   help="store the active set with the potential: in a .mtpjax file's metadata, else as POT.active.json")
    p.add_argument("-q", "--quiet", action="store_true")


def add_grade_parser(subparsers, help_text: str):
    p = subparsers.add_parser("grade", help=help_text, description=help_text)
    add_common(p)
    p.add_argument("input", metavar="IN", help="structures to grade (.cfg or extended XYZ)")
    p.add_argument("output", metavar="OUT",
                   help="output file by its suffix: .cfg (feature MV_grade; column nbh_grades in nbh mode) or "
                        ".xyz/.extxyz (info MV_grade; per-atom array nbh_grades in nbh mode); checked before any work")
    p.add_argument("--select-threshold", type=float, default=THRESHOLD_SELECT,
                   help=f"the training set is selected only when a grade exceeds this (MLIP-2: {THRESHOLD_SELECT:g})")
    p.add_argument("--report-threshold", type=float, default=GRADE_THRESHOLD,
                   help=f"the summary line counts the structures graded above this (default {GRADE_THRESHOLD:g})")
    p.set_defaults(func=cmd_grade)
    return p


def add_select_parser(subparsers, help_text: str):
    p = subparsers.add_parser("select", help=help_text, description=help_text)
    add_common(p)
    p.add_argument("candidates", metavar="CANDIDATES", help="candidate structures (.cfg or extended XYZ)")
    p.add_argument("output", metavar="OUT",
                   help="the selected candidates, as read, in the order of the active set (.cfg, .xyz or .extxyz)")
    p.add_argument("--threshold", type=float, default=THRESHOLD_SELECT,
                   help=f"select only when a candidate's grade exceeds this (MLIP-2's select threshold: {THRESHOLD_SELECT:g})")
    p.add_argument("--swap-limit", type=int, default=None, help="at most this many MaxVol swaps (default: no limit)")
    p.set_defaults(func=cmd_select)
    return p
