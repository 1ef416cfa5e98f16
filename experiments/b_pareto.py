#!/usr/bin/env python
"""Experiment b: cost-accuracy Pareto front of fitted MTPs (Poul et al. 2023, Figs. 5 and 15).

For every fitted MTP (level x cutoff, one training subset) the cost is the time of one jit-compiled
energy+forces+stress call per atom (µs/atom) on a fixed cell, 432-atom hcp Mg rattled by 0.05 Å as in
``shared/docs/performance-notes.md`` (compilation excluded; median of several repeats; the neighbour list is
built once and timed separately as ``us_per_atom_nl``). The accuracy is the training (or held-out test) RMSE of
energy (meV/atom) and forces (eV/Å). Pareto-optimal points (no other MTP is both cheaper and more accurate) are
marked. The oracle (default: the Zhou 2004 EAM) is timed the same way and drawn as a vertical line: it is the
"classical potential" with RMSE 0 by definition.

    python experiments/b_pareto.py --quick                                  # own small sweep
    python experiments/b_pareto.py --quick --sweep runs/experiments/a_level_cutoff_quick   # reuse experiment a
    python experiments/b_pareto.py                                          # paper scale (GPU machine)

Outputs in ``--out`` (default ``runs/experiments/b_pareto[_quick]``): ``b_pareto.csv`` (one row per MTP plus the
oracle), ``b_pareto.png``, ``timings.json`` (cache: a re-run re-times nothing it already timed on this device with
the same cell; ``--retime`` forces it), ``settings.json`` and, without ``--sweep``, ``data/`` and ``sweep/``.
Parameters: ``experiments/configs/b_pareto.toml`` (``[quick]`` and ``[full]``; keys in :class:`Settings`). The
data, the sweep of fits and the settings come from :mod:`mtpjax.experiment` (the stages of ``mtpjax run``).
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mtpjax import experiment as E
from mtpjax.errors import ConfigError
from mtpjax.experiment import ExperimentError
from mtpjax.fit.validate import non_negative_float, non_negative_int, positive_float, positive_int

HERE = Path(__file__).resolve().parent
NAME = "b_pareto"
DEFAULT_CONFIG = HERE / "configs" / "b_pareto.toml"


@dataclass(frozen=True)
class Settings(E.SweepSettings):
    """The [quick] / [full] table of b_pareto.toml: the fit keys of :class:`mtpjax.experiment.SweepSettings` (used
    without ``--sweep``), the training subset whose MTPs are compared, and the timing cell."""

    subset: str = "EVERYTHING"  # the training subset whose MTPs are compared
    rmse: str = "train"  # which RMSE is the y axis: train or test
    oracle: object = field(default_factory=lambda: {"type": "zhou", "elements": ["Mg"]}, metadata={"help": (
        "the classical potential timed for reference: a make_oracle spec (a table or a string)")})
    lattice_a: float = field(default=3.19, metadata={"check": positive_float})  # Å, hcp a of the timing cell
    covera: float = field(default=1.624, metadata={"check": positive_float})  # c/a of the timing cell
    repeat: tuple[int, int, int] = field(default=(6, 6, 6), metadata={"check": positive_int, "help": (
        "primitive cells along a, b, c of the timing cell: 6x6x6 -> 432 atoms")})
    rattle: float = field(default=0.05, metadata={"check": non_negative_float})  # Å, standard deviation of the displacements
    rattle_seed: int = field(default=1000, metadata={"check": non_negative_int})
    repeats: int = field(default=7, metadata={"check": positive_int})  # timed calls; the median is reported
    warmup: int = field(default=2, metadata={"check": positive_int})  # untimed calls after compilation

    def check_config(self) -> None:
        """What the types do not say (a :class:`ConfigError` names the key)."""
        super().check_config()
        if self.subset not in E.KNOWN_SUBSETS:
            raise ConfigError("subset", f"must be one of {list(E.KNOWN_SUBSETS)}, got {self.subset!r}")
        if self.rmse not in ("train", "test"):
            raise ConfigError("rmse", f"must be 'train' or 'test', got {self.rmse!r}")
        if not isinstance(self.oracle, (dict, str)) or not self.oracle:
            raise ConfigError("oracle", f"must be a make_oracle spec (a table such as {{type = \"zhou\"}}, or a string), "
                                        f"got {self.oracle!r}")


def load_settings(path, mode: str) -> Settings:
    """The ``[mode]`` table of ``path``, checked; ``generate`` resolved relative to the file."""
    return E.load_settings(Settings, path, mode)


# ------------------------------------------------------------------------------------------------------------------
# the Pareto front

def pareto_front(costs, errors) -> list[bool]:
    """Which points are Pareto-optimal: no other point has cost <= and error <= with one of them strictly smaller.
    Points with a non-finite cost or error are never optimal. Equal points are both optimal."""
    pts = [(float(c), float(e)) for c, e in zip(costs, errors)]
    ok = [math.isfinite(c) and math.isfinite(e) for c, e in pts]
    out = []
    for k, (c, e) in enumerate(pts):
        if not ok[k]:
            out.append(False)
            continue
        dominated = any(ok[j] and j != k and c2 <= c and e2 <= e and (c2 < c or e2 < e) for j, (c2, e2) in enumerate(pts))
        out.append(not dominated)
    return out


# ------------------------------------------------------------------------------------------------------------------
# timing

def timing_cell(s: Settings):
    """The timing cell: hcp Mg (a = lattice_a Å, c = covera·a) repeated ``repeat`` times, rattled by ``rattle`` Å."""
    from ase.build import bulk

    a = float(s.lattice_a)
    atoms = bulk("Mg", "hcp", a=a, c=a * float(s.covera)).repeat(tuple(s.repeat))
    if s.rattle > 0:
        atoms.rattle(stdev=float(s.rattle), seed=int(s.rattle_seed))
    return atoms


class CallTimer:
    """One potential, compiled for the timing cell: ``call()`` runs one jit-compiled energy+forces+stress evaluation
    (neighbour list built once, on the host with vesin) and ``call_nl()`` builds the neighbour list again first.
    Both return their wall time in s. Construction compiles (``compile_s``) and checks the result is finite."""

    def __init__(self, potential, atoms, name: str = "potential"):
        import jax
        import jax.numpy as jnp
        import numpy as np

        from mtpjax.neighbors import neighbour_list
        from mtpjax.potential import energy_forces_virial

        self.potential, self.n = potential, len(atoms)
        self._host = (atoms.positions, atoms.cell.array, atoms.pbc)
        nl = neighbour_list(*self._host, potential.cutoff)
        self._shape = nl.index.shape
        self._pos = jnp.zeros((self._shape[0], 3)).at[: self.n].set(jnp.asarray(atoms.positions))
        self._species = jnp.full(self._shape[0], -1).at[: self.n].set(0)
        self._cell = jnp.asarray(atoms.cell.array)
        self._nbrs = jax.tree.map(jnp.asarray, nl)
        self._fn = jax.jit(energy_forces_virial)
        self._nl, self._jnp, self._jax = neighbour_list, jnp, jax
        t = time.perf_counter()
        e, f, _ = jax.block_until_ready(self._fn(potential, self._pos, self._cell, self._species, self._nbrs))
        self.compile_s = time.perf_counter() - t
        if not (np.isfinite(float(e)) and np.all(np.isfinite(np.asarray(f)))):
            raise ExperimentError(f"{name}: non-finite energy or forces on the timing cell")
        self.nbrs_per_atom = float(np.asarray(nl.mask).sum()) / self.n

    def call(self) -> float:
        t = time.perf_counter()
        self._jax.block_until_ready(self._fn(self.potential, self._pos, self._cell, self._species, self._nbrs))
        return time.perf_counter() - t

    def call_nl(self) -> float:
        t = time.perf_counter()
        nl = self._nl(*self._host, self.potential.cutoff, n_atoms_pad=self._shape[0], n_nb=self._shape[1])
        nbrs = self._jax.tree.map(self._jnp.asarray, nl)
        self._jax.block_until_ready(self._fn(self.potential, self._pos, self._cell, self._species, nbrs))
        return time.perf_counter() - t


def time_interleaved(timers: list, repeats: int, warmup: int) -> list[dict]:
    """Time every :class:`CallTimer` ``repeats`` times, in rounds (one call of each per round, so that a burst of
    load on a shared machine hits all alike), after ``warmup`` untimed rounds. Per timer: median and fastest
    µs/atom of the call, median µs/atom with the neighbour list rebuilt, compilation s, neighbours per atom."""
    import statistics

    for _ in range(warmup):
        for t in timers:
            t.call()
    calls, with_nl = [[] for _ in timers], [[] for _ in timers]
    for _ in range(repeats):
        for k, t in enumerate(timers):
            calls[k].append(t.call())
        for k, t in enumerate(timers):
            with_nl[k].append(t.call_nl())
    return [{"us_per_atom": statistics.median(c) / t.n * 1e6, "us_per_atom_min": min(c) / t.n * 1e6,
             "us_per_atom_nl": statistics.median(w) / t.n * 1e6, "compile_s": round(t.compile_s, 3),
             "nbrs_per_atom": round(t.nbrs_per_atom, 2), "atoms": t.n, "repeats": repeats}
            for t, c, w in zip(timers, calls, with_nl)]


def device_name() -> str:
    """The device the timings ran on, e.g. ``CPU (2 cores)`` or ``GPU NVIDIA H100 80GB HBM3``."""
    import os

    import jax

    d = jax.devices()[0]
    if d.platform == "cpu":
        return f"CPU ({os.cpu_count()} cores)"
    return f"{d.platform.upper()} {getattr(d, 'device_kind', '')}".strip()


class TimingCache:
    """``timings.json``: timing results keyed by potential, device and cell (so a re-run re-times nothing)."""

    def __init__(self, path: Path, cell_key: str, retime: bool):
        self.path, self.cell_key = path, cell_key
        self.data = {} if retime or not path.exists() else json.loads(path.read_text())

    def key(self, name: str) -> str:
        return f"{name}|{device_name()}|{self.cell_key}"

    def get(self, name):
        return self.data.get(self.key(name))

    def put(self, name, value):
        from mtpjax.io.files import atomic_write

        self.data[self.key(name)] = value
        atomic_write(self.path, json.dumps(self.data, indent=1))


# ------------------------------------------------------------------------------------------------------------------
# the sweep to compare

def find_sweep(path: Path) -> Path:
    """The run_sweep folder of ``--sweep``: experiment a's output folder (its ``sweep/``) or a sweep folder itself."""
    for d in (path / "sweep", path):
        if (d / "results.csv").exists():
            return d
    raise ExperimentError(f"--sweep {path}: no results.csv there nor in {path / 'sweep'} (expected experiment a's output "
                            "folder or an mtpjax sweep folder)")


