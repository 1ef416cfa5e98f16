"""Issue 15, item 7 at quick size: the active-learning loop (``mtpjax learn``) repairs the MTP fitted to 10 % of
EVERYTHING, and the verification matrix (``mtpjax verify``) before and after, against the MTP fitted to EVERYTHING.

1. Start: scripts/grade_check.py's data and fits (the quickstart's ``[generate]`` tables, Zhou EAM Mg; level 16,
   5.5 Å, ``mtpjax fit`` defaults, to EVERYTHING and to its seeded 10 %), reused from ``--grade-work`` when they are
   there, else made with the same ``mtpjax generate`` / ``mtpjax fit`` commands.
2. Learn: ``mtpjax learn`` with ``configs/learn_repair.toml`` (copied to WORK, where its relative paths point):
   from the 10 % potential and its 48 training structures, MD of the solids of grade_check.py (the hcp vacancy at
   700 K, the Σ7 [0001] grain boundary at 600 K, fcc and dhcp at 300 K; ``--liquid`` adds the liquid at 2500 K and
   5 GPa) graded in neighbourhood mode, MaxVol selection, labels from the Zhou EAM, warm-started refits, until every
   run completes without passing gamma_break or ``max_rounds``.
2b. Strict (``--stages ... strict``): the same loop continued from its final potential and training set with
   γ_select 1.5 and γ_break 2.1 (``--strict-select``, ``--strict-break``, ``--strict-rounds``; output learn_strict/).
3. Verify: ``mtpjax verify --quick`` (all six tests; ``--full`` for the full sizes) of the 10 % potential (before),
   the repaired one (after), the strict loop's (if run) and the EVERYTHING one against the Zhou EAM; the two fixed
   ones run in the background while the loop runs.
4. Check (``--stages ... check``, optional): the repaired potential in grade_check.py's seven simulations
   (:func:`grade_check.simulations`, same steps, seed and grading as there), max γ per simulation.
5. Report: ``docs/benchmarks/learn_repair.md`` (rounds, labels, max γ per round, the matrix) and
   ``learn_repair.png`` (the matrix as a heatmap, :func:`c_error_matrix.matrix_figure`).

Every stage resumes: ``mtpjax learn`` from its state.json, a verification with a ``done.json`` for the same
potential is skipped, the check's results are kept in WORK/check.json. Wall times in WORK/times.json.

    nice -n 10 .venv/bin/python scripts/learn_repair.py [--work /tmp/learn_repair] [--grade-work /tmp/grade_check]
        [--max-rounds 8] [--liquid] [--full] [--stages learn strict verify check report] [--check-steps 2000]
        [--seed 1]

``--seed N`` sets every simulation's MD seed (the config's is 1): the same loop from the same start with other
trajectories; give it its own ``--work`` and ``--out``.

The committed docs/benchmarks/learn_repair.md: ``--stages learn strict verify check report``; its "Reading (by
hand)" section is kept when the report is written again.

Units: K, GPa, fs (MD), meV/atom, eV/Å, GPa (RMSEs); verification rows in their own units.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import mtpjax  # noqa: F401  (float64 before jax)

import numpy as np

from mtpjax.io import read_structures, write_structures
from mtpjax.io.files import atomic_write, machine, read_json, versions, write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
import grade_check as GC  # noqa: E402  (scripts/grade_check.py: simulations, sh)
from experiments.c_error_matrix import assemble_matrix, matrix_figure  # noqa: E402

MTPJAX = [sys.executable, "-m", "mtpjax.cli"]
CONFIG = ROOT / "configs" / "learn_repair.toml"
#: The matrix columns: (label, verification folder under WORK/verify).
COLUMNS = (("10 % (before)", "before"), ("repaired (after)", "after"), ("repaired, strict", "strict"),
           ("EVERYTHING", "everything"))
LIQUID = """
[[learn.simulation]]
name = "liquid_2500K_5GPa"
structure = "structures/liquid_start.extxyz"  # 4x4x3 hcp, 96 atoms, melted by the run
ensemble = "npt_mtk"
temperature = 2500.0
pressure = 5.0
barostat_time = 500.0
steps = 1000
timestep = 1.0
log_every = 50
grade_every = 10
trajectory_every = 1000
seed = 1
"""
#: The heading of the hand-written reading in the report (kept when the report is written again).
READING = "## Reading (by hand)"
#: grade_check.simulations' names -> the structure files of the config.
STRUCTURES = {"hcp vacancy 700 K": "hcp_vacancy", "Σ7 [0001] grain boundary 600 K": "sigma7_gb", "fcc 300 K": "fcc",
              "dhcp 300 K": "dhcp", "liquid 2500 K, 5 GPa (NPT)": "liquid_start"}


def log(msg: str) -> None:
    print(f"[learn_repair {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Times:
    """Wall seconds of each stage, kept in WORK/times.json across invocations."""

    def __init__(self, path: Path):
        self.path = path
        self.data = read_json(path, "times") if path.exists() else {}
        self.lock = threading.Lock()

    def add(self, key: str, seconds: float) -> None:
        with self.lock:
            self.data[key] = self.data.get(key, 0.0) + seconds
            write_json(self.path, self.data)


# ------------------------------------------------------------------------------------------------ 1. start
def ensure_grade_check(gc: Path, steps_log: list) -> None:
    """grade_check.py's data and the two fits in ``gc`` (made by the same commands if missing)."""
    gc.mkdir(parents=True, exist_ok=True)
    data = gc / "data"
    if not (data / "EVERYTHING.extxyz").exists():
        text = (ROOT / "configs" / "quickstart.toml").read_text().split("[generate]", 1)[1].split("\n[fit]", 1)[0]
        (gc / "generate.toml").write_text(text.replace("[generate.", "["))
        GC.sh(MTPJAX + ["generate", "--config", gc / "generate.toml", "--out", data, "-q"], steps_log)
    if not (gc / "subset.extxyz").exists():  # grade_check.py's seeded 10 %
        everything = read_structures(data / "EVERYTHING.extxyz")
        pick = np.sort(np.random.default_rng(0).choice(len(everything), max(1, round(0.1 * len(everything))),
                                                       replace=False))
        write_structures([everything[k] for k in pick], gc / "subset.extxyz", format="extxyz")
    for path in (data / "EVERYTHING.extxyz", gc / "subset.extxyz"):
        if not (gc / (path.stem + ".mtpjax")).exists():
            GC.sh(MTPJAX + ["fit", path, "--level", "16", "--cutoff", "5.5", "--output", gc / (path.stem + ".almtp"),
                            "-q"], steps_log)


