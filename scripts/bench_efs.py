#!/usr/bin/env python
"""Energy + forces + stress benchmark: mtpjax against motep's C engine.

Protocol (as `mlp calculate_efs` is timed in the paper): for each (engine, level, cutoff, cell)
a fresh worker process loads a random-coefficient MTP and evaluates E, F and the stress of
``--nconf`` (default 21) distinct rattled copies of the same hcp-Mg cell, end to end (neighbour
list included). With T_k the wall time from loading the potential to the end of the k-th
configuration,

    cost = (T_21 - T_1) / 20 / n_atoms          [µs per atom per E+F+S call]
    first call = T_1                            [potential loading + first evaluation, i.e.
                                                 compilation for a JAX engine]

Each worker runs pinned to one CPU core by default (``--threads 1``): motep's C engine is
single-threaded; ``--threads 0`` leaves the worker unpinned.

Engines are registered with ``@engine(name, preload=...)``: one factory function taking the
path of an MLIP ``.mtp`` file and a species list and returning ``efs(atoms) -> (E, F, S)``.
Registered: ``motep`` (C extension, fresh calculator per configuration, i.e. neighbour list
rebuilt: the reference), ``motep-reuse`` (C extension, one calculator, ASE's skin-based
neighbour-list reuse as in MD), ``mtpjax`` (``mtpjax.calculator.MTPCalculator``; skipped with a
note when it cannot be imported). The worker's CPU time is recorded too: on a shared machine
CPU << wall flags a contended timing. JAX_PLATFORMS defaults to ``cpu`` unless set.

Examples::

    python scripts/bench_efs.py --out docs/benchmarks/efs.md          # full default grid
    python scripts/bench_efs.py --quick --engines motep
    python scripts/bench_efs.py --levels 16 24 --cutoffs 5.0 --sizes 504
    python scripts/bench_efs.py --job 24:8.2:4000 --engines motep mtpjax
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import importlib.metadata as _md
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_TEMPLATES = REPO.parent / "shared" / "data" / "mtp_templates"
if not DEFAULT_TEMPLATES.is_dir():  # fall back to the absolute location of the shared tree
    DEFAULT_TEMPLATES = Path("/work/shared/data/mtp_templates")

SPECIES = ["Mg"]
MG_A, MG_COVERA = 3.19, 1.624
MIN_DIST = 2.0
PROPS = ["energy", "forces", "stress"]
REFERENCE_ENGINE = "motep"

# ---------------------------------------------------------------------------------------------
# Engines: one factory per engine. ``preload`` modules are imported before the memory baseline
# and before the clock starts (their import time is reported separately); an ImportError there
# marks the engine unavailable and the benchmark skips it with a note.
# ---------------------------------------------------------------------------------------------
ENGINES: dict[str, dict] = {}


def engine(name: str, preload: tuple[str, ...] = (), version_of: str | None = None):
    def register(factory):
        ENGINES[name] = {"factory": factory, "preload": preload, "dist": version_of or name}
        return factory

    return register


def _ase_efs(calc, atoms):
    """One E+F+S evaluation through the ASE calculator interface, results materialised."""
    from ase.calculators.calculator import all_changes

    calc.calculate(atoms, PROPS, all_changes)
    r = calc.results
    return float(r["energy"]), np.asarray(r["forces"], dtype=float), np.asarray(r["stress"], dtype=float)


@engine("motep", preload=("motep.calculator", "motep.io.mlip.mtp",
                          "motep.potentials.mtp.cext.engine"))
def make_motep(mtp_path: str, species: list[str]):
    """motep's compiled C extension (``engine="cext"``, single-threaded, libc only)."""
    from ase.data import atomic_numbers
    from motep.calculator import MTP
    from motep.io.mlip.mtp import read_mtp

    data = read_mtp(mtp_path)
    # motep maps atoms.numbers -> MTP type via mtp_data.species (default [0, 1, ...]).
    data.species = [atomic_numbers[s] for s in species]

    def efs(atoms):
        # A fresh calculator per configuration, as `motep evaluate` does: the neighbour list
        # (ASE PrimitiveNeighborList, skin 0.3) is rebuilt every call instead of being reused
        # for the small rattles.
        return _ase_efs(MTP(data, engine="cext"), atoms)

    return efs


