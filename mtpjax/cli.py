"""The ``mtpjax`` command line.

    mtpjax efs POT IN OUT [--species Mg ...]      energies, forces, stresses (like ``mlp calculate_efs``)
    mtpjax basis --level L [--species S] [--rmin A] [--rcut B] -o untrained.almtp

Imports are lazy: ``mtpjax --help`` builds only stubs of the sub-commands defined elsewhere (generate, verify,
run), and a command imports only what it uses (``efs`` needs no fitting, generation or plotting code).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .run_cli import HELP as RUN_HELP

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
    if len(species) > mtp.n_species:
        raise MtpjaxError(f"--species: {len(species)} names ({' '.join(species)}) for a potential with "
                          f"{mtp.n_species} type(s); give at most one element per type, in type order")
    twice = sorted({s for s in species if species.count(s) > 1})
    if twice:
        raise MtpjaxError(f"--species: {', '.join(twice)} named more than once ({' '.join(species)})")


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
    bar = _progress_bar(len(jobs), "efs", "cfg", args.quiet)
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


def _progress_bar(total: int, desc: str, unit: str, quiet: bool):
    """A tqdm bar on a terminal; otherwise a do-nothing stand-in (tqdm is imported only for a terminal)."""
    if quiet or not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit)


class _NoBar:
    n = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        self.n += n

    def set_postfix(self, *a, **k):
        pass


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


def _load_training(args):
    from .data import load_records, validate

    n_species = len(args.species) if args.species else 1
    train = [r for path in args.train for r in load_records(path, args.species, n_species)]
    validate(train, n_species)
    test = [r for path in (args.test or []) for r in load_records(path, args.species, n_species)]
    if test:
        validate(test, n_species)
    return train, test, n_species


def _fit_config(args):
    from . import fit as F

    loss = F.LossConfig(energy_weight=args.energy_weight, force_weight=args.force_weight, stress_weight=args.stress_weight)
    cfg = F.FitConfig(max_steps=args.max_steps, checkpoint_every=args.checkpoint_every, method=args.optimizer, loss=loss,
                      learning_rate=args.learning_rate, orthonormalize=args.orthonormalize,
                      validation_fraction=args.validation_fraction)
    cfg.linear_solve_at = tuple(s for s in args.linear_solve_at if s < cfg.max_steps)
    return cfg


def _print_errors(result):
    for split in ("train", "test"):
        for subset, e in result.get(split, {}).items():
            print(f"{split:5s} {subset:10s} RMSE: energy {e.get('energy', float('nan')):.3f} meV/atom, forces "
                  f"{e.get('forces', float('nan')):.4f} eV/Å, stress {e.get('stress', float('nan')):.3f} GPa", file=sys.stderr)


#: Without a terminal (a batch job's log file), ``fit`` prints a progress line every this many steps ...
FIT_LOG_EVERY_STEPS = 10
#: ... or when this many seconds have passed since the last one.
FIT_LOG_EVERY_S = 30.0


def fit_progress(max_steps: int, quiet: bool, stream=None, every_steps: int = FIT_LOG_EVERY_STEPS,
                 every_s: float = FIT_LOG_EVERY_S):
    """(context manager, ``progress(k, loss)`` callback) for a fit: a tqdm bar on a terminal; with output that is
    not a terminal, one line "fit: step K/MAX, loss L, T s" at step 1, then every ``every_steps`` steps or
    ``every_s`` seconds, and at the last step; nothing when ``quiet``."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return _NoBar(), (lambda k, val: None)
    if stream.isatty():
        from tqdm import tqdm

        bar = tqdm(total=max_steps, desc="fit", unit="step", file=stream)

        def progress(k, val):
            bar.n = k + 1
            bar.set_postfix(loss=f"{val:.4g}", refresh=False)
            bar.update(0)

        return bar, progress
    t0 = time.perf_counter()
    last = [t0]

    def log(k, val):
        now = time.perf_counter()
        step = k + 1
        if step == 1 or step % every_steps == 0 or step >= max_steps or now - last[0] >= every_s:
            last[0] = now
            try:
                loss = f"{float(val):.6g}"
            except TypeError:  # several models fitted together: one loss each
                loss = " ".join(f"{float(v):.6g}" for v in val)
            print(f"fit: step {step}/{max_steps}, loss {loss}, {now - t0:.1f} s", file=stream, flush=True)

    return _NoBar(), log