def with_seed(text: str, seed: int | None) -> str:
    """The loop's config ``text`` with every simulation's MD seed set to ``seed`` (None: unchanged). Round k of
    ``mtpjax learn`` runs a simulation with its seed + k, so a loop with another seed draws other trajectories,
    candidates and selections from the same start. Raises ValueError if ``text`` has no ``seed =`` line."""
    if seed is None:
        return text
    out, n = re.subn(r"(?m)^seed = \d+", f"seed = {int(seed)}", text)
    if not n:
        raise ValueError("the learn config has no `seed = ` line to set")
    return out


def prepare(work: Path, gc: Path, liquid: bool, times: Times, seed: int | None = None) -> Path:
    """WORK/start, WORK/structures and WORK/learn_repair.toml (its simulations' MD seeds set to ``seed`` when one is
    given, :func:`with_seed`); returns the config path."""
    import shutil

    from mtpjax.oracles import make_potential

    steps_log: list = []
    ensure_grade_check(gc, steps_log)
    for cmd, t in steps_log:
        times.add(f"grade_check data: {cmd}", t)
    start = work / "start"
    start.mkdir(parents=True, exist_ok=True)
    if not (start / "potential.mtpjax").exists():
        shutil.copyfile(gc / "subset.extxyz", start / "train.extxyz")
        shutil.copyfile(gc / "subset.mtpjax", start / "potential.mtpjax")
    folder = work / "structures"
    if not all((folder / f"{f}.extxyz").exists() for f in STRUCTURES.values()):
        folder.mkdir(parents=True, exist_ok=True)
        sims = GC.simulations(make_potential("zhou:Mg"))
        for name, stem in STRUCTURES.items():
            write_structures([sims[name][0]], folder / f"{stem}.extxyz", format="extxyz")
    config = work / ("learn_repair_liquid.toml" if liquid else "learn_repair.toml")
    text = CONFIG.read_text()
    if liquid:
        text = text.replace('output = "learn"', 'output = "learn_liquid"') + LIQUID
    atomic_write(config, with_seed(text, seed))
    return config