@engine("motep-reuse", preload=("motep.calculator", "motep.io.mlip.mtp",
                                "motep.potentials.mtp.cext.engine"), version_of="motep")
def make_motep_reuse(mtp_path: str, species: list[str]):
    """motep C engine, one calculator: ASE's neighbour list (skin 0.3 Å) is rebuilt only when
    an atom moved by more than the skin since the last build, as in MD. Not end to end."""
    from ase.data import atomic_numbers
    from motep.calculator import MTP
    from motep.io.mlip.mtp import read_mtp

    data = read_mtp(mtp_path)
    data.species = [atomic_numbers[s] for s in species]
    calc = MTP(data, engine="cext")

    def efs(atoms):
        return _ase_efs(calc, atoms)

    return efs


@engine("mtpjax", preload=("jax", "mtpjax.calculator"))
def make_mtpjax(mtp_path: str, species: list[str]):
    """mtpjax's ASE calculator; one instance, so compiled functions are reused."""
    from mtpjax.calculator import MTPCalculator

    calc = MTPCalculator.from_file(mtp_path, species=species)

    def efs(atoms):
        return _ase_efs(calc, atoms)

    return efs


# ---------------------------------------------------------------------------------------------
# Random-coefficient potentials written from MLIP's untrained templates (text edits only).
# ---------------------------------------------------------------------------------------------
def _fmt_list(values) -> str:
    return "{" + ", ".join(f"{v:.16e}" for v in values) + "}"


def _template_levels(text: str) -> np.ndarray:
    """Level of each scalar basis function B_k (k = 1..n) from the template's index arrays."""
    def arr(key):
        m = re.search(rf"^\s*{key}\s*=\s*\{{(.*)\}}\s*$", text, re.M)
        return [int(x) for x in re.findall(r"-?\d+", m.group(1))]

    basic = np.array(arr("alpha_index_basic")).reshape(-1, 4)
    times = np.array(arr("alpha_index_times")).reshape(-1, 4)
    mapping = np.array(arr("alpha_moment_mapping"))
    n_mom = int(re.search(r"alpha_moments_count\s*=\s*(\d+)", text).group(1))
    lev = np.zeros(n_mom, dtype=int)
    lev[: len(basic)] = 2 + 4 * basic[:, 0] + basic[:, 1:].sum(axis=1)
    for p, q, _m, o in times:
        lev[o] = lev[p] + lev[q]
    return lev[mapping]


def write_random_mtp(template: Path, out: Path, cutoff: float, seed: int = 0) -> dict:
    """Write a trained-looking single-species .mtp from an untrained MLIP template.

    Radial coefficients U(-0.5, 0.5) (as in the golden files); ``scaling`` chosen so that
    scaling * sum_j (R_cut - r_j)^2 over the neighbours of ideal hcp Mg is 2 (the golden
    level-8 rc-5 file's value), which keeps the basic moments O(1) at every cutoff; species
    coefficient U(-2, -1) eV; moment coefficients U(-1, 1) * 0.5 * (2 / level)^2 (a decay like
    the golden level-16 file's).
    """
    from ase.build import bulk
    from ase.neighborlist import neighbor_list

    text = template.read_text()
    if "radial_coeffs" in text or "moment_coeffs" in text:
        raise ValueError(f"{template} is not an untrained template")
    text = text.split("#MVS", 1)[0]
    K = int(re.search(r"radial_funcs_count\s*=\s*(\d+)", text).group(1))
    R = int(re.search(r"radial_basis_size\s*=\s*(\d+)", text).group(1))
    levels = _template_levels(text)
    level = int(levels.max())
    rng = np.random.default_rng([seed, level, int(round(cutoff * 1000))])
    ideal = bulk("Mg", "hcp", a=MG_A, c=MG_A * MG_COVERA)
    d = neighbor_list("d", ideal, cutoff)
    scaling = float(2.0 / (((cutoff - d) ** 2).sum() / len(ideal)))
    radial = rng.uniform(-0.5, 0.5, size=(K, R))
    species_coeffs = rng.uniform(-2.0, -1.0, size=1)
    moment_coeffs = rng.uniform(-1.0, 1.0, size=len(levels)) * 0.5 * (2.0 / levels) ** 2

    lines_out = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line else line.strip()
        if key == "species_count":
            lines_out.append(f"scaling = {scaling!r}")
            lines_out.append(line)
        elif key == "min_dist":
            lines_out.append(f"\tmin_dist = {MIN_DIST!r}")
        elif key == "max_dist":
            lines_out.append(f"\tmax_dist = {float(cutoff)!r}")
        elif key == "radial_funcs_count":
            lines_out.append(line)
            lines_out.append("\tradial_coeffs")
            lines_out.append("\t\t0-0")
            lines_out.extend("\t\t\t" + _fmt_list(row) for row in radial)
        elif key == "alpha_moments_count":
            lines_out.append("\t" + line.strip())  # MLIP writes it tab-indented after the block
        elif key == "alpha_moment_mapping":
            lines_out.append(line)
            lines_out.append(f"species_coeffs = {_fmt_list(species_coeffs)}")
            lines_out.append(f"moment_coeffs = {_fmt_list(moment_coeffs)}")
        elif key == "scaling":
            continue
        else:
            lines_out.append(line)
    out.write_text("\n".join(lines_out) + "\n")
    return {"level": level, "K": K, "R": R, "n_moments": len(levels), "scaling": scaling}