def read_sweep(sweep_dir: Path, subset: str) -> list[dict]:
    """Rows of ``results.csv`` for ``subset`` (EVERYTHING = run_sweep's 'all'), numbers parsed, with each run's potential."""
    from mtpjax.sweep import run_name

    path = sweep_dir / "results.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    tag = E.sweep_tag(subset)
    present = sorted({r["subset"] for r in rows})
    rows = [r for r in rows if r["subset"] == tag]
    if not rows:
        raise ExperimentError(f"{path}: no run of subset {subset!r} (run_sweep tag {tag!r}); present: {present}")
    out = []
    for r in rows:
        q = {"subset": subset, "level": int(r["level"]), "cutoff": float(r["cutoff"]), "seed": int(r["seed"]),
             "n_basis": int(r["n_basis"]) if r.get("n_basis") else None}
        for k in ("train_energy_meV", "train_forces", "test_energy_meV", "test_forces"):
            q[k] = float(r[k]) if r.get(k) not in (None, "") else float("nan")
        name = run_name(tag, q["level"], q["cutoff"], q["seed"])
        run = sweep_dir / "runs" / name
        pot = next((run / f"potential{s}" for s in (".mtpjax", ".almtp") if (run / f"potential{s}").exists()), None)
        if pot is None:
            raise ExperimentError(f"{run}: no potential.mtpjax or potential.almtp (listed in {path})")
        q["name"], q["potential"] = name, pot
        out.append(q)
    return out