# ------------------------------------------------------------------------------------------------ 3. verify
def verify_command(potential: Path, outdir: Path, full: bool) -> list:
    return MTPJAX + ["verify", "--potential", potential, "--species", "Mg", "--oracle", "zhou:Mg", "-o", outdir, "-q"] \
        + ([] if full else ["--quick"])


def verify_done(outdir: Path, potential: Path, full: bool) -> bool:
    from mtpjax.experiment import file_digest

    done = outdir / "done.json"
    return done.exists() and read_json(done, "verification record").get("key") == [file_digest(potential), full]


def start_verify(name: str, potential: Path, work: Path, full: bool, times: Times):
    """Start ``mtpjax verify`` of ``potential`` into WORK/verify/NAME in the background (None if done before);
    returns the thread that waits for it."""
    from mtpjax.experiment import file_digest

    outdir = work / "verify" / name
    if verify_done(outdir, potential, full):
        log(f"verify {name}: done before, skipped")
        return None
    cmd = verify_command(potential, outdir, full)
    log("$ " + " ".join(map(str, cmd)))
    t0 = time.perf_counter()
    with open(work / f"verify_{name}.log", "w") as err:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=err, stderr=subprocess.STDOUT)

    def wait():
        rc = proc.wait()
        dt = time.perf_counter() - t0
        times.add(f"mtpjax verify ({'full' if full else 'quick'}) {name}", dt)
        log(f"verify {name}: exit {rc} after {dt:.0f} s")
        if rc in (0, 1) and (outdir / "rows.csv").exists():  # 1: a test failed; its rows are missing, the others kept
            write_json(outdir / "done.json", {"key": [file_digest(potential), full], "exit": rc, "seconds": dt})

    th = threading.Thread(target=wait, daemon=False)
    th.start()
    return th