def cmd_fit(args) -> int:
    """Fit an MTP to labelled structures (MLIP's objective, exact linear solve, full-batch L-BFGS)."""
    from . import fit as F

    out = Path(args.output)
    workdir = Path(args.workdir) if args.workdir else out.with_name(out.stem + ".fit")
    train, test, n_species = _load_training(args)
    cfg = _fit_config(args)
    bar, progress = fit_progress(cfg.max_steps, args.quiet)
    with bar:
        result = F.train_potential(train, test, level=args.level, cutoff=args.cutoff, rmin=args.rmin, seed=args.seed,
                                   n_species=n_species, species=args.species, cfg=cfg, workdir=workdir, output=out,
                                   resume=args.resume, devices=args.devices, max_batch_atoms=args.max_batch_atoms, init=args.init,
                                   progress=progress, log=lambda m: print(m, file=sys.stderr))
    _print_errors(result)
    print(f"mtpjax fit: {result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU -> {out} (metrics, loss curve, checkpoint in {workdir})",
          file=sys.stderr)
    return 0


def cmd_sweep(args) -> int:
    """Fits over levels x cutoffs x training subsets x seeds; resumable; a CSV table and plots."""
    from .sweep import run_sweep

    train, test, n_species = _load_training(args)
    run_sweep(train, test, Path(args.output), levels=args.levels, cutoffs=args.cutoffs, subsets=args.subsets, seeds=args.seeds,
              cfg=_fit_config(args), n_species=n_species, species=args.species, init=args.init,
              max_batch_atoms=args.max_batch_atoms, group=args.group, log=lambda m: print(m, file=sys.stderr))
    return 0


#: Sub-commands defined in other modules: name -> (module with ``add_parser(subparsers)``, its help line). The
#: help lines repeat the modules' own (a test checks they agree) so that ``mtpjax --help`` imports none of them.
EXTERNAL_COMMANDS = {
    "generate": ("mtpjax.generate.cli", "generate a training set (RANDSPG -> VOLMIN -> CELLMIN -> INTMIN -> "
                                        "TRIAX/SHEAR/RATTLE) labelled with an oracle"),
    "verify": ("mtpjax.verify.cli", "verify a potential against its oracle (EOS, strain, elastic, phonons, vacancy, planar "
                                    "faults): JSON metrics, PNG figures, a markdown summary"),
    "run": ("mtpjax.run_cli", RUN_HELP),
}


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

    f = sub.add_parser("fit", help="fit an MTP to labelled structures (.cfg, extxyz, ASE db)")
    f.add_argument("--level", type=mtp_level, help="MTP level (2-28); required")
    f.add_argument("--cutoff", type=positive_float, help="cutoff R_cut in Å; required")
    f.add_argument("--rmin", type=positive_float, default=None, help="r_min in Å (default: 0.99 x the shortest training distance, as MLIP-3)")
    f.add_argument("--seed", type=non_negative_int, default=0, help="seed of the initial radial coefficients (default 0)")
    _fit_options(f)
    f.add_argument("--workdir", default=None, help="checkpoint, metrics and plots (default: OUT's name + .fit)")
    f.add_argument("--resume", action="store_true", help="continue from the checkpoint in the work folder")
    f.add_argument("--devices", type=positive_int, default=1,
                   help="data-parallel over this many jax devices (GPUs; on CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N)")
    f.add_argument("-o", "--output", help="fitted potential: .almtp (MLIP, LAMMPS) and, beside it, mtpjax's exact .mtpjax; required")
    f.set_defaults(func=cmd_fit)

    w = sub.add_parser("sweep", help="fits over levels x cutoffs x training subsets x seeds (resumable), with a table and plots")
    w.add_argument("--levels", type=mtp_level, nargs="+", help="MTP levels; required")
    w.add_argument("--cutoffs", type=positive_float, nargs="+", help="cutoffs in Å; required")
    w.add_argument("--subsets", nargs="+", default=["all"],
                   help="training subsets by tag ('all' = every structure; 'A+B' = the union of A and B); default all")
    w.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0], help="seeds (default 0)")
    w.add_argument("--group", choices=["auto", "level", "seed", "none"], default="auto",
                   help="runs trained together in one compiled program: level (all cutoffs and seeds of a level, data "
                        "packed at the largest cutoff), seed (the seeds of each cutoff), none, or auto (default: seed "
                        "for the default optimiser lm, which steps its models in turn; level for the gradient "
                        "optimisers, whose one vmapped step advances the whole group)")
    _fit_options(w)
    w.add_argument("-o", "--output", help="sweep folder: runs/, results.csv, plots; required")
    w.set_defaults(func=cmd_sweep)

    for name, (module, text) in EXTERNAL_COMMANDS.items():
        if command is None or command == name:
            import importlib

            importlib.import_module(module).add_parser(sub)
        else:  # a stub for the list of commands in --help: its module is imported only when it runs
            sub.add_parser(name, help=text, add_help=False)
    return p


