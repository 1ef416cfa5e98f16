"""The ``mtpjax`` command line.

    mtpjax efs POT IN OUT [--species Mg ...]      energies, forces, stresses (like ``mlp calculate_efs``)
    mtpjax basis --level L [--species S] [--rmin A] [--rcut B] -o untrained.almtp
    mtpjax grade POT TRAIN IN OUT [--mode cfg|nbh]   extrapolation grades (like ``mlp calc-grade``)
    mtpjax select POT TRAIN CANDIDATES OUT         active selection (like ``mlp select-add``)

    mtpjax fit TRAIN... --level L --cutoff R -o OUT [--config FILE] [any FitConfig option]
    mtpjax sweep TRAIN... --levels L... --cutoffs R... -o DIR [--config FILE]

The options of ``fit`` and ``sweep`` are made from the dataclasses of :mod:`mtpjax.fit.config` (FitCommand,
SweepCommand: FitConfig, LossConfig and TrainOptions flattened) by :func:`mtpjax.config.add_options`, and their
``--config`` TOML files are read by the same :mod:`mtpjax.config`: the command line over the file over the dataclass
defaults.

Imports are lazy: ``mtpjax --help`` builds only stubs of the sub-commands whose options live elsewhere (fit, sweep,
generate, verify, run; the help lines of the last three are read from their modules' ``HELP``), and a command
imports only what it uses (``efs`` needs no fitting, generation or plotting code).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .progress import FIT_LOG_EVERY_S, FIT_LOG_EVERY_STEPS, fit_progress, progress_bar  # noqa: F401 (re-exported)


#: What ``efs`` writes, by OUT's suffix: MLIP's .cfg, extended XYZ, or an ASE trajectory.
EFS_OUTPUT_FORMATS = {".cfg": "cfg", ".xyz": "extxyz", ".extxyz": "extxyz", ".traj": "traj"}
#: Atoms per fixed-shape chunk of ``efs`` (at least; a larger structure makes its own bucket): every chunk of a
#: file has one padded shape that does not depend on the number of structures in it.
EFS_CHUNK_ATOMS = 512


def _validator(name: str):
    """The argparse type ``name`` of :mod:`mtpjax.fit.validate`, imported when first used (importing the fit
    package is slow, and ``efs`` and ``--help`` do not need it)."""
    def convert(value):
        from .fit import validate

        return getattr(validate, name)(value)

    convert.__name__ = convert.__qualname__ = name
    return convert


mtp_level, non_negative_float, non_negative_int, positive_float, positive_int = (
    _validator(n) for n in ("mtp_level", "non_negative_float", "non_negative_int", "positive_float", "positive_int"))


def _is_cfg(path) -> bool:
    return Path(path).suffix.lower() == ".cfg"


def check_output(path, formats: dict = EFS_OUTPUT_FORMATS, what: str = "OUT") -> str:
    """Check, before any work, that ``path`` can be written in a format known by its suffix; returns the format.
    Raises MtpjaxError naming ``what`` and the path (unknown suffix, a folder, a missing or unwritable folder)."""
    from .errors import MtpjaxError

    p = Path(path)
    fmt = formats.get(p.suffix.lower())
    if fmt is None:
        known = ", ".join(formats)
        raise MtpjaxError(f"{what} {path}: the output format is chosen by the suffix, and "
                          f"{repr(p.suffix) if p.suffix else 'no suffix'} is not one of {known}")
    if p.is_dir():
        raise MtpjaxError(f"{what} {path} is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise MtpjaxError(f"{what} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise MtpjaxError(f"{what} {path}: not writable (permission denied)")
    return fmt


def _check_species(species, mtp) -> None:
    from .errors import MtpjaxError

    if species is None:
        return
    if len(species) != mtp.n_species:
        raise MtpjaxError(f"--species: {len(species)} name(s) ({' '.join(species)}) for a potential with "
                          f"{mtp.n_species} type(s); give one element per type, in type order")
    twice = sorted({s for s in species if species.count(s) > 1})
    if twice:
        raise MtpjaxError(f"--species: {', '.join(twice)} named more than once ({' '.join(species)})")


def _check_domains(mtp, jobs, action: str) -> None:
    """Every structure of ``jobs`` (positions, cell, pbc, types, name) with atoms closer than the MTP's r_min: one
    warning (or OutOfDomainError) naming them all (:mod:`mtpjax.active.domain`)."""
    import numpy as np

    from .active.domain import domain_problems, min_distance, report
    from .neighbors import pairs

    r_min = getattr(mtp, "min_dist", None)
    if r_min is None or action == "ignore":
        return
    problems = []
    for positions, cell, pbc, _, name in jobs:
        close = pairs(positions, cell, pbc, float(r_min), name=name)
        if len(close[0]):
            problems += domain_problems(name, float(r_min), min_distance(positions, cell if cell is not None else np.eye(3), close))
    report(problems, action)


def cmd_efs(args) -> int:
    """Energies, forces and stresses of every structure of IN; OUT in the format of its suffix.

    OUT is checked first, and every structure is validated before anything is written: bad input writes no file.
    Structures are evaluated in fixed-shape chunks (:data:`EFS_CHUNK_ATOMS`), so a file of one configuration and a
    file of many configurations of the same cell run the same compiled program; the neighbours of a chunk are found
    while the previous chunk is evaluated.
    """
    from .errors import MtpjaxError

    out_format = check_output(args.output)

    from .evaluate import Evaluator, types_for_symbols
    from .io import Configuration, read_cfg, read_structures, write_cfg, write_structures
    from .model import load_mtp

    mtp = load_mtp(args.potential, species=args.species)
    _check_species(args.species, mtp)
    species = args.species or (list(mtp.species) if mtp.species else None)
    evaluator = Evaluator(mtp)
    t0 = time.perf_counter()
    if _is_cfg(args.input):
        configs = read_cfg(args.input)
        jobs = [(c.positions, c.cell, c.cell is not None, c.types, f"{args.input}: configuration {k + 1}")
                for k, c in enumerate(configs)]
    else:
        atoms_list = read_structures(args.input)
        jobs = []
        for k, a in enumerate(atoms_list):
            name = f"{args.input}: structure {k + 1}"
            types = a.arrays["mlip_type"] if "mlip_type" in a.arrays else types_for_symbols(
                a.get_chemical_symbols(), species, mtp.n_species, name)
            jobs.append((a.positions, a.cell.array, a.pbc, types, name))
    if not jobs:
        raise MtpjaxError(f"{args.input}: the file holds no configurations")
    _check_domains(mtp, jobs, getattr(args, "out_of_domain", "warn"))
    bar = progress_bar(len(jobs), "efs", "cfg", args.quiet)
    with bar:
        results = evaluator.many(jobs, progress=bar.update, chunk_atoms=EFS_CHUNK_ATOMS)
    if _is_cfg(args.input):
        structures = []
        for c, r in zip(configs, results):
            features = [f for f in c.features if f[0] != "EFS_by"] + [("EFS_by", "mtpjax")]
            structures.append(Configuration(types=c.types, positions=c.positions, cell=c.cell, energy=r.energy, forces=r.forces,
                                            plus_stress=r.plus_stress if c.cell is not None else None, features=features, ids=c.ids))
    else:
        from ase.calculators.singlepoint import SinglePointCalculator

        structures = []
        for a, r in zip(atoms_list, results):
            a = a.copy()
            extra = {"stress": r.stress} if a.pbc.all() else {}
            a.calc = SinglePointCalculator(a, energy=r.energy, free_energy=r.energy, forces=r.forces, energies=r.site_energies, **extra)
            structures.append(a)
    if out_format == "cfg":
        if not _is_cfg(args.input):
            import numpy as np

            from .io import atoms_to_configuration

            for a, job in zip(structures, jobs):  # the types evaluated (a one-species potential takes any one element)
                a.arrays.setdefault("mlip_type", np.asarray(job[3], dtype=np.int64))
            structures = [atoms_to_configuration(a, species, index=k) for k, a in enumerate(structures)]
        write_cfg(structures, args.output)
    else:
        if _is_cfg(args.input):
            from .io import configuration_to_atoms

            structures = [configuration_to_atoms(c, species) for c in structures]
        write_structures(structures, args.output, format=out_format)
    if not args.quiet:
        print(f"mtpjax efs: {len(results)} structures in {time.perf_counter() - t0:.2f} s -> {args.output}", file=sys.stderr)
    return 0


def cmd_basis(args) -> int:
    import numpy as np

    from .basis import generate_basis
    from .io import MTPFile, write_mtp

    b = generate_basis(args.level)
    f = MTPFile(
        potential_name="MTP1m",  # MLIP's own name for its templates
        species_count=args.species,
        min_dist=args.rmin,
        max_dist=args.rcut,
        radial_basis_size=args.radial_basis_size,
        radial_funcs_count=b.radial_funcs_count,
        alpha_moments_count=b.alpha_moments_count,
        alpha_index_basic=np.asarray(b.alpha_index_basic),
        alpha_index_times=np.asarray(b.alpha_index_times),
        alpha_moment_mapping=np.asarray(b.alpha_moment_mapping),
    )
    write_mtp(f, args.output)
    print(f"mtpjax basis: level {args.level}: {len(b.alpha_moment_mapping)} basis functions, "
          f"{len(b.alpha_index_basic)} basic moments, {b.radial_funcs_count} radial functions -> {args.output}", file=sys.stderr)
    return 0


def _load_training(opts):
    """(train records, test records, number of species, species names or None) of a FitCommand or SweepCommand.
    Without ``--species``, files whose atoms carry MLIP types (``mlip_type``, as ``mtpjax generate`` writes for
    alloys) give the species: type t is the element of the atoms of type t."""
    from .data import load_records, validate

    species = list(opts.species) if opts.species else None
    n_species = len(species) if species else 1
    train = [r for path in opts.train for r in load_records(path, species, n_species)]
    if species is None and any(len(r.types) and r.types.max() > 0 for r in train):
        species = _species_of_types(opts.train)
        n_species = len(species)
    validate(train, n_species)
    test = [r for path in (opts.test or ()) for r in load_records(path, species, n_species)]
    if test:
        validate(test, n_species)
    return train, test, n_species, species


def _species_of_types(paths) -> list[str]:
    """The element of each MLIP type 0..S-1 in the ``mlip_type`` arrays of extxyz files; MtpjaxError naming the file
    and structure when a type has two elements, or when a type is missing (then give --species)."""
    import ase.io

    from .errors import MtpjaxError

    element = {}
    for path in paths:
        for k, atoms in enumerate(ase.io.iread(str(path), index=":")):
            if "mlip_type" not in atoms.arrays:
                continue
            for t, symbol in zip(atoms.arrays["mlip_type"].tolist(), atoms.get_chemical_symbols()):
                if element.setdefault(int(t), symbol) != symbol:
                    raise MtpjaxError(f"{path}: structure {k + 1}: type {t} is {symbol} here and {element[int(t)]} before; "
                                      "give the species with --species")
    missing = [t for t in range(max(element, default=-1) + 1) if t not in element]
    if missing or not element:
        raise MtpjaxError(f"{', '.join(map(str, paths))}: several atom types but no element for type(s) {missing}; "
                          "give the species with --species")
    return [element[t] for t in range(len(element))]


def _fit_config(opts):
    """The FitConfig of a command's options, its linear solves cut to those before ``max_steps``."""
    import dataclasses

    cfg = opts.fit
    return dataclasses.replace(cfg, linear_solve_at=tuple(s for s in cfg.linear_solve_at if s < cfg.max_steps))