def read_rows(outdir: Path) -> list:
    with open(outdir / "rows.csv", newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------------ 4. check
def check(work: Path, potential: Path, steps: int, times: Times) -> dict:
    """The repaired potential in grade_check.py's seven simulations (run_md as grade_check.py calls it): max γ each."""
    from mtpjax.active import load_active_set
    from mtpjax.md import MDInstability, run_md
    from mtpjax.oracles import make_potential

    path = work / "check.json"
    res = read_json(path, "check") if path.exists() else {}
    if res.get("potential") != str(potential) or res.get("steps") != steps:
        res = {"potential": str(potential), "steps": steps, "runs": {}}
    pot = make_potential(str(potential), species=["Mg"])
    active = load_active_set(potential, pot)
    for sim, (atoms, ensemble, temp, pres) in GC.simulations(make_potential("zhou:Mg")).items():
        if sim in res["runs"]:
            continue
        t0, note = time.perf_counter(), ""
        try:
            r = run_md(pot, atoms, ensemble=ensemble, steps=steps, timestep=1.0, temperature=temp, pressure=pres,
                       log_every=100, grade_every=10, active_set=active, gamma_break=1e300, species=["Mg"], seed=1,
                       barostat_time=500.0)
        except MDInstability as err:
            r, note = err.result, f"unstable after step {err.step}"
        g = float(np.nanmax(r.column("grade")))
        res["runs"][sim] = {"max_gamma": g, "note": note, "atoms": len(atoms), "wall_s": time.perf_counter() - t0}
        times.add(f"check MD, {sim}", time.perf_counter() - t0)
        log(f"check {sim}: max γ {g:.4g} {note}")
        write_json(path, res)
    return res


# ------------------------------------------------------------------------------------------------ 5. report
def grade_check_table(path: Path, names) -> dict:
    """{simulation: (max γ EVERYTHING, max γ 10 %)} of ``names`` from docs/benchmarks/grade_check.md's table."""
    out = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in names:
            out[cells[0]] = (cells[2], cells[3])
    return out


def fmt(x, digits=4) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def rounds_lines(learn_dir: Path, atoms_start: int) -> tuple[list, int, int, int]:
    """(the markdown table of a loop's rounds, structures labelled, atoms labelled, refits)."""
    from mtpjax.io import read_cfg

    state = read_json(learn_dir / "state.json", "learn state")
    rounds, names = state["rounds"], [s["name"] for s in state["config"]["simulation"]]
    lines = ["| round | candidates | selected | labelled (atoms) | " + " | ".join(f"max γ {n}" for n in names)
             + " | broke | train structures (atoms) | train RMSE meV/atom, eV/Å | wall s |",
             "|---:|---:|---:|---:|" + "---:|" * len(names) + "---:|---:|---|---:|"]
    total_labels = total_atoms = refits = 0
    train_atoms = atoms_start
    for r in rounds:
        k = r["round"]
        lab = learn_dir / f"round_{k:02d}" / "labelled.cfg"
        n_at = sum(len(c.types) for c in read_cfg(lab)) if lab.exists() else 0
        if "labelled" in r:
            total_labels += r["labelled"]
            total_atoms += n_at
            train_atoms += n_at
        refits += "train_size" in r
        g, sims = r.get("max_gamma", {}), r.get("simulations", {})
        cells = []
        for n in names:
            s = sims.get(n, {})
            note = "" if s.get("completed", True) else f" (broke at step {s.get('steps')})" if s.get("broke") else " (unstable)"
            cells.append(fmt(g.get(n)) + note)
        lines.append(f"| {k} | {r.get('candidates', '–')} | {r.get('selected', '–')} | "
                     + (f"{r['labelled']} ({n_at})" if "labelled" in r else "–") + " | " + " | ".join(cells)
                     + f" | {r.get('broke', '–')} | "
                     + (f"{r['train_size']} ({train_atoms})" if "train_size" in r else "–")
                     + " | " + (f"{r['rmse_energy_meV_atom']:.3g}, {r['rmse_forces_eV_A']:.3g}"
                                if "rmse_energy_meV_atom" in r else "–")
                     + f" | {r.get('wall_s', 0.0):.0f} |")
    return lines, total_labels, total_atoms, refits


def report(work: Path, learn_dir: Path, out: Path, full: bool, times: Times, argv, extra: str) -> None:
    """docs/benchmarks/learn_repair.md (and .png) from WORK's files; ``extra``: what EVERYTHING adds to the 10 %."""
    state = read_json(learn_dir / "state.json", "learn state")
    rounds, names = state["rounds"], [s["name"] for s in state["config"]["simulation"]]
    start = state.get("start", {})
    seed0 = state["config"]["simulation"][0]["settings"].get("seed", 1)
    atoms0 = sum(len(a) for a in read_structures(work / "start" / "train.extxyz"))
    table, total_labels, total_atoms, refits = rounds_lines(learn_dir, atoms0)
    lines = ["# Active learning repairs the 10 % potential (issue 15, item 7, quick size)", "",
             f"Command: `nice -n 10 .venv/bin/python scripts/learn_repair.py {' '.join(argv)}`", "",
             f"Machine: {machine()}; shared with other jobs (load average at the end "
             f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}).", "",
             f"Versions: {', '.join(f'{k} {v}' for k, v in versions(('jax', 'jaxlib', 'jax-md', 'ase')).items())}.", "",
             "Start: scripts/grade_check.py's level-16, 5.5 Å MTP fitted to a seeded 10 % of the quickstart's "
             f"EVERYTHING ({start.get('train_size', '?')} structures, {atoms0} atoms; Zhou EAM labels). "
             "Loop: `configs/learn_repair.toml` (neighbourhood-mode active set, γ_select 2.1, γ_break 10 (MLIP's "
             "defaults), MaxVol threshold 1.1, refits of at most 20 Levenberg-Marquardt steps warm-started from the "
             "last potential, oracle = the Zhou EAM; simulations: "
             + ", ".join(names) + f", {state['config']['simulation'][0]['settings']['steps']} steps of 1 fs each, "
             f"graded every 10 steps, round k with seed {seed0} + k).", "",
             "## The loop with MLIP's thresholds (γ_select 2.1, γ_break 10)", "",
             f"Status: **{state['status']}** after {len(rounds)} rounds.", ""] + table
    lines += ["", f"Wall time of the rounds (the table's sum): {sum(r.get('wall_s', 0.0) for r in rounds):.0f} s."]
    lines += ["", f"Labels: **{total_labels} structures ({total_atoms} atoms)** added by the loop to the "
              f"{start.get('train_size', '?')} structures ({atoms0} atoms) of the 10 % set, in {refits} refits; "
              f"EVERYTHING adds {extra} to them.", ""]
    strict = work / "learn_strict"
    if (strict / "state.json").exists():
        st = read_json(strict / "state.json", "learn state")
        train_atoms = atoms0 + total_atoms
        t2, l2, a2, r2 = rounds_lines(strict, train_atoms)
        c = st["config"]
        lines += [f"## Continued with stricter thresholds (γ_select {c['gamma_select']:g}, γ_break {c['gamma_break']:g})",
                  "", "The same config from the loop's final potential and training set (`--potential "
                  "learn/round_KK/potential.mtpjax --train learn/round_KK/train.cfg --gamma-select "
                  f"{c['gamma_select']:g} --gamma-break {c['gamma_break']:g} --max-rounds {c['max_rounds']}`, output "
                  "learn_strict/; its round 0 grades the first loop's final potential again, its round k with seed "
                  f"{seed0} + k as there).", "",
                  f"Status: **{st['status']}** after {len(st['rounds'])} rounds.", ""] + t2
        lines += ["", f"Wall time of the rounds (the table's sum): {sum(r.get('wall_s', 0.0) for r in st['rounds']):.0f} s."]
        lines += ["", f"Labels: {l2} more structures ({a2} atoms) in {r2} refits; in all {total_labels + l2} structures "
                  f"({total_atoms + a2} atoms) against EVERYTHING's {extra}.", ""]
    # the verification matrix
    rows = {}
    columns = [c for c in COLUMNS if c[1] != "strict" or (work / "verify" / "strict" / "rows.csv").exists()]
    for label, name in columns:
        d = work / "verify" / name
        if (d / "rows.csv").exists():
            rows[label] = read_rows(d)
    if len(rows) == len(columns):
        matrix = assemble_matrix(rows)
        oracle = {}
        for label in rows:
            for r in rows[label]:
                oracle.setdefault((r["test"], r["quantity"], r["unit"] or ""), r.get("oracle") or "")
        cols = [c for c, _ in columns]
        lines += ["## Verification matrix", "",
                  f"`mtpjax verify {'' if full else '--quick '}--species Mg --oracle zhou:Mg` (all six tests, "
                  f"{'full' if full else 'quick'} sizes) of each potential against the Zhou EAM. Relative rows: "
                  "100 · (MTP − oracle)/|oracle| in %; absolute rows: the error in the row's unit (an RMSE for "
                  "curves, MTP − oracle otherwise). Rows from experiments/c_error_matrix.py's assemble_matrix.", "",
                  "| test: quantity | unit | kind | oracle | " + " | ".join(cols) + " | "
                  + " | ".join(f"{c} / before" for c in cols[1:]) + " |",
                  "|---|---|---|---:|" + "---:|" * (2 * len(cols) - 1)]
        counts = {c: [0, 0] for c in cols[1:]}
        ratios = {c: {} for c in cols[1:]}
        for m in matrix:
            vals = [m[c] for c in cols]
            cells = []
            for c, v in zip(cols[1:], vals[1:]):
                b, a = abs(vals[0]), abs(v)
                ratio = a / b if np.isfinite(a) and np.isfinite(b) and b > 0 else float("nan")
                cells.append(fmt(ratio, 3))
                if np.isfinite(ratio) and ratio > 0 and m["unit"] != "points":  # 0 / x: no geometric mean
                    counts[c][0] += ratio < 1
                    counts[c][1] += ratio > 1
                    ratios[c].setdefault(m["test"], []).append(ratio)
            unit = m["unit"] + (" (%)" if m["kind"] == "relative" else "")
            ora = oracle.get((m["test"], m["quantity"], m["unit"]), "")
            try:
                ora = f"{float(ora):.4g}"
            except ValueError:
                pass
            lines.append(f"| {m['test']}: {m['quantity']} | {unit} | {m['kind']} | {ora} | "
                         + " | ".join(f"{v:+.3g}" if np.isfinite(v) else "–" for v in vals) + " | "
                         + " | ".join(cells) + " |")
        lines += [""]
        for c in cols[1:]:
            lines += [f"- {c}: |error| below the 10 % potential's in {counts[c][0]} rows, above in {counts[c][1]} "
                      "(count rows and exact zeros left out); geometric mean of |error| / |error before| per test: "
                      + ", ".join(f"{t} {np.exp(np.mean(np.log(v))):.3g} ({len(v)} rows)"
                          for t, v in ratios[c].items()) + "."]
        lines += [""]
        fig = matrix_figure(matrix, cols, "mtpjax verify against the Zhou EAM: the 10 % potential before and after "
                                          "active learning, and EVERYTHING")
        png = out.with_suffix(".png")
        fig.savefig(png, dpi=110)
        lines += [f"![matrix]({png.name})", ""]
    else:
        lines += ["## Verification matrix", "", f"Not complete: have {', '.join(rows) or 'none'}.", ""]
    # the check
    ck = work / "check.json"
    if ck.exists():
        res = read_json(ck, "check")
        gc = grade_check_table(ROOT / "docs" / "benchmarks" / "grade_check.md", res["runs"])
        lines += ["## Check: grade_check.py's simulations with the repaired potential", "",
                  f"The first loop's repaired potential (`{Path(res['potential']).relative_to(work)}`) in grade_check.py's seven runs ({res['steps']} steps of 1 fs, seed 1, graded "
                  "every 10 steps against its own neighbourhood-mode active set), beside grade_check.md's numbers "
                  "(2000 steps):", "",
                  "| simulation | atoms | max γ, repaired | max γ, EVERYTHING (grade_check.md) | max γ, 10 % (grade_check.md) |",
                  "|---|---:|---:|---:|---:|"]
        for sim, v in res["runs"].items():
            e, t = gc.get(sim, ("–", "–"))
            lines.append(f"| {sim} | {v['atoms']} | {v['max_gamma']:.4g}{' (' + v['note'] + ')' if v['note'] else ''} "
                         f"| {e} | {t} |")
        lines.append("")
    lines += ["## Wall time of each stage", "", "| stage | s |", "|---|---:|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in times.data.items()]
    text = "\n".join(lines) + "\n"
    if out.exists() and READING in out.read_text():  # the hand-written reading of an earlier run is kept
        kept = out.read_text().split(READING, 1)[1].split("\n## ", 1)[0]
        text = text.replace("## Wall time of each stage", READING + kept.rstrip() + "\n\n## Wall time of each stage", 1)
    atomic_write(out, text)
    log(f"-> {out}")


def everything_extra(gc: Path, start_train: Path) -> str:
    ev = read_structures(gc / "data" / "EVERYTHING.extxyz")
    sub = read_structures(start_train)
    return (f"{len(ev) - len(sub)} structures ({sum(len(a) for a in ev) - sum(len(a) for a in sub)} atoms)")


# ------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/learn_repair")
    p.add_argument("--grade-work", default="/tmp/grade_check", help="scripts/grade_check.py's --work (data and fits)")
    p.add_argument("--max-rounds", type=int, default=None, help="override the config's max_rounds (resumes go on)")
    p.add_argument("--liquid", action="store_true", help="add the liquid at 2500 K and 5 GPa (output learn_liquid/)")
    p.add_argument("--full", action="store_true", help="mtpjax verify at full size (default --quick)")
    p.add_argument("--stages", nargs="+", default=["learn", "verify", "report"],
                   choices=["learn", "strict", "verify", "check", "report"])
    p.add_argument("--strict-select", type=float, default=1.5, help="strict stage: gamma_select")
    p.add_argument("--strict-break", type=float, default=2.1, help="strict stage: gamma_break")
    p.add_argument("--strict-rounds", type=int, default=6, help="strict stage: max_rounds")
    p.add_argument("--check-steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=None,
                   help="every simulation's MD seed (default: the config's, 1); use another --work and --out")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "learn_repair.md"))
    argv = sys.argv[1:] if argv is None else argv
    a = p.parse_args(argv)
    work, gc = Path(a.work), Path(a.grade_work)
    work.mkdir(parents=True, exist_ok=True)
    times = Times(work / "times.json")
    config = prepare(work, gc, a.liquid, times, a.seed)
    learn_dir = work / ("learn_liquid" if a.liquid else "learn")
    threads = []
    if "verify" in a.stages:  # the two fixed potentials in the background, while the loop runs
        for name, pot in (("before", work / "start" / "potential.mtpjax"), ("everything", gc / "EVERYTHING.mtpjax")):
            threads.append(start_verify(name, pot, work, a.full, times))
    if "learn" in a.stages:
        cmd = MTPJAX + ["learn", config, "-o", learn_dir] + ([] if a.max_rounds is None else
                                                              ["--max-rounds", str(a.max_rounds)])
        log("$ " + " ".join(map(str, cmd)))
        t0 = time.perf_counter()
        rc = subprocess.run([str(c) for c in cmd]).returncode
        times.add("mtpjax learn" + (" (liquid)" if a.liquid else ""), time.perf_counter() - t0)
        if rc:
            log(f"mtpjax learn exited {rc}")
    final = None
    if (learn_dir / "state.json").exists():
        st = read_json(learn_dir / "state.json", "learn state")
        if st.get("potential") and st["status"] != "running":
            final = learn_dir / st["potential"]
    if "verify" in a.stages and final is not None:
        threads.append(start_verify("after", final, work, a.full, times))
    strict_dir = work / "learn_strict"
    if "strict" in a.stages and final is not None and not a.liquid:  # go on from there with stricter thresholds
        st = read_json(learn_dir / "state.json", "learn state")
        cmd = MTPJAX + ["learn", config, "-o", strict_dir, "--potential", final, "--train", learn_dir / st["train"],
                        "--gamma-select", str(a.strict_select), "--gamma-break", str(a.strict_break),
                        "--max-rounds", str(a.strict_rounds)]
        log("$ " + " ".join(map(str, cmd)))
        t0 = time.perf_counter()
        rc = subprocess.run([str(c) for c in cmd]).returncode
        times.add("mtpjax learn (strict)", time.perf_counter() - t0)
        if rc:
            log(f"mtpjax learn (strict) exited {rc}")
    if "verify" in a.stages and (strict_dir / "state.json").exists():
        st = read_json(strict_dir / "state.json", "learn state")
        if st.get("potential") and st["status"] != "running":
            threads.append(start_verify("strict", strict_dir / st["potential"], work, a.full, times))
    for th in threads:
        if th is not None:
            th.join()
    if "check" in a.stages and final is not None:
        check(work, final, a.check_steps, times)
    if "report" in a.stages and (learn_dir / "state.json").exists():
        report(work, learn_dir, Path(a.out), a.full, times, argv, extra=everything_extra(gc, work / "start" / "train.extxyz"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