def _fit_options(f) -> None:
    """Options shared by fit and sweep."""
    f.add_argument("train", nargs="*", help="training data files (.cfg, extxyz, ASE db); required")
    f.add_argument("--config", default=None,
                   help="TOML file whose [fit] (or [sweep]) table sets any of these options by name (max_steps = 500); "
                        "options on the command line override it; paths in it are relative to the file")
    f.add_argument("--test", nargs="+", default=None, help="test data files (errors reported, never fitted)")
    f.add_argument("--species", nargs="+", default=None, help="element of each MTP type (default: one species)")
    f.add_argument("--max-steps", type=positive_int, default=None,
                   help="most optimiser steps (default: the optimiser's own, mtpjax.fit.config.DEFAULT_MAX_STEPS: 200 "
                        "Levenberg-Marquardt iterations, which stop by their own convergence test; 1000 for the others)")
    f.add_argument("--checkpoint-every", type=positive_int, default=50, help="steps between checkpoints (default 50)")
    f.add_argument("--linear-solve-at", type=non_negative_int, nargs="*", default=[0, 25, 70, 100, 150, 250, 400],  # mtpjax.fit.MLIP_LINEAR_SOLVES
                   help="lbfgs, bfgs, adam: steps at which species and moment coefficients are re-solved exactly and "
                        "the optimiser restarts (default: MLIP-3's 0 25 70 100 150 250 400; lm eliminates them exactly "
                        "at every step)")
    f.add_argument("--optimizer", choices=["lm", "lbfgs", "bfgs", "adam"], default="lm",
                   help="lm (Levenberg-Marquardt with variable projection on the exact residual Jacobian, default), "
                        "lbfgs (optax L-BFGS, full batch), bfgs (dense inverse Hessian, as MLIP) or adam "
                        "(minibatches of --max-batch-atoms atoms, for data sets larger than device memory)")
    f.add_argument("--no-orthonormalize", dest="orthonormalize", action="store_false",
                   help="do not Gram-Schmidt the radial coefficient vectors before each linear solve (by default it is "
                        "done, as MLIP's LinOptimize does)")
    f.add_argument("--validation-fraction", type=non_negative_float, default=0.0,
                   help="hold out this fraction of the training structures (seeded by --seed): every step (lm) or 10 "
                        "steps (the others) the loss on them is evaluated, the parameters with the best one are kept, and a fit stops after 5 "
                        "evaluations without improvement (default 0: no early stopping)")
    f.add_argument("--learning-rate", type=positive_float, default=1e-3, help="Adam's peak learning rate (cosine decay; default 1e-3)")
    f.add_argument("--energy-weight", type=non_negative_float, default=1.0, help="energy weight (default 1, MLIP)")
    f.add_argument("--force-weight", type=non_negative_float, default=0.01, help="force weight (default 0.01, MLIP)")
    f.add_argument("--stress-weight", type=non_negative_float, default=0.001, help="virial weight (default 0.001, MLIP)")
    f.add_argument("--init", choices=["mlip", "random"], default="mlip",
                   help="radial start: mlip (function mu = Chebyshev T_mu, as MLIP-3; default) or random orthonormal")
    f.add_argument("--max-batch-atoms", type=positive_int, default=100000, help="atoms per packed batch (default: all in one)")
    f.add_argument("-q", "--quiet", action="store_true")


