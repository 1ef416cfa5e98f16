#!/usr/bin/env python
"""The command line timed the way ``mlp calculate_efs`` is: ``mtpjax efs`` as a fresh process per run.

Protocol (issue 12, item 6): hcp Mg cells (a = 3.19 Å, c/a = 1.624, 6x6x7 = 504 atoms by default) rattled by 0.05 Å
(seeds 1000..), written as one file of 1 configuration and one of 21. A level-16 potential (default: the trained
MLIP-3 one of ``../shared/bench/fit``). With T1 and T21 the wall times of a fresh ``mtpjax efs POT IN OUT`` process on
the two files,

    cost = (T21 - T1) / 20 / n_atoms        [µs per atom per E+F+S]

after one warm-up run (on the 21-configuration file) that fills mtpjax's persistent compilation cache (a fresh
folder, passed as ``MTPJAX_CACHE_DIR``). Runs alternate T1, T21 (``--runs`` pairs); the table gives the median and the
best of each, the cost from the medians and from the best times, and the children's CPU time (user + sys). Import
time: the wall time of a fresh ``mtpjax --help`` and of ``python -c "import mtpjax.cli, mtpjax.evaluate, mtpjax.io,
mtpjax.model"`` (what ``efs`` imports), against ``python -c pass``.

motep (its C engine, ``cext``) is timed the same way when its command is found (``--motep``, default ``motep`` on the
PATH; e.g. a separate venv: ``python3 -m venv /tmp/motepvenv && /tmp/motepvenv/bin/pip install motep``) as
``motep evaluate SETTING.toml``. motep evaluate needs reference labels in its input, so it reads mtpjax's own output
files (which also checks that the two agree: the largest force and energy differences go into the table). Both engines
read the same text ``.mtp`` (the potential written once by mtpjax's ``save_mtp``, as MLIP's text format).

    python scripts/bench_efs_cli.py --out docs/benchmarks/efs_cli.md
    python scripts/bench_efs_cli.py --runs 2 --repeat 2 2 2          # a quick check
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EFS_IMPORTS = "efs's imports"
DEFAULT_POT = SHARED / "bench" / "fit" / "mlip3_l16_rc6p5.almtp"


def timed(cmd, env) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one run; raises on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def write_inputs(folder: Path, repeat, nconf: int) -> int:
    from ase.build import bulk

    from mtpjax.io import write_structures

    cells = []
    for k in range(nconf):
        a = bulk("Mg", "hcp", a=3.19, c=3.19 * 1.624).repeat(tuple(repeat))
        a.rattle(0.05, seed=1000 + k)
        cells.append(a)
    write_structures(cells[:1], folder / "in1.cfg", species=["Mg"])
    write_structures(cells, folder / f"in{nconf}.cfg", species=["Mg"])
    return len(cells[0])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")))
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, host `{platform.node()}`"


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def series(label, cmds, env, runs, warmup=True):
    """Alternate the commands ``runs`` times (after one warm-up of the last); {name: [(wall, cpu), ...]}."""
    if warmup:
        timed(cmds[-1][1], env)
    out = {name: [] for name, _ in cmds}
    for r in range(runs):
        for name, cmd in cmds:
            out[name].append(timed(cmd, env))
            print(f"{label} {name} run {r + 1}: {out[name][-1][0]:.2f} s wall, {out[name][-1][1]:.2f} s CPU", file=sys.stderr)
    return out


def compare_cfg(a: Path, b: Path) -> dict:
    """Largest |difference| of energy (eV), forces (eV/Å) and PlusStress (eV) between two .cfg files."""
    from mtpjax.io import read_cfg
    import numpy as np

    out = {"energy": 0.0, "forces": 0.0, "stress": 0.0}
    for x, y in zip(read_cfg(a), read_cfg(b), strict=True):
        out["energy"] = max(out["energy"], abs(x.energy - y.energy))
        out["forces"] = max(out["forces"], float(np.abs(np.asarray(x.forces) - np.asarray(y.forces)).max()))
        out["stress"] = max(out["stress"], float(np.abs(np.asarray(x.plus_stress) - np.asarray(y.plus_stress)).max()))
    return out


def summary(times, n_atoms, nconf):
    t1 = [w for w, _ in times["T1"]]
    tn = [w for w, _ in times[f"T{nconf}"]]
    c1 = [c for _, c in times["T1"]]
    cn = [c for _, c in times[f"T{nconf}"]]
    per = lambda a, b: (b - a) / (nconf - 1) / n_atoms * 1e6  # noqa: E731
    return {
        "T1 median": statistics.median(t1), "T1 best": min(t1),
        "TN median": statistics.median(tn), "TN best": min(tn),
        "cost median": per(statistics.median(t1), statistics.median(tn)), "cost best": per(min(t1), min(tn)),
        "cost CPU": per(statistics.median(c1), statistics.median(cn)), "T1 CPU": statistics.median(c1),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--potential", type=Path, default=DEFAULT_POT)
    p.add_argument("--repeat", type=int, nargs=3, default=[6, 6, 7], help="hcp cell repeats (default 6 6 7: 504 atoms)")
    p.add_argument("--nconf", type=int, default=21)
    p.add_argument("--runs", type=int, default=5, help="timed (T1, TN) pairs (default 5)")
    p.add_argument("--motep", default=shutil.which("motep"),
                   help="motep's executable (default: motep on the PATH; without one, motep is not timed)")
    p.add_argument("--note", default="", help="a line about the machine's state (e.g. other jobs running)")
    p.add_argument("--out", type=Path, default=None, help="markdown file for the table (default: print)")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-efs-cli-"))
    try:
        n_atoms = write_inputs(work, args.repeat, args.nconf)
        import mtpjax

        pot = work / "pot.mtp"  # the same text file for both engines
        mtpjax.save_mtp(mtpjax.load_mtp(args.potential), pot)
        env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
        env.update(MTPJAX_CACHE_DIR=str(work / "cache"), JAX_PLATFORMS=env.get("JAX_PLATFORMS", "cpu"))
        exe = [sys.executable, "-m", "mtpjax.cli"]
        load_before = load()
        imports = series("import", [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("mtpjax --help", exe + ["--help"]),
            (EFS_IMPORTS, [sys.executable, "-c", "import mtpjax.cli, mtpjax.evaluate, mtpjax.io, mtpjax.model"]),
        ], env, args.runs)
        first_ever = timed(exe + ["efs", str(pot), str(work / "in1.cfg"), str(work / "cold.cfg"), "-q"], env)
        shutil.rmtree(work / "cache", ignore_errors=True)  # the warm-up below fills it again
        cmds = [(name, exe + ["efs", str(pot), str(work / f"in{n}.cfg"), str(work / f"out{n}.cfg"), "-q"])
                for name, n in (("T1", 1), (f"T{args.nconf}", args.nconf))]
        ours = summary(series("mtpjax", cmds, env, args.runs), n_atoms, args.nconf)
        motep = agreement = None
        if args.motep:
            mcmds = []
            for name, n in (("T1", 1), (f"T{args.nconf}", args.nconf)):
                setting = work / f"motep{n}.toml"
                setting.write_text(f'[configurations]\ninitial = ["{work / f"out{n}.cfg"}"]\nfinal = ["{work / f"m{n}.cfg"}"]\n'
                                   f'[potentials]\nfinal = "{pot}"\n[common]\nengine = "cext"\n')
                mcmds.append((name, [args.motep, "evaluate", str(setting)]))
            motep = summary(series("motep", mcmds, env, args.runs), n_atoms, args.nconf)
            agreement = compare_cfg(work / f"out{args.nconf}.cfg", work / f"m{args.nconf}.cfg")
        load_after = load()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(w for w, _ in v) for k, v in imports.items()}
    import jax
    import numpy

    import mtpjax

    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cmd = "python scripts/bench_efs_cli.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    N = args.nconf
    lines = [
        "# `mtpjax efs` from the command line: T1, T21 and the cost per atom",
        "",
        f"- Command: `{cmd.strip()}`",
        f"- Date: {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}",
        f"- Machine: {machine()}; load average before {load_before}, after {load_after}"
        + (f". {args.note.rstrip('.')}." if args.note else ""),
        f"- Versions: python {platform.python_version()}, jax {jax.__version__}, numpy {numpy.__version__}, "
        f"mtpjax {mtpjax.__version__} (git {git})",
        f"- Protocol: hcp Mg {'x'.join(map(str, args.repeat))} cells ({n_atoms} atoms) rattled by 0.05 Å, potential "
        f"`{args.potential.name}`; each time is a fresh `python -m mtpjax.cli efs POT IN OUT -q` process, IN holding 1 or "
        f"{N} configurations; cost = (T{N} − T1)/{N - 1}/{n_atoms} as `mlp calculate_efs` is timed, after one warm-up run "
        f"that fills the persistent compilation cache (a fresh folder); {args.runs} alternating (T1, T{N}) pairs, median "
        f"and best. CPU = the child's user + sys time (on a loaded machine, wall well above CPU means waiting for a core).",
        "",
        f"| | mtpjax median | mtpjax best | motep median | ratio mtpjax/motep (median) |",
        "|---|---|---|---|---|",
    ]

    def row(label, key, fmt):
        m = fmt.format(motep[key]) if motep else "not available"
        r = f"{ours[key] / motep[key]:.2f}" if motep else "–"
        best = key.replace("median", "best")
        b = fmt.format(ours[best]) if best in ours and best != key else "–"
        return f"| {label} | {fmt.format(ours[key])} | {b} | {m} | {r} |"

    lines += [
        row(f"(T{N} − T1)/{N - 1} per atom (µs)", "cost median", "{:.1f}"),
        row("same from the CPU times (µs)", "cost CPU", "{:.1f}"),
        row("T1: start, load the potential, one cell (s)", "T1 median", "{:.2f}"),
        row(f"T{N} (s)", "TN median", "{:.2f}"),
        row("T1 CPU (s)", "T1 CPU", "{:.2f}"),
        "",
        f"- T1 with an empty compilation cache (the very first run): {first_ever[0]:.2f} s wall, {first_ever[1]:.2f} s CPU.",
        f"- Import (median wall of a fresh process): `python -c pass` {med['python -c pass']:.2f} s; `mtpjax --help` "
        f"{med['mtpjax --help']:.2f} s; the modules `efs` imports {med[EFS_IMPORTS]:.2f} s.",
    ]
    if motep is None:
        lines.append("- motep was not found (`--motep`), so its column is empty; the issue's quiet-machine figures for "
                     "motep are 72–76 µs/atom and T1 0.6–0.8 s.")
    else:
        version = subprocess.run([str(Path(args.motep).parent / "python"), "-c", "from importlib.metadata import version; print(version('motep'))"],
                                 capture_output=True, text=True).stdout.strip() or "?"
        lines.append(f"- motep {version} (`{args.motep} evaluate`, engine cext) on mtpjax's output files: largest "
                     f"differences over the {N} configurations, as printed in the two .cfg files: energy "
                     f"{agreement['energy']:.1e} eV, forces {agreement['forces']:.1e} eV/Å, PlusStress "
                     f"{agreement['stress']:.1e} eV.")
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