def average_seeds(rows: list[dict]) -> list[dict]:
    """One row per (level, cutoff): RMSEs averaged over seeds; the first seed's potential is timed."""
    groups: dict = {}
    for r in sorted(rows, key=lambda r: (r["level"], r["cutoff"], r["seed"])):
        groups.setdefault((r["level"], r["cutoff"]), []).append(r)
    out = []
    for members in groups.values():
        q = dict(members[0])
        q["n_seeds"] = len(members)
        for k in ("train_energy_meV", "train_forces", "test_energy_meV", "test_forces"):
            q[k] = E.mean(m[k] for m in members)
        out.append(q)
    return out


# ------------------------------------------------------------------------------------------------------------------
# figure

def pareto_figure(rows: list[dict], oracle: dict, rmse: str, title: str = ""):
    """Figure of two panels (energy meV/atom, forces eV/Å): RMSE against µs/atom, log-log; colour = cutoff, label =
    level; the Pareto front as a line through the optimal points; the oracle as a vertical line (RMSE 0)."""
    from mtpjax.plotting import subplots

    cutoffs = sorted({r["cutoff"] for r in rows})
    colours = {c: E.colour("viridis", k / max(len(cutoffs) - 1, 1) * 0.85) for k, c in enumerate(cutoffs)}
    fig, axes = subplots(1, 2, figsize=(12, 5))
    for ax, (kind, label) in zip(axes, (("energy", f"{rmse} energy RMSE (meV/atom)"), ("forces", f"{rmse} force RMSE (eV/Å)"))):
        key = f"{rmse}_energy_meV" if kind == "energy" else f"{rmse}_forces"
        for c in cutoffs:
            sel = [r for r in rows if r["cutoff"] == c]
            ax.scatter([r["us_per_atom"] for r in sel], [r[key] for r in sel], s=36, color=colours[c], label=f"cutoff {c:g} Å",
                       zorder=3)
        for r in rows:
            ax.annotate(f"L{r['level']}", (r["us_per_atom"], r[key]), textcoords="offset points", xytext=(4, 3), fontsize=7)
        front = sorted((r for r in rows if r[f"pareto_{kind}"]), key=lambda r: r["us_per_atom"])
        if front:
            ax.plot([r["us_per_atom"] for r in front], [r[key] for r in front], "-", color="crimson", lw=1.2, zorder=2)
            ax.scatter([r["us_per_atom"] for r in front], [r[key] for r in front], s=110, facecolors="none",
                       edgecolors="crimson", lw=1.4, label="Pareto front", zorder=4)
        ax.axvline(oracle["us_per_atom"], color="k", ls="--", lw=1.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        E.plain_log_ticks(ax.xaxis)
        E.plain_log_ticks(ax.yaxis)
        ax.annotate(f"oracle {oracle['name']}\n{oracle['us_per_atom']:.3g} µs/atom, RMSE ≡ 0", (oracle["us_per_atom"], 0.97),
                    xycoords=("data", "axes fraction"), xytext=(4, 0), textcoords="offset points", fontsize=7, va="top")
        xs = [r["us_per_atom"] for r in rows] + [oracle["us_per_atom"]]
        ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
        ax.set_xlabel(f"cost: energy+forces+stress per call, µs/atom ({oracle.get('atoms', '?')}-atom hcp Mg; jit, median)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------------------------
# command line

CSV_COLUMNS = ["kind", "name", "subset", "level", "cutoff", "n_basis", "n_seeds", "us_per_atom", "us_per_atom_min", "us_per_atom_nl", "compile_s",
               "nbrs_per_atom", "atoms", "train_energy_meV", "train_forces", "test_energy_meV", "test_forces", "pareto_energy",
               "pareto_forces", "device"]


def build_parser():
    p = E.parser(NAME, "Experiment b (Figs. 5, 15): cost-accuracy Pareto front of MTPs vs level and cutoff",
                 DEFAULT_CONFIG, f"runs/experiments/{NAME}[_quick]",
                 data_help="an existing mtpjax generate folder for our own sweep (skips generation)")
    p.add_argument("--sweep", type=Path, default=None,
                   help="reuse fitted MTPs: experiment a's output folder (or any mtpjax sweep folder); default: fit our own")
    p.add_argument("--retime", action="store_true", help="time every potential again (ignore timings.json)")
    return p


def run(args) -> Path:
    """Experiment b for parsed command-line ``args``; returns the output folder."""
    from mtpjax.errors import MtpjaxError
    from mtpjax.model import load_mtp
    from mtpjax.oracles import make_oracle

    mode = "quick" if args.quick else "full"
    t0 = time.perf_counter()
    log = E.log
    s = load_settings(args.config, mode)
    E.use_compilation_cache(not args.no_jax_cache)
    out = args.out or E.default_out(NAME, args.quick)
    out.mkdir(parents=True, exist_ok=True)
    if args.sweep is not None:
        sweep_dir = find_sweep(args.sweep)
        log(f"{NAME} ({mode}): reusing the fits of {sweep_dir} (subset {s.subset}) -> {out}")
    else:
        log(f"{NAME} ({mode}): own sweep, levels {list(s.levels)}, cutoffs {list(s.cutoffs)} Å, subset {s.subset}, "
            f"{s.max_steps} steps -> {out}")
        if args.data is not None:
            data_dir = E.given_data(args.data)
        else:
            data_dir = out / "data"
            E.prepare_data(s.generate, data_dir, log=log)
        sweep_dir = out / "sweep"
        E.sweep_fits(data_dir, sweep_dir, s, [s.subset], log=log)
    rows = average_seeds(read_sweep(sweep_dir, s.subset))
    if s.rmse == "test" and all(math.isnan(r["test_energy_meV"]) for r in rows):
        raise ExperimentError(f"{args.config}: {mode}.rmse = 'test' but the sweep {sweep_dir} has no test errors")
    try:
        oracle_pot = make_oracle(s.oracle)
    except MtpjaxError as err:
        raise ExperimentError(f"{args.config}: {mode}.oracle: {err}") from None

    atoms = timing_cell(s)
    cell_key = json.dumps({k: getattr(s, k) for k in ("lattice_a", "covera", "repeat", "rattle", "rattle_seed", "repeats", "warmup")})
    cache = TimingCache(out / "timings.json", cell_key, args.retime)
    log(f"timing on {device_name()}: {len(atoms)}-atom hcp Mg rattled by {s.rattle} Å, median of {s.repeats} calls")
    oracle_name = getattr(oracle_pot, "name", str(s.oracle))
    todo = [(r["name"], r) for r in rows] + [("oracle:" + json.dumps(s.oracle, sort_keys=True), None)]
    label = {key: (key if r is not None else f"oracle {oracle_name}") for key, r in todo}
    pending = [(key, r) for key, r in todo if cache.get(key) is None]
    for key, r in todo:
        if cache.get(key) is not None:
            log(f"{label[key]}: {cache.get(key)['us_per_atom']:.2f} µs/atom (timed before)")
    timers = []
    for k, (key, r) in enumerate(pending):
        pot = load_mtp(r["potential"]) if r is not None else oracle_pot
        timers.append(CallTimer(pot, atoms, label[key]))
        log(f"[{k + 1}/{len(pending)}] compiled {label[key]} ({timers[-1].compile_s:.1f} s)")
    if timers:
        log(f"timing {len(timers)} potentials: {s.warmup} warm-up and {s.repeats} timed rounds")
        for (key, r), t in zip(pending, time_interleaved(timers, s.repeats, s.warmup)):
            cache.put(key, t)
            log(f"{label[key]}: {t['us_per_atom']:.2f} µs/atom (fastest {t['us_per_atom_min']:.2f}; with neighbour list "
                f"{t['us_per_atom_nl']:.2f}; {t['nbrs_per_atom']} neighbours/atom)")
    for key, r in todo:
        if r is None:
            oracle_t = cache.get(key)
        else:
            r.update(cache.get(key))
    dev = device_name()
    for kind in ("energy", "forces"):
        key = f"{s.rmse}_energy_meV" if kind == "energy" else f"{s.rmse}_forces"
        for r, opt in zip(rows, pareto_front([r["us_per_atom"] for r in rows], [r[key] for r in rows])):
            r[f"pareto_{kind}"] = opt
    table = [{**{k: v for k, v in r.items() if k != "potential"}, "kind": "mtp", "device": dev} for r in rows]
    table.sort(key=lambda r: (r["level"], r["cutoff"]))
    oracle_row = {"kind": "oracle", "name": oracle_name, "subset": "", "level": "", "cutoff": getattr(oracle_pot, "cutoff", ""),
                  "n_basis": "", "n_seeds": "", **oracle_t, "train_energy_meV": 0.0, "train_forces": 0.0, "test_energy_meV": 0.0,
                  "test_forces": 0.0, "pareto_energy": "", "pareto_forces": "", "device": dev}
    E.write_csv(out / f"{NAME}.csv", table + [oracle_row], CSV_COLUMNS)
    fig = pareto_figure(table, {"name": oracle_name, "us_per_atom": oracle_t["us_per_atom"], "atoms": len(atoms)}, s.rmse,
                        title=f"Cost vs {s.rmse} RMSE, MTPs fitted to {s.subset} ({mode}; {dev})")
    E.save_figure(fig, out / f"{NAME}.png")
    wall = time.perf_counter() - t0
    from mtpjax.io.files import write_json

    write_json(out / "settings.json", {"mode": mode, "config": str(args.config), "sweep": str(sweep_dir),
                                       **E.settings_dict(s), "device": dev, "wall_s": round(wall, 1)}, indent=1)
    front = [f"L{r['level']}/{r['cutoff']:g}" for r in table if r["pareto_forces"]]
    log(f"{NAME}: {len(table)} MTPs + oracle in {wall:.0f} s; force Pareto front {front} -> {out / (NAME + '.csv')}, "
        f"{out / (NAME + '.png')}")
    return out


def main(argv=None) -> int:
    """The command line; 0 on success, 2 on bad input (the message, naming the file and key, on stderr)."""
    return E.guarded(NAME, run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