# ---------------------------------------------------------------------------------------------
# Structures
# ---------------------------------------------------------------------------------------------
PRESET_REPS = {432: (6, 6, 6), 504: (7, 6, 6), 4000: (13, 13, 12)}


def supercell_reps(n_atoms: int) -> tuple[int, int, int]:
    if n_atoms in PRESET_REPS:
        return PRESET_REPS[n_atoms]
    ncell = max(1, round(n_atoms / 2))
    n = max(1, round(ncell ** (1 / 3)))
    return (n, n, max(1, round(ncell / n / n)))


def make_configs(n_atoms: int, nconf: int, stdev: float = 0.05):
    from ase.build import bulk

    reps = supercell_reps(n_atoms)
    base = bulk("Mg", "hcp", a=MG_A, c=MG_A * MG_COVERA) * reps
    configs = []
    for k in range(nconf):
        a = base.copy()
        a.rattle(stdev=stdev, seed=1000 + k)
        configs.append(a)
    return configs


# ---------------------------------------------------------------------------------------------
# Worker: one (engine, potential, cell) measurement in its own process.
# ---------------------------------------------------------------------------------------------
def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return float("nan")


def run_worker(spec: dict) -> dict:
    res = {"engine": spec["engine"], "status": "ok"}
    eng = ENGINES[spec["engine"]]
    t0 = time.perf_counter()
    try:
        for mod in eng["preload"]:
            importlib.import_module(mod)
    except Exception as exc:  # ImportError and friends: engine not available
        res.update(status="unavailable", error=f"{type(exc).__name__}: {exc}")
        return res
    res["import_s"] = time.perf_counter() - t0

    from ase.neighborlist import neighbor_list

    configs = make_configs(spec["n_atoms"], spec["nconf"])
    n = len(configs[0])
    res["n_atoms"] = n
    rss0, maxrss0 = _rss_mb(), _maxrss_mb()

    times, cpu_times = [], []
    out0 = None
    energies = []
    try:
        c0 = time.process_time()
        t0 = time.perf_counter()
        efs = eng["factory"](spec["mtp"], SPECIES)
        t_setup = time.perf_counter() - t0
        for k, atoms in enumerate(configs):
            e, f, s = efs(atoms)
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
            energies.append(e)
            if k == 0:
                out0 = (e, f, s)
    except Exception as exc:
        import traceback

        res.update(status="error", error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc()[-3000:])
        return res
    T = np.array(times)
    nc = len(T)
    res["setup_s"] = t_setup
    res["first_s"] = T[0]  # load + first E+F+S (includes compilation for JAX)
    res["T"] = T.tolist()
    per_cfg = (T[-1] - T[0]) / (nc - 1) if nc > 1 else float("nan")
    res["us_per_atom"] = per_cfg / n * 1e6
    res["cpu_us_per_atom"] = ((cpu_times[-1] - cpu_times[0]) / (nc - 1) / n * 1e6
                              if nc > 1 else float("nan"))
    res["cpu_over_wall"] = res["cpu_us_per_atom"] / res["us_per_atom"] if nc > 1 else float("nan")
    res["loadavg"] = os.getloadavg()[0]
    res["median_us_per_atom"] = float(np.median(np.diff(T))) / n * 1e6 if nc > 1 else float("nan")
    res["energies_per_atom"] = [x / n for x in energies]
    e, f, s = out0
    res["E0"] = e
    res["F0"] = f.tolist()
    res["S0"] = s.tolist()
    res["Fmax0"] = float(np.abs(f).max())
    res["rss_base_mb"] = rss0  # current RSS after imports and structure set-up
    res["maxrss_base_mb"] = maxrss0  # high-water mark at that point
    res["maxrss_mb"] = _maxrss_mb()  # high-water mark of the whole worker
    res["maxrss_delta_mb"] = res["maxrss_mb"] - (rss0 if np.isfinite(rss0) else maxrss0)
    # after the measurement, so that its temporaries do not raise the memory baseline
    res["pairs_per_atom"] = len(neighbor_list("i", configs[0], spec["cutoff"])) / n
    return res


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def _fmt_cut(c: float) -> str:
    return f"{c:g}".replace(".", "p")


