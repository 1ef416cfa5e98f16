"""A copy of a paper-scale data folder whose EVERYTHING.extxyz carries per-structure loss weights by volume per atom.

    .venv/bin/python scripts/paper_slice_weights.py --data runs/study_mg/generate --out /tmp/mg_weighted \
        --below 0.8 --weight-below 2 --above 1.6 --weight-above 0.5

``mtpjax fit`` multiplies every loss term of a structure (energy, forces, stress) by its ``info['weight']``
(default 1). This writes ``OUT/EVERYTHING.extxyz`` with ``weight=`` on each structure's comment line: ``--weight-below``
for cells under ``--below`` × Ω0 per atom, ``--weight-above`` for cells over ``--above`` × Ω0, 1 otherwise (Ω0
from the folder's manifest). Every other file of the folder is linked, so ``scripts/paper_slice.py --data OUT``
takes it as the same recipe's data. The structures, labels and order are unchanged (the lines are copied; only the
comment lines get the key). Prints the number of structures per weight.

Units: Å³ per atom (volumes), Ω0 from manifest.json ``omega0``.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

LATTICE = re.compile(r'Lattice="([^"]+)"')


def weight_of(volume_per_atom: float, omega0: float, args) -> float:
    """The weight of a cell of ``volume_per_atom`` (Å³) under the volume rule of ``args``."""
    x = volume_per_atom / omega0
    if x < args.below:
        return args.weight_below
    if x > args.above:
        return args.weight_above
    return 1.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a generate output folder (manifest.json, EVERYTHING.extxyz)")
    ap.add_argument("--out", required=True, help="the new folder (must not exist)")
    ap.add_argument("--below", type=float, default=0.8, help="volume per atom / Ω0 under which --weight-below applies")
    ap.add_argument("--weight-below", type=float, default=1.0)
    ap.add_argument("--above", type=float, default=1.6, help="volume per atom / Ω0 over which --weight-above applies")
    ap.add_argument("--weight-above", type=float, default=1.0)
    args = ap.parse_args(argv)
    src, out = Path(args.data).resolve(), Path(args.out)
    omega0 = float(json.loads((src / "manifest.json").read_text())["omega0"])
    out.mkdir(parents=True)
    for p in src.iterdir():
        if p.name != "EVERYTHING.extxyz":
            (out / p.name).symlink_to(p)
    counts = {}
    with open(src / "EVERYTHING.extxyz") as fin, open(out / "EVERYTHING.extxyz", "w") as fout:
        k = 0
        while line := fin.readline():
            n = int(line)
            comment = fin.readline()
            if " weight=" in comment:
                raise SystemExit(f"{src / 'EVERYTHING.extxyz'}: structure {k} already has a weight")
            m = LATTICE.search(comment)
            if m is None:
                raise SystemExit(f"{src / 'EVERYTHING.extxyz'}: structure {k} has no Lattice (a volume is needed)")
            cell = np.array(m.group(1).split(), float).reshape(3, 3)
            w = weight_of(abs(np.linalg.det(cell)) / n, omega0, args)
            counts[w] = counts.get(w, 0) + 1
            fout.write(line)
            fout.write(comment.rstrip("\n") + f" weight={w!r}\n")
            for _ in range(n):
                fout.write(fin.readline())
            k += 1
    for w, n in sorted(counts.items()):
        print(f"weight {w:g}: {n} structures ({100 * n / k:.1f} %)")
    print(f"{k} structures -> {out / 'EVERYTHING.extxyz'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
