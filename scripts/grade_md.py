"""The extrapolation grade during MD (the paper's Fig. 22 style) and its cost.

MLIP-3's level-16 Mg MTP (``shared/bench/fit/mlip3_l16_rc6p5.almtp``) with the active set stored in the file
(configuration mode), in mtpjax.md NVT (Langevin, 1 fs) runs:

- hcp at 300 K; hcp with a vacancy at 700 K; fcc at 300 K; the liquid (hcp melted at 2500 K at the hcp density);
- the cost: the MD step with the grade every ``grade_every`` steps against the plain step (same run length, in-process
  after compilation, both on this machine in the same run), and against one energy+forces+stress call.

    python scripts/grade_md.py [--steps 2000] [--out docs/benchmarks/grade_md.md]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import mtpjax  # noqa: F401  (float64 before jax)

import jax
import jax.numpy as jnp
import numpy as np
from ase.build import bulk

from mtpjax.active import load_active_set
from mtpjax.io.files import atomic_write, machine, versions
from mtpjax.md import run_md
from mtpjax.neighbors import neighbour_list
from mtpjax.oracles import make_potential
from mtpjax.plotting import subplots
from mtpjax.potential import energy_forces_virial

ROOT = Path(__file__).resolve().parents[1]
MTP = ROOT.parent / "shared" / "bench" / "fit" / "mlip3_l16_rc6p5.almtp"


def systems():
    hcp = bulk("Mg", "hcp", a=3.21, c=5.21).repeat((4, 4, 3))
    vac = hcp.copy()
    del vac[0]
    fcc = bulk("Mg", "fcc", a=4.52, cubic=True).repeat((3, 3, 3))
    return {"hcp 300 K": (hcp, 300.0), "hcp vacancy 700 K": (vac, 700.0), "fcc 300 K": (fcc, 300.0),
            "liquid 2500 K": (hcp, 2500.0)}


def cost(pot, active, steps: int, every: list[int]):
    """CPU seconds per step of NVT on 432 atoms of hcp, without the grade and with it every k steps; and one E+F+S."""
    atoms = bulk("Mg", "hcp", a=3.21, c=5.21).repeat((6, 6, 6))
    out = {}
    for k in [None, *every]:
        stamps = []
        kw = {} if k is None else {"active_set": active, "grade_every": k, "gamma_break": 1e12}
        run_md(pot, atoms, ensemble="nvt_langevin", steps=2 * steps, timestep=1.0, temperature=300.0, log_every=steps,
               species=["Mg"], callback=lambda row: stamps.append(time.process_time()), **kw)
        out[k] = (stamps[-1] - stamps[1]) / steps
    nb = jax.tree_util.tree_map(jnp.asarray, neighbour_list(atoms.positions, atoms.cell.array, True, pot.cutoff,
                                                            n_atoms_pad=len(atoms)))
    R, cell, types = jnp.asarray(atoms.positions), jnp.asarray(atoms.cell.array), jnp.zeros(len(atoms), jnp.int32)
    fn = jax.jit(lambda p, R, c, t, n: energy_forces_virial(p, R, c, t, n))
    jax.block_until_ready(fn(pot, R, cell, types, nb))
    times = []
    for _ in range(7):
        t0 = time.process_time()
        jax.block_until_ready(fn(pot, R, cell, types, nb))
        times.append(time.process_time() - t0)
    out["efs"] = statistics.median(times)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--grade-every", type=int, default=10)
    p.add_argument("--cost-steps", type=int, default=100)
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "grade_md.md"))
    a = p.parse_args(argv)
    pot = make_potential(str(MTP), species=["Mg"])
    active = load_active_set(MTP, pot)
    t_start = time.perf_counter()
    runs = {}
    for name, (atoms, temp) in systems().items():
        t0 = time.perf_counter()
        r = run_md(pot, atoms, ensemble="nvt_langevin", steps=a.steps, timestep=1.0, temperature=temp, log_every=a.grade_every * 10,
                   grade_every=a.grade_every, active_set=active, species=["Mg"], gamma_break=1e12, seed=1)
        runs[name] = (r.column("time_fs") / 1000.0, r.column("grade"), r.column("temperature_K"), len(atoms),
                      time.perf_counter() - t0)
        print(name, f"max γ {np.nanmax(r.column('grade')):.4g}", file=sys.stderr, flush=True)
    c = cost(pot, active, a.cost_steps, [1, a.grade_every])
    fig, ax = subplots(figsize=(6.4, 4.0))
    for name, (t, g, *_rest) in runs.items():
        ax.semilogy(t, g, label=name)
    ax.axhline(1.001, color="k", ls=":", lw=0.8, label="γ = 1.001")
    ax.axhline(2.1, color="k", ls="--", lw=0.8, label="γ_select = 2.1")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("grade γ (largest of each log row)")
    ax.set_title("MLIP-3 level-16 Mg MTP in mtpjax.md NVT")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = Path(a.out).with_suffix(".png")
    fig.savefig(png, dpi=120)
    lines = ["# Extrapolation grade during MD (`run_md(..., active_set=...)`)", "",
             f"Command: `python scripts/grade_md.py {' '.join(sys.argv[1:] if argv is None else argv)}` "
             f"({time.perf_counter() - t_start:.0f} s wall)", "",
             f"Machine: {machine()}; JAX device: {jax.devices()[0]}; load average at the end "
             f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}.", "",
             f"Versions: {', '.join(f'{k} {v}' for k, v in versions(('jax', 'jaxlib', 'jax-md', 'ase')).items())}.", "",
             f"Potential: `{MTP.name}` (MLIP-3, level 16, 6.5 Å) with the active set stored in the file "
             f"({active.mode} mode, {active.n} parameters). NVT Langevin, 1 fs, {a.steps} steps, the grade every "
             f"{a.grade_every} steps inside the jitted loop; γ per log row is the largest of its {a.grade_every * 10} steps.", "",
             "| simulation | atoms | max γ | mean γ | log rows with γ > 1.001 (after the start) | wall s |", "|---|---:|---:|---:|---:|---:|"]
    for name, (t, g, temp, n, wall) in runs.items():
        lines.append(f"| {name} | {n} | {np.nanmax(g):.4g} | {np.nanmean(g):.4g} | {int(np.sum(g[1:] > 1.001))} of {len(g) - 1} rows | {wall:.0f} |")
    lines += ["", f"![grade]({png.name})", "",
              "Cost, 432 atoms of hcp, NVT, CPU seconds per step after compilation (process CPU time: the machine is "
              "shared), the same run length each:", "",
              "| | s/step | vs plain MD step | vs one E+F+S call |", "|---|---:|---:|---:|"]
    base, efs = c[None], c["efs"]
    lines.append(f"| plain MD step | {base:.4f} | 1.00 | {base / efs:.2f} |")
    for k in (1, a.grade_every):
        lines.append(f"| grade every {k} step{'s' if k > 1 else ''} | {c[k]:.4f} | {c[k] / base:.2f} | {c[k] / efs:.2f} |")
    lines.append(f"| one E+F+S call | {efs:.4f} | | 1.00 |")
    lines += ["", f"Grade overhead: {100 * (c[a.grade_every] - base) / efs:.0f} % of the force call with the grade every "
              f"{a.grade_every} steps, {100 * (c[1] - base) / efs:.0f} % with it every step."]
    atomic_write(a.out, "\n".join(lines) + "\n")
    print(f"-> {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