def _print_errors(result):
    for split in ("train", "test"):
        for subset, e in result.get(split, {}).items():
            print(f"{split:5s} {subset:10s} RMSE: energy {e.get('energy', float('nan')):.3f} meV/atom, forces "
                  f"{e.get('forces', float('nan')):.4f} eV/Å, stress {e.get('stress', float('nan')):.3f} GPa", file=sys.stderr)


def cmd_fit(args) -> int:
    """Fit an MTP to labelled structures (MLIP's objective; Levenberg-Marquardt by default). ``args.opts``: the
    :class:`mtpjax.fit.config.FitCommand` of the command line over the config file."""
    from . import fit as F

    o = args.opts
    out = Path(o.output)
    workdir = Path(o.workdir) if o.workdir else out.with_name(out.stem + ".fit")
    train, test, n_species, species = _load_training(o)
    cfg = _fit_config(o)
    bar, progress = fit_progress(cfg.max_steps, args.quiet)
    with bar:
        result = F.train_potential(train, test, level=o.level, cutoff=o.cutoff, rmin=o.options.rmin, seed=cfg.seed,
                                   n_species=n_species, species=species, cfg=cfg, workdir=workdir, output=out,
                                   resume=o.resume, devices=o.devices, max_batch_atoms=o.options.max_batch_atoms,
                                   init=o.options.init, force_constants=o.force_constants, progress=progress,
                                   log=lambda m: print(m, file=sys.stderr))
    _print_errors(result)
    if "force_constants" in result:
        fc = result["force_constants"]
        print(f"train force constants ({fc['structures']} structures) RMSE: {fc['rmse']:.4f} eV/Å²", file=sys.stderr)
    print(f"mtpjax fit: {result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU -> {out} (metrics, loss curve, checkpoint in {workdir})",
          file=sys.stderr)
    return 0


