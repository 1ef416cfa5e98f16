"""``mtpjax md CONFIG [options]``: molecular dynamics of any potential from a TOML file (``docs/md.md``).

The file's ``[md]`` table (or its top level) holds the keys of :class:`mtpjax.md.config.MDCommand` (the potential,
the structure, the output folder) and :class:`mtpjax.md.config.MDSettings` (ensemble, steps, time step, ...); every
key is also a command-line option, which overrides the file (:mod:`mtpjax.config`). The output folder gets
``thermo.csv``, ``trajectory.extxyz`` (or ``.traj``), ``final.extxyz`` (the final frame, or the last good one of an
unstable run) and ``summary.json``.

Wire into the main CLI with ``add_parser(subparsers)``; the parser's ``func`` is :func:`main`.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

#: The one-line help of ``mtpjax md`` (``mtpjax --help`` reads it from this source without importing the package).
HELP = "molecular dynamics (NVE, NVT Nose-Hoover/Langevin, full-cell NPT) of any potential on jax-md, from a TOML config"


def add_parser(subparsers):
    """Add the ``md`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    from .. import config
    from .config import MDCommand

    p = subparsers.add_parser("md", help=HELP, description=(
        "Run MD from a TOML file: its [md] table (or top level) names the potential, the structure and the settings; "
        "every key is also an option below, which overrides the file. Writes thermo.csv, trajectory.extxyz (or .traj), "
        "final.extxyz and summary.json to the output folder (docs/md.md)."))
    p.add_argument("config", metavar="CONFIG", help="TOML file with an [md] table (or the keys at its top level)")
    keys = config.add_options(p, MDCommand, names={"output": ["-o"]})
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary line")
    p.set_defaults(func=main, option_keys=keys)
    return p


def load_command(path, overrides: dict | None = None):
    """The :class:`MDCommand` of a TOML file (its ``[md]`` table, or its top level) with ``overrides`` (keys as in
    the file) on top; paths relative to the file. Errors name the file and the key."""
    from .. import config
    from ..io.tomlfile import read_toml
    from .config import MDCommand

    path = Path(path)
    doc = read_toml(path)
    table, prefix = (doc["md"], "md.") if isinstance(doc.get("md"), dict) else (doc, "")
    from_file = config.layer(MDCommand, table, path=path, prefix=prefix)
    pot = from_file.get("potential")
    if isinstance(pot, str) and (path.parent / pot).is_file():  # a potential file beside the config
        from_file["potential"] = str(path.parent / pot)
    cmd = config.layered(MDCommand, from_file, overrides or {})
    missing = [k for k in MDCommand.REQUIRED if getattr(cmd, k) is None]
    if missing:
        from ..errors import ConfigError

        raise ConfigError(missing[0], "is required (in the config file or on the command line)", path)
    return cmd


def build_structure(cmd):
    """The starting ``ase.Atoms`` of an :class:`MDCommand`: read or built, repeated, rattled (seeded by ``seed``)."""
    import numpy as np

    from ..errors import MtpjaxError

    if cmd.structure is not None:
        from ..io import read_structures

        atoms = read_structures(cmd.structure, index=-1, species=list(cmd.species) if cmd.species else None)[0]
    else:
        from ase.build import bulk

        kw = {k: v for k, v in (("crystalstructure", cmd.crystal), ("a", cmd.a), ("c", cmd.c)) if v is not None}
        try:
            atoms = bulk(cmd.element, cubic=cmd.cubic, **kw)
        except (ValueError, KeyError, RuntimeError) as err:
            raise MtpjaxError(f"cannot build {cmd.element} {cmd.crystal or ''} with ase.build.bulk: {err}") from None
    atoms = atoms.repeat(tuple(cmd.repeat))
    if cmd.rattle > 0:
        rng = np.random.default_rng(cmd.settings.seed)
        atoms.positions += rng.normal(scale=cmd.rattle, size=atoms.positions.shape)
    return atoms


def run_command(cmd, *, progress: bool = False, echo=None) -> dict:
    """Run an :class:`MDCommand`; returns the summary (also written to ``summary.json``). An unstable run writes its
    files (the last good frame as ``final.extxyz``) and raises :class:`mtpjax.md.MDInstability`."""
    import dataclasses

    from ..io import write_structures
    from ..io.files import write_json
    from ..oracles import make_potential
    from .run import MDInstability, run_md

    out = Path(cmd.output)
    out.mkdir(parents=True, exist_ok=True)
    potential = make_potential(cmd.potential, species=list(cmd.species) if cmd.species else None)
    atoms = build_structure(cmd)
    trajectory = out / f"trajectory.{cmd.trajectory_format}"
    summary = {"config": dataclasses.asdict(cmd), "n_atoms": len(atoms), "files": {
        "log": "thermo.csv", "trajectory": trajectory.name, "final": "final.extxyz"}}
    t0 = time.perf_counter()
    try:
        grading = {} if cmd.active_set is None else {"active_set": cmd.active_set,
                                                     "extrapolative": out / "extrapolative.extxyz"}
        result = run_md(potential, atoms, species=cmd.species, trajectory=trajectory, log=out / "thermo.csv",
                        progress=progress, **grading, **cmd.settings.run_kwargs())
    except MDInstability as err:
        if err.atoms is not None:
            write_structures([err.atoms], out / "final.extxyz", format="extxyz")
        summary.update(stopped=str(err), steps=err.step, wall_s=time.perf_counter() - t0)
        write_json(out / "summary.json", summary)
        raise
    write_structures([result.atoms], out / "final.extxyz", format="extxyz")
    half = result.log[len(result.log) // 2:]  # the second half, for means
    means = {k: sum(r[k] for r in half) / len(half) for k in ("temperature_K", "pressure_GPa", "volume_A3", "potential_energy_eV",
                                                               "a_A", "b_A", "c_A")} if half else {}
    summary.update(steps=result.steps, wall_s=result.wall_s, neighbour_builds=result.builds,
                   reallocations=result.reallocations, capacity=result.capacity, second_half_means=means,
                   max_grade=None if cmd.active_set is None else result.max_grade, extrapolative=result.extrapolative,
                   atom_steps_per_s=len(atoms) * result.steps / max(result.wall_s, 1e-9))
    write_json(out / "summary.json", summary)
    if echo:
        echo(f"mtpjax md: {result.steps} steps of {cmd.settings.ensemble} on {len(atoms)} atoms in {result.wall_s:.1f} s; "
             f"mean T {means.get('temperature_K', float('nan')):.1f} K, P {means.get('pressure_GPa', float('nan')):.3f} GPa "
             f"(second half) -> {out}")
    return summary


def main(args) -> int:
    """Run ``mtpjax md``. Errors (MtpjaxError, an unstable run included) propagate to the main CLI (exit 2)."""
    from .. import config

    cmd = load_command(args.config, config.given(args, args.option_keys))
    quiet = getattr(args, "quiet", False)
    run_command(cmd, progress=not quiet and sys.stderr.isatty(), echo=None if quiet else (lambda m: print(m, file=sys.stderr)))
    return 0