def default_jobs() -> list[tuple[int, float, int]]:
    jobs = [(l, c, 432) for l in (8, 12, 16, 20, 24) for c in (5.2, 6.5, 8.2)]
    jobs += [(16, 5.0, 504), (24, 5.0, 504)]  # headline target (performance-notes peers)
    jobs += [(24, 8.2, 4000)]  # large cell: peak memory
    return jobs


def machine_info(threads: int, cpu: int | None) -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        avail = sorted(os.sched_getaffinity(0))
    except AttributeError:
        avail = list(range(os.cpu_count() or 1))

    def ver(d):
        try:
            return _md.version(d)
        except _md.PackageNotFoundError:
            return "not installed"

    git = "?"
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "mtpjax"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        git = rev + (" (mtpjax/ has uncommitted changes)" if dirty else "")
    except Exception:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = float("nan")
    return {
        "cpu_model": model, "cores": os.cpu_count(), "cores_available": len(avail),
        "mem_gb": mem_gb, "hostname": platform.node(), "python": platform.python_version(),
        "jax": ver("jax"), "jaxlib": ver("jaxlib"), "numpy": ver("numpy"), "ase": ver("ase"),
        "motep": ver("motep"), "mtpjax": ver("mtpjax"), "git": git,
        "threads": ("1 (worker pinned to CPU %d, OMP/BLAS threads = 1)" % cpu) if threads == 1
        else ("unrestricted" if threads == 0 else f"{threads} cores"),
    }


def _pick_cpus(threads: int, cpu: int | None) -> set[int] | None:
    if threads == 0:
        return None
    avail = sorted(os.sched_getaffinity(0))
    if cpu is not None:
        start = avail.index(cpu) if cpu in avail else 0
    else:
        start = len(avail) - threads if len(avail) >= threads else 0
    return set(avail[start:start + threads])


def _cell(x, fmt):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return fmt.format(x)


