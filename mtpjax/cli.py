"""The ``mtpjax`` command line.

    mtpjax efs POT IN OUT [--species Mg ...]      energies, forces, stresses (like ``mlp calculate_efs``)
    mtpjax basis --level L [--species S] [--rmin A] [--rcut B] -o untrained.almtp
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _is_cfg(path) -> bool:
    return Path(path).suffix.lower() == ".cfg"


def cmd_efs(args) -> int:
    """Energies, forces and stresses of every structure of IN; OUT in the format of its suffix.

    Every structure is validated before anything is computed or written: bad input writes no file.
    """
    from tqdm import tqdm

    from .evaluate import Evaluator, types_for_symbols
    from .io import Configuration, read_cfg, read_structures, write_cfg, write_structures
    from .model import load_mtp

    mtp = load_mtp(args.potential, species=args.species)
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
    with tqdm(total=len(jobs), desc="efs", unit="cfg", disable=args.quiet or not sys.stderr.isatty()) as bar:
        results = evaluator.many(jobs, progress=bar.update)
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
    if _is_cfg(args.output):
        if not _is_cfg(args.input):
            from .io import atoms_to_configuration

            structures = [atoms_to_configuration(a, species, index=k) for k, a in enumerate(structures)]
        write_cfg(structures, args.output)
    else:
        if _is_cfg(args.input):
            from .io import configuration_to_atoms

            structures = [configuration_to_atoms(c, species) for c in structures]
        write_structures(structures, args.output)
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


def cmd_fit(args) -> int:
    """Fit an MTP to labelled structures (MLIP's objective, exact linear solve, full-batch L-BFGS)."""
    import json
    import warnings

    import numpy as np
    from tqdm import tqdm

    from . import fit as F
    from .basis import generate_basis
    from .data import load_records, pack_records, validate
    from .errors import MtpjaxError
    from .model import save_mtp

    out = Path(args.output)
    workdir = Path(args.workdir) if args.workdir else out.with_name(out.stem + ".fit")
    workdir.mkdir(parents=True, exist_ok=True)
    n_species = len(args.species) if args.species else 1
    train = [r for path in args.train for r in load_records(path, args.species, n_species)]
    validate(train, n_species)
    test = [r for path in (args.test or []) for r in load_records(path, args.species, n_species)]
    if test:
        validate(test, n_species)
    t0, c0 = time.perf_counter(), time.process_time()
    if args.devices > 1:  # data-parallel: one group of structures per device
        from .data import pack_for_devices, unstack

        stacked, subsets = pack_for_devices(train, args.cutoff, args.devices)
        fit_batches, batches = [F.shard_over_devices(stacked)], unstack(stacked)
    else:
        batches, subsets = pack_records(train, args.cutoff, max_batch_atoms=args.max_batch_atoms, cache_dir=workdir / "cache")
        fit_batches = batches
    n_real = sum(int((lb.batch.species >= 0).sum()) for lb in batches)
    n_pairs = sum(int(lb.batch.nbrs.mask.sum()) for lb in batches)
    if n_pairs / max(n_real, 1) > 150:
        warnings.warn(f"cutoff {args.cutoff} Å gives {n_pairs / n_real:.0f} neighbours per atom on average: larger than makes sense "
                      "for an MTP (typical: 20-80), and fitting will be slow")
    rmin = args.rmin
    if rmin is None:  # MLIP-3: 0.99 x the shortest interatomic distance of the training set
        dmin = np.inf
        for lb in batches:
            b = lb.batch
            R = b.positions[b.nbrs.index] - b.positions[:, None, :] + np.einsum("inc,icd->ind", b.nbrs.shift, b.cells[b.structure])
            r = np.linalg.norm(R, axis=-1)[b.nbrs.mask]
            dmin = min(dmin, float(r.min())) if r.size else dmin
        if not np.isfinite(dmin):
            raise MtpjaxError(f"no pair of atoms of the training set is closer than the cutoff {args.cutoff} Å")
        rmin = 0.99 * dmin
    if rmin >= args.cutoff:
        raise MtpjaxError(f"r_min {rmin:.3f} Å must be below the cutoff {args.cutoff} Å")
    mtp = F.initial_mtp(generate_basis(args.level), n_species, rmin, args.cutoff, batches, seed=args.seed, species=args.species,
                        init=args.init)
    cfg = F.FitConfig(max_steps=args.max_steps, checkpoint_every=args.checkpoint_every, method=args.optimizer,
                      linear_solve_at=tuple(s for s in args.linear_solve_at if s < args.max_steps))
    print(f"mtpjax fit: {len(train)} structures ({n_real} atoms), level {args.level}, cutoff {args.cutoff} Å, r_min {rmin:.4f} Å, "
          f"{mtp.moment_coeffs.shape[0]} basis functions", file=sys.stderr)
    with tqdm(total=args.max_steps, desc="fit", unit="step", disable=args.quiet or not sys.stderr.isatty()) as bar:
        def progress(k, val):
            bar.n = k + 1
            bar.set_postfix(loss=f"{val:.4g}", refresh=False)
            bar.update(0)

        mtp, history = F.fit(mtp, fit_batches, cfg, workdir=workdir, resume=args.resume, progress=progress,
                             log=lambda m: print(m, file=sys.stderr))
    mtp = F.linear_solve(mtp, [jax_tree_asarray(lb) for lb in batches], cfg.loss, sum(int((lb.weight > 0).sum()) for lb in batches))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    save_mtp(mtp, out)
    result = {"train": F.errors(mtp, batches, subsets), "steps": len(history), "wall_s": wall, "cpu_s": cpu,
              "level": args.level, "cutoff": args.cutoff, "rmin": rmin, "seed": args.seed, "potential": str(out)}
    if test:
        tb, ts = pack_records(test, args.cutoff, max_batch_atoms=args.max_batch_atoms)
        result["test"] = F.errors(mtp, tb, ts)
    F.write_metrics(workdir / "metrics.jsonl", {"history": history})
    F.write_metrics(workdir / "metrics.jsonl", result)
    F.plot_loss(history, workdir / "loss.png")
    (workdir / "result.json").write_text(json.dumps(result, indent=1))
    for split in ("train", "test"):
        for subset, e in result.get(split, {}).items():
            print(f"{split:5s} {subset:10s} RMSE: energy {e.get('energy', float('nan')):.3f} meV/atom, forces "
                  f"{e.get('forces', float('nan')):.4f} eV/Å, stress {e.get('stress', float('nan')):.3f} GPa", file=sys.stderr)
    print(f"mtpjax fit: {wall:.1f} s wall, {cpu:.1f} s CPU -> {out} (metrics, loss curve, checkpoint in {workdir})", file=sys.stderr)
    return 0


def jax_tree_asarray(tree):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(jnp.asarray, tree)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtpjax", description="Moment Tensor Potentials in JAX")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("efs", help="energies, forces and stresses of configurations (like `mlp calculate_efs`)")
    e.add_argument("potential", help="trained MLIP .mtp/.almtp file")
    e.add_argument("input", help=".cfg or extended-xyz file")
    e.add_argument("output", help="output file; .cfg writes MLIP's format, anything else extended xyz")
    e.add_argument("--species", nargs="+", default=None,
                   help="element of each MTP type, in type order (needed for xyz input with several elements)")
    e.add_argument("-q", "--quiet", action="store_true")
    e.set_defaults(func=cmd_efs)

    b = sub.add_parser("basis", help="write an untrained MTP (MLIP template) for a level")
    b.add_argument("--level", type=int, required=True, help="maximum level lev_max (2-28)")
    b.add_argument("--species", type=int, default=1, help="number of species (default 1)")
    b.add_argument("--rmin", type=float, default=2.0, help="min_dist r_min in Å (default 2.0)")
    b.add_argument("--rcut", type=float, default=5.0, help="cutoff max_dist in Å (default 5.0)")
    b.add_argument("--radial-basis-size", type=int, default=8, help="Chebyshev polynomials per radial function (default 8)")
    b.add_argument("-o", "--output", required=True)
    b.set_defaults(func=cmd_basis)

    f = sub.add_parser("fit", help="fit an MTP to labelled structures (.cfg, extxyz, ASE db)")
    f.add_argument("train", nargs="+", help="training data files")
    f.add_argument("--level", type=int, required=True, help="MTP level (2-28)")
    f.add_argument("--cutoff", type=float, required=True, help="cutoff R_cut in Å")
    f.add_argument("--rmin", type=float, default=None, help="r_min in Å (default: 0.99 x the shortest training distance, as MLIP-3)")
    f.add_argument("--test", nargs="+", default=None, help="test data files (errors reported, never fitted)")
    f.add_argument("--species", nargs="+", default=None, help="element of each MTP type (default: one species)")
    f.add_argument("--seed", type=int, default=0, help="seed of the initial radial coefficients (default 0)")
    f.add_argument("--max-steps", type=int, default=1000, help="L-BFGS steps (default 1000)")
    f.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (default 50)")
    f.add_argument("--workdir", default=None, help="checkpoint, metrics and plots (default: OUT's name + .fit)")
    f.add_argument("--resume", action="store_true", help="continue from the checkpoint in the work folder")
    f.add_argument("--linear-solve-at", type=int, nargs="*", default=[0, 25, 70, 100, 150, 250, 400],
                   help="steps at which species and moment coefficients are re-solved exactly and L-BFGS restarts "
                        "(default: MLIP-3's 0 25 70 100 150 250 400)")
    f.add_argument("--optimizer", choices=["lbfgs", "bfgs"], default="lbfgs",
                   help="lbfgs (optax L-BFGS, default) or bfgs (dense inverse Hessian, as MLIP)")
    f.add_argument("--init", choices=["mlip", "random"], default="mlip",
                   help="radial start: mlip (function mu = Chebyshev T_mu, as MLIP-3; default) or random orthonormal")
    f.add_argument("--devices", type=int, default=1,
                   help="data-parallel over this many jax devices (GPUs; on CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N)")
    f.add_argument("--max-batch-atoms", type=int, default=100000, help="atoms per packed batch (default: all in one)")
    f.add_argument("-o", "--output", required=True, help="fitted potential (.almtp)")
    f.add_argument("-q", "--quiet", action="store_true")
    f.set_defaults(func=cmd_fit)
    return p


def main(argv=None) -> int:
    from .errors import MtpjaxError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MtpjaxError as err:
        print(f"mtpjax {args.command}: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"mtpjax {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
