"""Training residuals by coordination (docs/study/paper_scale.md, "Why" (l)): does a fit's error on training cells
with 11-coordinated atoms near Ω0 carry its vacancy offset?

Inputs: the training set with the oracle's labels (extended XYZ, e.g. runs/study_mg/generate/EVERYTHING.extxyz) and,
per potential, the same structures as ``mtpjax efs POT TRAIN OUT.extxyz`` wrote them (same order). For the cells at
0.9–1.1 Ω0 whose atoms all have 11 or 12 neighbours within ``--shell`` Å (between hcp's first and second shells),
it fits, per potential, the total energy error of a cell (meV) as a·n12 + b·n11 (n12, n11: atoms with 12 and 11
neighbours; least squares). b − a is the error of an 11-coordinated atom relative to a 12-coordinated one, and
12 (b − a) what that would add to the unrelaxed formation energy of a vacancy with twelve such neighbours (eV).

    python scripts/paper_slice_coordination_bias.py runs/study_mg/generate/EVERYTHING.extxyz \\
        "L20 s0=/tmp/bias/L20_s0.extxyz" "L20 s1=/tmp/bias/L20_s1.extxyz" --omega0 23.0932
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def coordination(atoms, shell: float, name: str = "structure") -> np.ndarray:
    """Neighbours of each atom within ``shell`` Å (periodic images included; mtpjax's own host-side pair list)."""
    from mtpjax.neighbors import pairs

    i, _, _ = pairs(atoms.positions, atoms.cell[:], atoms.pbc, shell, name=name)
    return np.bincount(i, minlength=len(atoms))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("train", help="training set with the oracle's energies (extended XYZ)")
    ap.add_argument("predicted", nargs="+", help="NAME=FILE: the same structures with a potential's energies")
    ap.add_argument("--omega0", type=float, required=True, help="the oracle's ground-state volume (Å³/atom)")
    ap.add_argument("--shell", type=float, default=3.85, help="neighbour distance (Å; default 3.85)")
    ap.add_argument("--volume", type=float, nargs=2, default=(0.9, 1.1), help="cells kept, in Ω0 (default 0.9 1.1)")
    args = ap.parse_args(argv)
    from ase.io import iread

    runs = []
    for item in args.predicted:
        name, sep, path = item.partition("=")
        if not sep or not path:
            ap.error(f"{item!r}: give NAME=FILE")
        runs.append((name, path))
    e_ref, n11, n12, keep = [], [], [], []
    for k, a in enumerate(iread(args.train)):
        n = len(a)
        cn = coordination(a, args.shell, name=f"{args.train}: structure {k + 1}")
        v = a.get_volume() / n / args.omega0
        e_ref.append(a.get_potential_energy())
        n11.append(int((cn == 11).sum()))
        n12.append(int((cn == 12).sum()))
        keep.append(args.volume[0] < v < args.volume[1] and bool(np.isin(cn, [11, 12]).all()))
    e_ref, keep = np.array(e_ref), np.array(keep)
    A = np.stack([np.array(n12)[keep], np.array(n11)[keep]], 1).astype(float)
    print(f"{keep.sum()} of {len(keep)} cells at {args.volume[0]}–{args.volume[1]} Ω0 with every atom 11- or "
          f"12-coordinated within {args.shell} Å; {(A[:, 1] > 0).sum()} of them have {int(A[:, 1].sum())} "
          "11-coordinated atoms")
    print("| potential | a: CN 12 (meV/atom) | b: CN 11 (meV/atom) | b − a (meV) | 12 (b − a) (eV) |")
    print("|---|---:|---:|---:|---:|")
    for name, path in runs:
        e = np.array([a.get_potential_energy() for a in iread(path)])
        if len(e) != len(e_ref):
            print(f"{path}: {len(e)} structures, the training set has {len(e_ref)}", file=sys.stderr)
            return 2
        (ca, cb), *_ = np.linalg.lstsq(A, 1000 * (e - e_ref)[keep], rcond=None)
        print(f"| {name} | {ca:+.3f} | {cb:+.3f} | {cb - ca:+.3f} | {12 * (cb - ca) / 1000:+.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