def render_markdown(meta: dict, jobs: list, engines: list[str], results: dict, notes: list[str]) -> str:
    m = meta["machine"]
    lines = [
        "# Energy + forces + stress cost: mtpjax vs motep (C engine)",
        "",
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}",
        f"- Machine: {m['cpu_model']}, {m['cores']} cores ({m['cores_available']} available), "
        f"{m['mem_gb']:.0f} GiB RAM, host `{m['hostname']}`; load average before {meta['load_before']}"
        + (f", after {meta['load_after']}" if meta.get("load_after") else ""),
        f"- Threads: {m['threads']}",
        f"- Versions: python {m['python']}, jax {m['jax']} (jaxlib {m['jaxlib']}), numpy {m['numpy']}, "
        f"ase {m['ase']}, motep {m['motep']}, mtpjax {m['mtpjax']} (git {m['git']})",
        f"- Protocol: hcp Mg (a = {MG_A} Å, c/a = {MG_COVERA}) supercells, {meta['nconf']} configurations "
        f"rattled by 0.05 Å (seeds 1000..), best of {meta['repeat']} run(s), random-coefficient MTPs from MLIP's templates "
        f"(min_dist {MIN_DIST} Å). Cost = (T{meta['nconf']} − T1)/{meta['nconf'] - 1} per atom, "
        "end to end through the ASE calculator (neighbour list included); each measurement in a fresh "
        "process. \"1st call\" = T1 = loading the potential + first E+F+S (JIT compilation for mtpjax). "
        "Peak RSS = ru_maxrss of the worker process (Δ = its increase over the worker's RSS after "
        "imports and structure set-up, i.e. what loading the potential and evaluating cost). max|ΔF| (eV/Å) / |ΔE|/atom (eV): first configuration, against "
        "motep. (CPU) = the same cost from the worker's CPU time: for a worker pinned to one core, "
        "CPU well below wall means it shared the core with other work (contended timing; the "
        "CPU figure is then the better estimate). load = the machine's 1-min load average at the "
        "end of the worker. `motep` builds a fresh calculator per configuration (neighbour list "
        "rebuilt, as `motep evaluate` does); `motep-reuse`, if shown, keeps one calculator (ASE "
        "neighbour list with 0.3 Å skin reused while atoms move less than the skin).",
        "",
    ]
    others = [e for e in engines if e != REFERENCE_ENGINE]
    has_ref = REFERENCE_ENGINE in engines
    hdr = ["level", "rc (Å)", "atoms", "nbrs/atom"]
    hdr += [f"{e} µs/atom wall (CPU)" for e in engines]
    if has_ref:
        hdr += [f"{e}/{REFERENCE_ENGINE} wall (CPU)" for e in others]
    hdr += [f"{e} 1st call (s)" for e in engines]
    hdr += [f"{e} peak RSS MB (Δ)" for e in engines]
    if has_ref:
        hdr += [f"{e} max\\|ΔF\\| / \\|ΔE\\|/atom" for e in others]
    hdr += ["load (1 min)"]
    lines.append("| " + " | ".join(hdr) + " |")
    lines.append("|" + "---|" * len(hdr))

    def ok(r):
        return r is not None and r.get("status") == "ok"

    for job in jobs:
        lev, cut, size = job
        rs = {e: results.get((job, e)) for e in engines}
        anyok = next((r for r in rs.values() if ok(r)), None)
        row = [str(lev), f"{cut:g}", str(anyok["n_atoms"] if anyok else size),
               f"{anyok['pairs_per_atom']:.1f}" if anyok else "–"]

        def cell(e, fn):
            r = rs[e]
            if r is None:
                return "–"
            if not ok(r):
                return r.get("status", "?")
            return fn(r)

        row += [cell(e, lambda r: f"{r['us_per_atom']:.1f} ({r['cpu_us_per_atom']:.1f})") for e in engines]
        ref = rs.get(REFERENCE_ENGINE)
        if has_ref:
            for e in others:
                r = rs[e]
                row.append(f"{r['us_per_atom'] / ref['us_per_atom']:.2f} "
                           f"({r['cpu_us_per_atom'] / ref['cpu_us_per_atom']:.2f})"
                           if ok(ref) and ok(r) else "–")
        row += [cell(e, lambda r: f"{r['first_s']:.2f}") for e in engines]
        row += [cell(e, lambda r: f"{r['maxrss_mb']:.0f} ({r['maxrss_delta_mb']:+.0f})") for e in engines]
        if has_ref:
            for e in others:
                r = rs[e]
                if ok(ref) and ok(r):
                    dF = np.abs(np.array(r["F0"]) - np.array(ref["F0"])).max()
                    dE = abs(r["E0"] - ref["E0"]) / r["n_atoms"]
                    row.append(f"{dF:.1e} / {dE:.1e}")
                else:
                    row.append("–")
        loads = [r["loadavg"] for r in rs.values() if ok(r) and "loadavg" in r]
        row.append(f"{max(loads):.2f}" if loads else "–")
        lines.append("| " + " | ".join(row) + " |")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--levels", type=int, nargs="+", help="MTP levels (templates NN.almtp)")
    p.add_argument("--cutoffs", type=float, nargs="+", help="cutoffs R_cut in Å")
    p.add_argument("--sizes", type=int, nargs="+",
                   help="cell sizes in atoms (432=6x6x6, 504=7x6x6, 4000->13x13x12=4056 atoms)")
    p.add_argument("--job", action="append", default=[], metavar="LEVEL:RC:ATOMS",
                   help="an explicit (level, cutoff, size) job; repeatable; adds to --levels/...")
    p.add_argument("--quick", action="store_true",
                   help="only level 8 rc 5.2 on 432 atoms and level 16 rc 5.0 on 504 atoms")
    p.add_argument("--engines", nargs="+", default=["motep", "mtpjax"], choices=sorted(ENGINES))
    p.add_argument("--nconf", type=int, default=21, help="configurations per timing (default 21)")
    p.add_argument("--threads", type=int, default=1,
                   help="cores per worker: 1 = pin to one core (default), 0 = unrestricted")
    p.add_argument("--cpu", type=int, default=None, help="core to pin to with --threads 1")
    p.add_argument("--repeat", type=int, default=1,
                   help="measure each point this many times (fresh workers), keep the fastest")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker (default 1800)")
    p.add_argument("--templates", type=Path, default=DEFAULT_TEMPLATES)
    p.add_argument("--potdir", type=Path, default=None,
                   help="write the random potentials here and keep them (default: temp dir, removed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random coefficients")
    p.add_argument("--out", type=Path, default=None, help="markdown output (rewritten after each job)")
    p.add_argument("--json", type=Path, default=None, help="raw results as JSON")
    p.add_argument("--_worker", dest="worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_result", dest="result", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build_jobs(args) -> list[tuple[int, float, int]]:
    jobs: list[tuple[int, float, int]] = []
    if args.quick:
        jobs = [(8, 5.2, 432), (16, 5.0, 504)]
    elif args.levels or args.cutoffs or args.sizes:
        jobs = [(l, c, s) for s in (args.sizes or [432]) for l in (args.levels or [8, 12, 16, 20, 24])
                for c in (args.cutoffs or [5.2, 6.5, 8.2])]
    elif not args.job:
        jobs = default_jobs()
    for j in args.job:
        l, c, s = j.split(":")
        jobs.append((int(l), float(c), int(s)))
    seen, out = set(), []
    for j in jobs:
        if j not in seen:
            seen.add(j)
            out.append(j)
    return out


def run_in_subprocess(spec: dict, env: dict, timeout: float) -> dict:
    """Run one measurement in a fresh interpreter (clean JIT caches and memory high-water mark)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result_path = fh.name
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(spec),
           "--_result", result_path]
    try:
        cp = subprocess.run(cmd, env=env, timeout=timeout, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
        try:
            return json.loads(Path(result_path).read_text())
        except (OSError, json.JSONDecodeError):
            return {"engine": spec["engine"], "status": "crashed",
                    "error": f"rc={cp.returncode}: {cp.stderr[-2000:]}"}
    except subprocess.TimeoutExpired:
        return {"engine": spec["engine"], "status": f"timeout>{timeout:g}s"}
    finally:
        Path(result_path).unlink(missing_ok=True)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        spec = json.loads(args.worker)
        if spec.get("cpus"):
            os.sched_setaffinity(0, set(spec["cpus"]))
        res = run_worker(spec)
        Path(args.result).write_text(json.dumps(res))
        return 0

    jobs = build_jobs(args)
    cpus = _pick_cpus(args.threads, args.cpu)
    meta = {
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__)] + sys.argv[1:]),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(args.threads, min(cpus) if cpus else None),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "nconf": args.nconf,
        "repeat": args.repeat,
    }
    env = dict(os.environ)
    if args.threads >= 1:
        for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
            env[v] = str(args.threads)
    env.setdefault("JAX_PLATFORMS", "cpu")

    potdir = args.potdir or Path(tempfile.mkdtemp(prefix="bench_efs_"))
    potdir.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    notes: list[str] = []
    unavailable: dict[str, str] = {}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)

    def flush(final=False):
        if final:
            meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        if args.out:
            args.out.write_text(render_markdown(meta, jobs, args.engines, results, notes))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            raw = [{"level": j[0], "cutoff": j[1], "size": j[2], **r} for (j, _e), r in results.items()]
            args.json.write_text(json.dumps({"meta": meta, "results": raw}, indent=1))

    n_total = len(jobs) * len(args.engines)
    count = 0
    t_start = time.perf_counter()
    try:
        for job in jobs:
            lev, cut, size = job
            template = args.templates / f"{lev:02d}.almtp"
            mtp = potdir / f"rand_l{lev:02d}_rc{_fmt_cut(cut)}.mtp"
            if not mtp.exists():
                info = write_random_mtp(template, mtp, cut, seed=args.seed)
                log(f"wrote {mtp.name}: level {info['level']}, K={info['K']}, R={info['R']}, "
                    f"{info['n_moments']} moment coeffs, scaling {info['scaling']:.4g}")
            for eng in args.engines:
                count += 1
                tag = f"[{count}/{n_total}] {eng:7s} L{lev:<2d} rc {cut:<4g} N~{size}"
                if eng in unavailable:
                    results[(job, eng)] = {"engine": eng, "status": "unavailable"}
                    continue
                spec = {"engine": eng, "mtp": str(mtp), "cutoff": cut, "n_atoms": size,
                        "nconf": args.nconf, "cpus": sorted(cpus) if cpus else None}
                t0 = time.perf_counter()
                runs = []
                for _ in range(max(1, args.repeat)):
                    runs.append(run_in_subprocess(spec, env, args.timeout))
                    if runs[-1].get("status") != "ok":
                        break
                good = [r for r in runs if r.get("status") == "ok"]
                res = min(good, key=lambda r: r["us_per_atom"]) if good else runs[-1]
                if len(good) > 1:
                    res["repeats_us_per_atom"] = [r["us_per_atom"] for r in good]
                    res["repeats_cpu_us_per_atom"] = [r["cpu_us_per_atom"] for r in good]
                wall = time.perf_counter() - t0
                results[(job, eng)] = res
                st = res.get("status")
                if st == "ok":
                    log(f"{tag}: {res['us_per_atom']:8.1f} µs/atom (median {res['median_us_per_atom']:.1f}, "
                        f"CPU {res['cpu_us_per_atom']:.1f}, load {res['loadavg']:.2f}), "
                        f"1st call {res['first_s']:.2f} s, T{args.nconf} {res['T'][-1]:.2f} s, "
                        f"{res['n_atoms']} atoms, {res['pairs_per_atom']:.1f} nbrs/atom, "
                        f"E/atom {res['E0'] / res['n_atoms']:.4f} eV, max|F| {res['Fmax0']:.3f}, "
                        f"peak RSS {res['maxrss_mb']:.0f} MB ({res['maxrss_delta_mb']:+.0f}); "
                        f"worker wall {wall:.1f} s")
                elif st == "unavailable":
                    unavailable[eng] = res.get("error", "")
                    note = f"engine `{eng}` skipped: not importable ({res.get('error', '')})"
                    notes.append(note)
                    log(f"NOTE: {note}")
                else:
                    log(f"{tag}: {st}: {res.get('error', '')}")
                    if res.get("traceback"):
                        print(res["traceback"], file=sys.stderr)
                    notes.append(f"L{lev} rc {cut:g} N~{size} {eng}: {st} {res.get('error', '')[:300]}")
                flush()
    finally:
        flush(final=True)
        if args.potdir is None:
            shutil.rmtree(potdir, ignore_errors=True)
    log(f"done in {time.perf_counter() - t_start:.0f} s" + (f"; wrote {args.out}" if args.out else ""))
    if not args.out:
        sys.stdout.write(render_markdown(meta, jobs, args.engines, results, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