def cmd_sweep(args) -> int:
    """Fits over levels x cutoffs x training subsets x seeds; resumable; a CSV table and plots. ``args.opts``: the
    :class:`mtpjax.fit.config.SweepCommand` of the command line over the config file."""
    from .sweep import run_sweep

    o = args.opts
    train, test, n_species, species = _load_training(o)
    run_sweep(train, test, Path(o.output), levels=list(o.levels), cutoffs=list(o.cutoffs), subsets=list(o.subsets),
              seeds=list(o.seeds), cfg=_fit_config(o), n_species=n_species, species=species,
              init=o.options.init, max_batch_atoms=o.options.max_batch_atoms, rmin=o.options.rmin, group=o.group,
              log=lambda m: print(m, file=sys.stderr))
    return 0


#: Commands whose options come from a dataclass (:mod:`mtpjax.fit.config`, imported only when the command runs):
#: name -> (class name, help line, options deliberately not on the command line).
FIT_COMMANDS = {
    "fit": ("FitCommand", "fit an MTP to labelled structures (.cfg, extxyz, ASE db)", ()),
    "sweep": ("SweepCommand", "fits over levels x cutoffs x training subsets x seeds (resumable), with a table and plots",
              ("seed",)),  # the seeds are --seeds
}

#: Sub-commands defined in other modules: name -> module with ``add_parser(subparsers)`` and ``HELP``, its help line.
#: ``mtpjax --help`` reads each module's HELP from its source (:func:`command_help`) and imports none of them.
EXTERNAL_COMMANDS = {"generate": "mtpjax.generate.cli", "verify": "mtpjax.verify.cli", "run": "mtpjax.run_cli",
                     "md": "mtpjax.md.cli", "grade": "mtpjax.active.cli_grade", "select": "mtpjax.active.cli_select",
                     "learn": "mtpjax.active.cli_learn"}


