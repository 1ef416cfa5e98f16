"""Throughput of mtpjax.md: atom-steps per second of NVT (Langevin) for a level-16 MTP and the JAX EAM, at 432 and
about 4000 atoms of hcp Mg, against one in-process energy+forces+stress call of the same potential on the same cell
(the issue's target: an MD step costs at most 1.3x that call), and LAMMPS (``lmp``, ``pair_style eam/fs``) with the
same EAM file when ``lmp`` is installed (Debian's ``lammps`` package: ``apt-get install lammps``; serial, one
process, Langevin NVT with a 1 Å skin, the same cell and settings).

    python scripts/bench_md.py [--steps 200] [--sizes 432 4056] [--out docs/benchmarks/md.md]

The MD time is the wall time of ``steps`` steps after a first chunk (which compiles);
the energy+forces+stress call is jitted ``mtpjax.potential.energy_forces_virial`` on the exact list at the cutoff
(built once on the host), the median of 21 calls.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mtpjax  # noqa: F401  (float64 before jax)

import jax
import jax.numpy as jnp
import numpy as np
from ase.build import bulk

from mtpjax.io.files import atomic_write, machine, versions
from mtpjax.md import run_md
from mtpjax.md.energy import DEFAULT_CAPACITY_MULTIPLIER
from mtpjax.neighbors import neighbour_list
from mtpjax.oracles import make_potential
from mtpjax.potential import energy_forces_virial

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MTP = SHARED / "bench" / "fit" / "mlip3_l16_rc6p5.almtp"
EAM = SHARED / "data" / "potentials" / "Mg_mm.eam.fs"
#: hcp repeats (2 atoms per cell) giving the benchmark's sizes
REPEATS = {432: (6, 6, 6), 4056: (13, 13, 12)}


def structure(n: int):
    return bulk("Mg", "hcp", a=3.21, c=5.21).repeat(REPEATS[n])


def efs_seconds(pot, atoms, repeats: int = 21) -> float:
    """Median wall time of one jitted energy+forces+virial call on the exact list (list built once)."""
    nb = neighbour_list(atoms.positions, atoms.cell.array, True, pot.cutoff, n_atoms_pad=len(atoms))
    nb = jax.tree_util.tree_map(jnp.asarray, nb)
    R, cell = jnp.asarray(atoms.positions), jnp.asarray(atoms.cell.array)
    types = jnp.zeros(len(atoms), jnp.int32)
    fn = jax.jit(lambda p, R, c, t, n: energy_forces_virial(p, R, c, t, n))
    jax.block_until_ready(fn(pot, R, cell, types, nb))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(pot, R, cell, types, nb))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def md_seconds(pot, atoms, steps: int, chunk: int, skin: float = 0.5) -> tuple[float, dict]:
    """Wall time of ``steps`` NVT steps (Langevin, 300 K, 2 fs) after a first chunk that compiles (timed from the end
    of the first chunk to the end of the run, by the log callback: per-chunk measurement and checks included)."""
    stamps = []
    r = run_md(pot, atoms, ensemble="nvt_langevin", steps=chunk + steps, timestep=2.0, temperature=300.0, log_every=chunk,
               species=["Mg"], skin=skin, callback=lambda row: stamps.append((row["step"], time.perf_counter())))
    (s0, t0), (s1, t1) = stamps[1], stamps[-1]
    assert s1 - s0 == steps
    return t1 - t0, {"builds": r.builds, "host_builds": r.host_builds, "capacity": r.capacity,
                     "reallocations": r.reallocations}


def lammps_seconds(atoms, steps: int) -> float | None:
    """LAMMPS's loop time for ``steps`` NVT (Langevin) steps with pair_style eam/fs on the same file, or None."""
    lmp = shutil.which("lmp") or shutil.which("lmp_serial")
    if lmp is None:
        return None
    from ase.io import write

    with tempfile.TemporaryDirectory() as tmp:
        write(f"{tmp}/data.lmp", atoms, format="lammps-data", masses=True)
        Path(f"{tmp}/in.lmp").write_text(
            "units metal\natom_style atomic\nread_data data.lmp\n"
            f"pair_style eam/fs\npair_coeff * * {EAM} Mg\nneighbor 1.0 bin\nneigh_modify every 1 delay 0 check yes\n"
            "velocity all create 300 1\nfix 1 all nve\nfix 2 all langevin 300 300 0.1 1\ntimestep 0.002\n"
            f"thermo 100\nrun 20\nrun {steps}\n")
        out = subprocess.run([lmp, "-in", "in.lmp"], cwd=tmp, capture_output=True, text=True, check=True).stdout
    loops = [float(line.split()[3]) for line in out.splitlines() if line.startswith("Loop time of")]
    return loops[-1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--chunk", type=int, default=100, help="steps per jitted chunk (log_every)")
    p.add_argument("--sizes", type=int, nargs="+", default=sorted(REPEATS), choices=sorted(REPEATS))
    p.add_argument("--potentials", nargs="+", default=["mtp16", "eam"], choices=["mtp16", "eam", "zhou"])
    p.add_argument("--skins", type=float, nargs="+", default=[0.5, 1.0], help="neighbour-list skins (Å) to time")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "md.md"))
    a = p.parse_args(argv)
    pots = {"mtp16": (f"MTP level 16, rc 6.5 Å ({MTP.name})", lambda: make_potential(str(MTP), species=["Mg"])),
            "eam": (f"JAX EAM/FS ({EAM.name}, TabulatedEAM)", lambda: make_potential(str(EAM))),
            "zhou": ("JAX Zhou 2004 EAM (zhou:Mg)", lambda: make_potential("zhou:Mg"))}
    rows = []
    for key in a.potentials:
        name, build = pots[key]
        pot = build()
        for n in a.sizes:
            atoms = structure(n)
            steps = a.steps if n < 1000 or key != "mtp16" else max(a.chunk, a.steps // 4)
            efs = efs_seconds(pot, atoms)
            lmp = lammps_seconds(atoms, steps) if key == "eam" else None
            for skin in a.skins:
                wall, info = md_seconds(pot, atoms, steps, min(a.chunk, steps), skin)
                row = {"potential": name, "atoms": n, "skin": skin, "steps": steps, "md_s_per_step": wall / steps,
                       "atom_steps_per_s": n * steps / wall, "efs_s": efs, "ratio": wall / steps / efs,
                       "lammps_us_per_atom_step": None if lmp is None else 1e6 * lmp / (n * steps), **info}
                rows.append(row)
                print(row, file=sys.stderr, flush=True)
    lines = ["# MD throughput (`mtpjax.md`, NVT Langevin, hcp Mg, 300 K, dt 2 fs)", "",
             f"Command: `python scripts/bench_md.py {' '.join(sys.argv[1:] if argv is None else argv)}`", "",
             f"Machine: {machine()}; JAX device: {jax.devices()[0]}; load average at the end "
             f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} (a shared machine: other jobs ran too).", "",
             f"Versions: {', '.join(f'{k} {v}' for k, v in versions(('jax', 'jaxlib', 'jax-md', 'ase', 'vesin')).items())}.", "",
             "MD: wall time per step of a run after its first chunk (which compiles), chunks of "
             f"{a.chunk} steps under jit, capacity x{DEFAULT_CAPACITY_MULTIPLIER:g}, one stability check and log row per chunk; the Verlet list "
             "is refiltered on the device from a candidate list (cutoff + skin + 1.5 Å) that is rebuilt on the host "
             "(the count in parentheses). "
             "E+F+S: one jitted `energy_forces_virial` call on the exact list at the cutoff (the list built once, on the "
             "host); the issue's target is MD/E+F+S <= 1.3.", "",
             "| potential | atoms | skin Å | steps | MD µs/atom-step | atom-steps/s | E+F+S µs/atom | MD / E+F+S | list rebuilds (on host) | slots/atom | LAMMPS µs/atom-step | MD / LAMMPS |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lmp = "not installed" if r["lammps_us_per_atom_step"] is None and "EAM/FS" in r["potential"] else (
            "" if r["lammps_us_per_atom_step"] is None else f"{r['lammps_us_per_atom_step']:.2f}")
        vs = "" if r["lammps_us_per_atom_step"] is None else (
            f"{1e6 * r['md_s_per_step'] / r['atoms'] / r['lammps_us_per_atom_step']:.2f}")
        lines.append(f"| {r['potential']} | {r['atoms']} | {r['skin']:g} | {r['steps']} | {1e6 * r['md_s_per_step'] / r['atoms']:.2f} | "
                     f"{r['atom_steps_per_s']:.3g} | {1e6 * r['efs_s'] / r['atoms']:.2f} | {r['ratio']:.2f} | {r['builds']} ({r['host_builds']}) | "
                     f"{r['capacity']} | {lmp} | {vs} |")
    atomic_write(a.out, "\n".join(lines) + "\n")
    print(f"-> {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
