#!/usr/bin/env python
"""Compare energies, forces and PlusStress of two .cfg files (e.g. mtpjax's against MLIP's).

    python scripts/compare_cfg.py OURS.cfg REFERENCE.cfg

Prints the largest deviations and whether they are within the reference's printed digits
(energy 1e-9 eV; forces 0.5e-6 eV/Å; PlusStress 0.5e-5 eV). Exit code 1 if not.
"""
from __future__ import annotations

import sys

import numpy as np

from mtpjax.io import read_cfg


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    ours, ref = read_cfg(argv[0]), read_cfg(argv[1])
    if len(ours) != len(ref):
        print(f"{argv[0]} has {len(ours)} configurations, {argv[1]} has {len(ref)}")
        return 1
    de = max(abs(a.energy - b.energy) for a, b in zip(ours, ref))
    df = max(float(np.abs(a.forces - b.forces).max()) for a, b in zip(ours, ref))
    ds = max(float(np.abs(a.plus_stress - b.plus_stress).max()) for a, b in zip(ours, ref) if b.plus_stress is not None)
    ok = de <= 1e-9 and df <= 0.5e-6 + 1e-9 and ds <= 0.5e-5 + 1e-9
    print(f"{len(ref)} configurations: max |dE| = {de:.1e} eV, max |dF| = {df:.1e} eV/Å, max |dPlusStress| = {ds:.1e} eV")
    print("identical to the reference's printed digits" if ok else "DIFFERENT from the reference")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