#: Options that must be given on the command line or in the config, per command.
_REQUIRED = {"fit": ("train", "level", "cutoff", "output"), "sweep": ("train", "levels", "cutoffs", "output")}
#: Config keys holding paths (resolved relative to the config file).
_PATH_KEYS = ("train", "test", "output", "workdir")


def read_config(path, command: str, parser: argparse.ArgumentParser) -> dict:
    """The options of ``command`` from a TOML file: its ``[command]`` table (or its top level when it has no such
    table), checked against ``parser``'s options, converted to their types, paths made relative to the file."""
    from .errors import FormatError
    from .io.tomlfile import read_toml

    path = Path(path)
    doc = read_toml(path)
    table = doc.get(command, doc)
    if not isinstance(table, dict):
        raise FormatError(f"[{command}] must be a table", path)
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config", "func")}
    out = {}
    for key, value in table.items():
        dest = key.replace("-", "_")
        if isinstance(value, dict) and key in _REQUIRED:
            continue  # another command's table
        if dest not in actions:
            raise FormatError(f"unknown option {key!r} in [{command}]; known: {', '.join(sorted(actions))}", path)
        a = actions[dest]
        if a.nargs == 0:  # a flag (--resume): a TOML boolean, never a string such as "false"
            if not isinstance(value, bool):
                raise FormatError(f"option {key!r}: {value!r} is not a boolean (write {key} = true or false)", path)
            out[dest] = value  # the key is the option's destination (orthonormalize = false, resume = true)
            continue
        many = a.nargs in ("+", "*") or (isinstance(a.nargs, int) and a.nargs > 0)
        if many and not isinstance(value, list):
            value = [value]

        def convert(v, a=a, key=key):
            # the value goes through the option's own type as its command-line text would: 8.7 is not an int, and a
            # boolean is no number or name
            if isinstance(v, (bool, dict, list)):
                raise ValueError(f"a {type(v).__name__} where the option takes {'text' if a.type is None else 'a value'}")
            if a.type is None:
                if not isinstance(v, str):
                    raise ValueError("a string is expected")
                return v
            return a.type(str(v))

        try:
            value = [convert(v) for v in value] if many else convert(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
            raise FormatError(f"option {key!r}: {value!r} is not a valid value ({err})", path) from err
        if a.choices is not None and any(v not in a.choices for v in (value if many else [value])):
            raise FormatError(f"option {key!r}: {value!r} is not one of {list(a.choices)}", path)
        if dest in _PATH_KEYS and value is not None:
            value = [str(path.parent / v) for v in value] if many else str(path.parent / value)
        out[dest] = value
    return out


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the command line, with a ``--config`` file's options as defaults; checks the required options."""
    from .errors import MtpjaxError

    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), "")  # the top-level parser has no other options
    parser = build_parser(command)
    args = parser.parse_args(argv)
    sub = parser._subparsers._group_actions[0].choices.get(args.command) if parser._subparsers else None
    if args.command in _REQUIRED and getattr(args, "config", None):  # (generate reads its own recipe)
        sub.set_defaults(**read_config(args.config, args.command, sub))
        args = parser.parse_args(argv)
    missing = [k for k in _REQUIRED.get(args.command, ()) if getattr(args, k) in (None, [])]
    if missing:
        names = ", ".join("TRAIN files" if k == "train" else "--" + k for k in missing)
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