def command_help(module: str) -> str:
    """The string constant ``HELP`` of ``module`` (a module of this package), read from its source without importing
    it (importing ``mtpjax.generate.cli`` would import the whole ``mtpjax.generate`` package)."""
    import ast

    path = Path(__file__).parent.joinpath(*module.split(".")[1:]).with_suffix(".py")
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HELP" for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{module} has no HELP string")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command``, the sub-commands of :data:`EXTERNAL_COMMANDS` other than ``command`` are
    stubs (their modules are not imported)."""
    p = argparse.ArgumentParser(prog="mtpjax", description="Moment Tensor Potentials in JAX")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("efs", help="energies, forces and stresses of configurations (like `mlp calculate_efs`)")
    e.add_argument("potential", help="trained MLIP .mtp/.almtp file")
    e.add_argument("input", help=".cfg or extended-xyz file")
    e.add_argument("output", metavar="OUT",
                   help="output file, in the format of its suffix: .cfg (MLIP's calculate_efs layout), .xyz or .extxyz "
                        "(extended XYZ with energy, forces, stress and per-atom energies) or .traj (ASE trajectory); "
                        "checked before any work")
    e.add_argument("--species", nargs="+", default=None,
                   help="element of each MTP type, in type order (needed for xyz input with several elements)")
    e.add_argument("--out-of-domain", choices=("warn", "error", "ignore"), default="warn",
                   help="structures with atoms closer than the potential's r_min: warn (default), error (exit 2, "
                        "nothing written) or ignore")
    e.add_argument("-q", "--quiet", action="store_true")
    e.set_defaults(func=cmd_efs)

    b = sub.add_parser("basis", help="write an untrained MTP (MLIP template) for a level")
    b.add_argument("--level", type=mtp_level, required=True, help="maximum level lev_max (2-28)")
    b.add_argument("--species", type=positive_int, default=1, help="number of species (default 1)")
    b.add_argument("--rmin", type=positive_float, default=2.0, help="min_dist r_min in Å (default 2.0)")
    b.add_argument("--rcut", type=positive_float, default=5.0, help="cutoff max_dist in Å (default 5.0)")
    b.add_argument("--radial-basis-size", type=positive_int, default=8, help="Chebyshev polynomials per radial function (default 8)")
    b.add_argument("-o", "--output", required=True)
    b.set_defaults(func=cmd_basis)

    for name, (cls_name, text, exclude) in FIT_COMMANDS.items():
        if command is None or command == name:
            _fit_command_parser(sub, name, cls_name, text, exclude)
        else:  # a stub: the options come from mtpjax.fit.config, whose import loads jax
            sub.add_parser(name, help=text, add_help=False)

    for name, module in EXTERNAL_COMMANDS.items():
        if command is None or command == name:
            import importlib

            importlib.import_module(module).add_parser(sub)
        else:  # a stub for the list of commands in --help: its module is imported only when it runs
            sub.add_parser(name, help=command_help(module), add_help=False)
    return p


def _fit_command_parser(sub, name: str, cls_name: str, text: str, exclude) -> None:
    """The parser of ``fit`` or ``sweep``: an option per field of its dataclass (:mod:`mtpjax.fit.config`; the fields
    of FitConfig, LossConfig and TrainOptions flattened), ``--config`` and ``-q``."""
    from . import config
    from .fit import config as fit_config

    cls = getattr(fit_config, cls_name)
    p = sub.add_parser(name, help=text)
    p.add_argument("--config", default=None,
                   help=f"TOML file whose [{name}] table (or top level) sets any of these options by its name "
                        "(max_steps = 500, orthonormalize = false); the command line overrides it; paths in it are "
                        "relative to the file")
    keys = config.add_options(p, cls, exclude=exclude, positional=("train",), names={"output": ["-o"]})
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_fit if name == "fit" else cmd_sweep, option_keys=keys, options_class=cls)


def read_config(path, command: str, cls) -> dict:
    """The keys of ``command``'s options set by a TOML file: its ``[command]`` table (or its top level, less other
    commands' tables, when it has none), checked against the dataclass ``cls`` (:func:`mtpjax.config.layer`: errors
    name the file and the key), paths made relative to the file."""
    from . import config
    from .io.tomlfile import read_toml

    path = Path(path)
    doc = read_toml(path)
    if command in doc:
        return config.layer(cls, doc[command], path=path, prefix=f"{command}.")
    table = {k: v for k, v in doc.items() if not (k in FIT_COMMANDS and isinstance(v, dict))}
    return config.layer(cls, table, path=path)


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the command line. For fit and sweep, ``opts`` is their dataclass (:mod:`mtpjax.fit.config`) from the
    command line over the ``--config`` file over the defaults; the required options are checked."""
    from .errors import MtpjaxError

    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), "")  # the top-level parser has no other options
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command in FIT_COMMANDS:
        from . import config

        cls = args.options_class
        from_file = read_config(args.config, args.command, cls) if args.config else {}
        args.opts = config.layered(cls, from_file, config.given(args, args.option_keys))
        for key, value in config.flat_values(args.opts).items():  # args.level, ...: the values in effect
            if key in args.option_keys:
                setattr(args, key, list(value) if isinstance(value, tuple) else value)  # lists, as argparse's
        missing = [k for k in cls.REQUIRED if getattr(args.opts, k) in (None, ())]
        if missing:
            names = ", ".join("TRAIN files" if k == "train" else config.option_name(k) for k in missing)
            raise MtpjaxError(f"give {names} (on the command line or in a --config file)")
    return args


def main(argv=None) -> int:
    from .errors import MtpjaxError

    try:
        args = parse_args(argv)
    except MtpjaxError as err:
        print(f"mtpjax: error: {err}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except MtpjaxError as err:
        print(f"mtpjax {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a missing input, a full disk, no permission: the message names the file
        print(f"mtpjax {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
