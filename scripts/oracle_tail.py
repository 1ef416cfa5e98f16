"""How much of an EAM oracle's energy and pressure in hcp comes from its longest-range neighbour shells: the oracle
truncated (hard) at r against the full oracle, at a given hcp lattice (docs/study/paper_scale.md, "Why" (d)).

    .venv/bin/python scripts/oracle_tail.py --element Mg --a 3.1993 --c-over-a 1.6286 --cutoffs 6.5 6.25 6.0 5.5

The default lattice is the Zhou 2004 Mg oracle's relaxed hcp (the verification suite's elastic test). Prints, per
truncation radius, the energy (eV/atom) and pressure (GPa) and their change against the full oracle, and the hcp
neighbour shells (Å: neighbours per atom) out to the oracle's cutoff. Units: Å, eV, GPa.
"""
from __future__ import annotations

import argparse

import numpy as np
from ase.build import bulk
from ase.neighborlist import neighbor_list

from mtpjax.calculator import PotentialCalculator
from mtpjax.oracles.base import interaction_range
from mtpjax.oracles.zhou import ZhouEAM
from mtpjax.units import EV_PER_A3_TO_GPA


def energy_pressure(atoms, oracle, element):
    b = atoms.copy()
    b.calc = PotentialCalculator(oracle, species=[element])
    return b.get_potential_energy() / len(b), -np.trace(b.get_stress(voigt=False)) / 3.0 * EV_PER_A3_TO_GPA


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--element", default="Mg", help="a Zhou 2004 element (default Mg)")
    ap.add_argument("--a", type=float, default=3.1993, help="hcp a in Å (default: Zhou Mg's relaxed hcp)")
    ap.add_argument("--c-over-a", type=float, default=1.6286, help="hcp c/a (default: Zhou Mg's relaxed hcp)")
    ap.add_argument("--cutoffs", type=float, nargs="+", default=[6.5, 6.25, 6.0, 5.5], help="truncation radii (Å)")
    args = ap.parse_args(argv)
    full = ZhouEAM(args.element)
    atoms = bulk(args.element, "hcp", a=args.a, c=args.a * args.c_over_a)
    print(f"{args.element}: oracle cutoff {full.cutoff:.3f} Å, interaction range (dimer bound by <= 1 meV beyond) "
          f"{interaction_range(full):.3f} Å; hcp a {args.a} Å, c/a {args.c_over_a}, V {atoms.get_volume() / 2:.3f} Å³/atom")
    e0, p0 = energy_pressure(atoms, full, args.element)
    print(f"full oracle: E {e0:.5f} eV/atom, P {p0:+.3f} GPa")
    for rc in args.cutoffs:
        e, p = energy_pressure(atoms, ZhouEAM(args.element, cutoff=rc), args.element)
        print(f"truncated at {rc:.3f} Å: E {e:.5f} eV/atom ({1000 * (e - e0):+.2f} meV/atom), P {p:+.3f} GPa ({p - p0:+.3f})")
    d = neighbor_list("d", atoms, float(full.cutoff))
    vals, counts = np.unique(np.round(d, 2), return_counts=True)
    print("shells (Å: neighbours per atom): " + ", ".join(f"{v:.2f}: {c // len(atoms)}" for v, c in zip(vals, counts)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
