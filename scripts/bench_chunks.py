"""How the MTP's atom chunks set the speed of one energy+forces+stress call on this CPU.

For each MTP level, cutoff, cell size and neighbour-slot padding, one jitted ``energy_forces_virial`` call on hcp Mg
is timed with the pair stage chunked into ``c`` atoms for every ``c`` in ``--chunks``, and with
:func:`mtpjax.model.default_chunks` (column ``default``). The contraction stage takes the rule's own chunk for the
given pair chunk. The MTPs are level templates with seeded coefficients
(the time does not depend on their values). All variants of a row are compiled first, then timed in ``--repeats``
rounds that call each once in turn; a variant's time is its fastest call (timing the variants one after the other
instead let the machine's drift make one program up to 20 % slower than itself).

    python scripts/bench_chunks.py [--levels 8 16 24] [--cutoffs 5.0 6.5 8.2] [--sizes 432 4056]
                                   [--out docs/benchmarks/chunks.md]

Each row marks the fastest chunk and gives the default's time over it. Run it on a quiet machine: other jobs
change the times more than the chunks do. The rule depends on the threads XLA may use
(:func:`mtpjax.model.cpu_threads`); for the one-thread case run it pinned, e.g.
``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" taskset -c 0 python ...``.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
from pathlib import Path

import mtpjax  # noqa: F401  (float64 before jax)

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from ase.build import bulk

from mtpjax.basis import generate_basis
from mtpjax.fit.linear import initial_mtp
from mtpjax.io.files import atomic_write, machine, versions
from mtpjax.model import default_chunks
from mtpjax.neighbors import neighbour_list
from mtpjax.potential import energy_forces_virial

ROOT = Path(__file__).resolve().parents[1]
#: hcp repeats (2 atoms per cell) giving the benchmark's sizes
REPEATS = {128: (4, 4, 4), 432: (6, 6, 6), 1024: (8, 8, 8), 4056: (13, 13, 12)}


def seeded_mtp(level: int, cutoff: float):
    mtp = initial_mtp(generate_basis(level), 1, 1.6, cutoff, [], seed=0)
    rng = np.random.default_rng(level)
    return eqx.tree_at(lambda m: m.moment_coeffs, mtp, jnp.asarray(1e-3 * rng.normal(size=mtp.moment_coeffs.shape)))


def interleaved_times(fns: dict, args, rounds: int) -> dict:
    """Fastest wall time (s) of each compiled function over ``rounds`` rounds, every round calling each once in turn
    (so that drift in the machine's speed reaches every variant alike)."""
    best = {c: float("inf") for c in fns}
    for _ in range(rounds):
        for c, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            best[c] = min(best[c], time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", type=int, nargs="+", default=[8, 16, 24])
    p.add_argument("--cutoffs", type=float, nargs="+", default=[5.0, 6.5, 8.2])
    p.add_argument("--sizes", type=int, nargs="+", default=[432], choices=sorted(REPEATS))
    p.add_argument("--pads", type=float, nargs="+", default=[1.0, 1.15],
                   help="neighbour slots as a multiple of the most neighbours any atom has")
    p.add_argument("--chunks", nargs="+", default=["4", "8", "12", "16", "24", "32", "48", "64"],
                   help="pair-stage chunks (atoms); 'P/A' also sets the contraction chunk A (a multiple of P)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "chunks.md"))
    a = p.parse_args(argv)
    rows = []
    for level in a.levels:
        for rc in a.cutoffs:
            mtp = seeded_mtp(level, rc)
            for n in a.sizes:
                atoms = bulk("Mg", "hcp", a=3.21, c=5.21).repeat(REPEATS[n])
                base = neighbour_list(atoms.positions, atoms.cell.array, True, rc, n_atoms_pad=n)
                k0 = int(np.asarray(base.mask).sum(axis=1).max())
                for pad in a.pads:
                    k = int(np.ceil(k0 * pad))
                    nb = jax.tree_util.tree_map(jnp.asarray, neighbour_list(
                        atoms.positions, atoms.cell.array, True, rc, n_atoms_pad=n, n_nb=k))
                    args = (mtp, jnp.asarray(atoms.positions), jnp.asarray(atoms.cell.array), jnp.zeros(n, jnp.int32), nb)
                    d_pairs, d_atoms = default_chunks(mtp.plan, n, k)
                    row = {"level": level, "cutoff": rc, "atoms": n, "slots": k, "rule": f"{d_pairs}/{d_atoms}"}
                    fns = {}
                    for c in a.chunks + ["default"]:
                        if c == "default":
                            chunk = None
                        elif "/" in c:
                            chunk = tuple(int(x) for x in c.split("/"))
                        else:
                            chunk = default_chunks(mtp.plan, n, k, pair_chunk=int(c))
                        fns[str(c)] = jax.jit(lambda p_, R, cell, t, nb_, chunk=chunk: energy_forces_virial(p_, R, cell, t, nb_, chunk=chunk))
                        jax.block_until_ready(fns[str(c)](*args))  # compile
                    best = interleaved_times(fns, args, a.repeats)
                    for c, t in best.items():
                        row[c] = 1e6 * t / n
                    print(level, rc, n, k, " ".join(f"{c}:{row[c]:.1f}" for c in best), file=sys.stderr, flush=True)
                    rows.append(row)
    cols = list(a.chunks)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    csv_path = Path(a.out).with_suffix(".csv")
    atomic_write(csv_path, buf.getvalue())
    lines = ["# MTP atom chunks on CPU: one energy+forces+stress call, µs per atom", "",
             f"Command: `python scripts/bench_chunks.py {' '.join(sys.argv[1:] if argv is None else argv)}`", "",
             f"Machine: {machine()}; JAX device: {jax.devices()[0]}; load average at the end "
             f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}.", "",
             f"Versions: {', '.join(f'{k} {v}' for k, v in versions(('jax', 'jaxlib')).items())}.", "",
             "Numbered columns: the pair stage in chunks of that many atoms (P/A: and the contraction stage in chunks of A); `default`: `mtpjax.model.default_chunks` "
             "(pair/contraction chunk in the `rule` column). Fastest of "
             f"{a.repeats} rounds, each calling every variant of the row once in turn, after all were compiled; hcp Mg; slots = neighbour slots per atom. CSV: `{csv_path.name}`.", "",
             "| level | cutoff Å | atoms | slots | " + " | ".join(cols) + " | default | rule | default / best |",
             "|" + "---:|" * (len(cols) + 7)]
    for r in rows:
        best = min(r[c] for c in cols)
        lines.append(f"| {r['level']} | {r['cutoff']:g} | {r['atoms']} | {r['slots']} | "
                     + " | ".join(f"**{r[c]:.1f}**" if r[c] == best else f"{r[c]:.1f}" for c in cols)
                     + f" | {r['default']:.1f} | {r['rule']} | {r['default'] / best:.2f} |")
    atomic_write(a.out, "\n".join(lines) + "\n")
    print(f"-> {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
