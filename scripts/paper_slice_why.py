"""Why a paper-scale MTP misses a target: its errors on its own training data, split by subset and by loss term.

    .venv/bin/python scripts/paper_slice_why.py --data /tmp/mtpjax-paper-data/EVERYTHING.extxyz \
        --potential EVERYTHING=/tmp/paper_slice/L16_rc6.5/fits/runs/all_L16_rc6.5_s0/potential.mtpjax \
        --potential RANDSPG=/tmp/paper_slice/L16_rc6.5/fits/runs/RANDSPG_L16_rc6.5_s0/potential.mtpjax \
        --out docs/study/paper_scale/why_L16_rc6.5.csv

For each potential and each subset of the data (RANDSPG ... EVERYTHING's parts), every structure is evaluated once
(mtpjax.fit.residuals, the fit's own packed batches and loss weights) and the script reports:

- ``loss``: the subset's part of the fit's loss (its weighted squared residuals over the number of structures of the
  whole data, without the radial penalty; the "all" row is the loss ``mtpjax fit`` prints, to within that penalty);
- ``loss_E``, ``loss_F``, ``loss_S``: the subset's share (%) of the whole data's loss with the fit's default weights
  (1, 0.01, 0.001; mtpjax.fit.residuals.weighted_residuals), by term; what the fit spends its capacity on;
- ``E_rmse``, ``E_mean`` (meV/atom): the energy error's RMSE and mean (MTP − oracle);
- ``P_rmse``, ``P_mean`` (GPa): the pressure error's RMSE and mean, p = tr(virial)/(3V) (virial −V·σ in eV);
- a second table (``<out>_by_volume.csv``): the share of the loss and the energy and force RMSEs in bins of volume per atom over Ω0, the volume
  per atom of the data's lowest-energy structure: where the data is thin and the errors grow;
- ``E_slope`` (meV/atom per 1 % of volume): the least-squares slope of the energy error against the structure's
  volume per atom relative to the subset's median; a pressure bias shows as a slope (dE/dV = −p:
  1 GPa at Ω0 = 23 Å³/atom is 1.44 meV/atom per 1 %).

With ``--hcp-below VMAX``, it also lists every relaxed training cell (VOLMIN, CELLMIN, INTMIN) that spglib finds
hcp (space group 194 at 0.01 Å) with a volume per atom below VMAX Å³, with each potential's energy and pressure
error on it (through the ASE calculator): whether a potential's error on the verified crystal is already there in
its training data.

The data's structures must carry ``info['subset']`` (mtpjax generate's EVERYTHING.extxyz does). Units: meV/atom, GPa.
"""
from __future__ import annotations

import argparse
import csv
import functools
import io
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mtpjax.data import load_records, pack_records
from mtpjax.fit.loss import flat_batches
from mtpjax.fit.residuals import LossConfig, weighted_residuals
from mtpjax.io.files import atomic_write
from mtpjax.model import load_mtp
from mtpjax.units import EV_PER_A3_TO_GPA

COLUMNS = ["potential", "subset", "structures", "atoms", "loss", "loss_E", "loss_F", "loss_S", "loss_all", "E_rmse", "E_mean",
           "E_slope", "P_rmse", "P_mean", "F_rmse"]


@functools.partial(jax.jit, static_argnums=2)
def _per_structure(mtp, lb, cfg):
    (ce, de), (cf, df), (cv, dv) = weighted_residuals(mtp, lb, cfg)
    B = de.shape[0]
    lf = jax.ops.segment_sum(jnp.sum(cf * df**2, axis=1), lb.batch.structure, num_segments=B)
    f2 = jax.ops.segment_sum(jnp.sum(df**2, axis=1), lb.batch.structure, num_segments=B)
    return ce * de**2, lf, jnp.sum(cv * dv**2, axis=(1, 2)), de, jnp.trace(dv, axis1=1, axis2=2), f2


def per_structure(mtp, batches, cfg: LossConfig) -> dict:
    """Per real structure: subset index, atoms, volume (Å³), loss terms (E, F, S), dE (eV), tr(dV) (eV), sum |dF|²."""
    cols = {k: [] for k in ("subset", "n", "volume", "energy", "lE", "lF", "lS", "dE", "trdV", "f2")}
    for lb in flat_batches(batches):
        out = [np.asarray(x) for x in _per_structure(mtp, jax.tree.map(jnp.asarray, lb), cfg)]
        real = np.asarray(lb.weight) > 0
        for k, x in zip(("lE", "lF", "lS", "dE", "trdV", "f2"), out):
            cols[k].append(x[real])
        cols["subset"].append(np.asarray(lb.subset)[real])
        cols["n"].append(np.asarray(lb.n_atoms)[real])
        cols["volume"].append(np.asarray(lb.volume)[real])
        cols["energy"].append(np.asarray(lb.energy)[real])
    return {k: np.concatenate(v) for k, v in cols.items()}


def summarise(name, s, subsets) -> list[dict]:
    total = s["lE"].sum() + s["lF"].sum() + s["lS"].sum()
    rows = []
    for j, sub in [(None, "all")] + list(enumerate(subsets)):
        m = np.ones(len(s["n"]), bool) if j is None else s["subset"] == j
        if not m.any():
            continue
        n, v = s["n"][m], s["volume"][m]
        de = s["dE"][m] / n * 1000.0  # meV/atom
        dp = s["trdV"][m] / (3.0 * v) * EV_PER_A3_TO_GPA  # GPa
        x = 100.0 * (v / n / np.median(v / n) - 1.0)  # % of volume
        slope = float(np.polyfit(x, de, 1)[0]) if len(x) > 2 and np.ptp(x) > 0 else float("nan")
        rows.append({"potential": name, "subset": sub, "structures": int(m.sum()), "atoms": int(n.sum()),
                     "loss": float(s["lE"][m].sum() + s["lF"][m].sum() + s["lS"][m].sum()) / len(s["n"]),
                     "loss_E": 100 * s["lE"][m].sum() / total, "loss_F": 100 * s["lF"][m].sum() / total,
                     "loss_S": 100 * s["lS"][m].sum() / total,
                     "loss_all": 100 * (s["lE"][m].sum() + s["lF"][m].sum() + s["lS"][m].sum()) / total,
                     "E_rmse": float(np.sqrt(np.mean(de**2))), "E_mean": float(de.mean()), "E_slope": slope,
                     "P_rmse": float(np.sqrt(np.mean(dp**2))), "P_mean": float(dp.mean()),
                     "F_rmse": float(np.sqrt(s["f2"][m].sum() / (3 * n.sum())))})
    return rows


#: Volume bins of the by-volume table, in units of Ω0 (the volume per atom of the data's lowest-energy structure).
VOLUME_EDGES = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1, 1.3, 1.6, 2.0, np.inf)


def by_volume(name, s) -> list[dict]:
    """Per volume bin (V/atom over Ω0): structures, atoms, share of the loss (%), energy RMSE (meV/atom), force RMSE
    (eV/Å)."""
    e = s["energy"] / s["n"]
    v = s["volume"] / s["n"]
    omega0 = float(v[np.argmin(e)])
    x = v / omega0
    loss = s["lE"] + s["lF"] + s["lS"]
    rows = []
    for lo, hi in zip(VOLUME_EDGES[:-1], VOLUME_EDGES[1:]):
        m = (x >= lo) & (x < hi)
        if not m.any():
            continue
        n = s["n"][m]
        rows.append({"potential": name, "V/Ω0": f"{lo:g}-{hi:g}", "V (Å³/atom)": f"{lo * omega0:.1f}-{hi * omega0:.1f}",
                     "structures": int(m.sum()), "atoms": int(n.sum()), "loss_%": float(100 * loss[m].sum() / loss.sum()),
                     "E_rmse": float(np.sqrt(np.mean((s["dE"][m] / n * 1000.0) ** 2))),
                     "F_rmse": float(np.sqrt(s["f2"][m].sum() / (3 * n.sum())))})
    return rows


def csv_text(rows, columns) -> str:
    """The rows as CSV text, floats to 4 significant digits."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns)
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="labelled structures with info['subset'] (EVERYTHING.extxyz)")
    ap.add_argument("--potential", action="append", required=True, metavar="NAME=PATH", help=".mtpjax or .almtp")
    ap.add_argument("--out", required=True, help="CSV written here (and printed as a table)")
    ap.add_argument("--hcp-below", type=float, default=None, metavar="VMAX",
                    help="also list the relaxed hcp training cells below VMAX Å³/atom (see above)")
    args = ap.parse_args(argv)
    records = load_records(args.data)
    cfg = LossConfig()
    rows, vrows = [], []
    packed = {}
    for spec in args.potential:
        name, _, path = spec.partition("=")
        if not path:
            ap.error(f"--potential {spec}: give NAME=PATH")
        mtp = load_mtp(path)
        cutoff = float(mtp.cutoff)
        if cutoff not in packed:
            packed[cutoff] = pack_records(records, cutoff)
        batches, subsets = packed[cutoff]
        t0 = time.perf_counter()
        per = per_structure(mtp, batches, cfg)
        rows += summarise(name, per, subsets)
        vrows += by_volume(name, per)
        print(f"{name}: {len(records)} structures evaluated in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, csv_text(rows, COLUMNS))
    print("| " + " | ".join(COLUMNS) + " |\n|" + " --- |" * len(COLUMNS))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in COLUMNS) + " |")
    vcols = list(vrows[0])
    print("\n| " + " | ".join(vcols) + " |\n|" + " --- |" * len(vcols))
    for r in vrows:
        print("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in vcols) + " |")
    atomic_write(out.with_name(out.stem + "_by_volume.csv"), csv_text(vrows, vcols))
    if args.hcp_below is not None:
        hcp_cells(args.data, dict(p.partition("=")[::2] for p in args.potential), args.hcp_below)
    return 0


def hcp_cells(data, potentials: dict, vmax: float) -> None:
    """Print each potential's energy (meV/atom) and pressure (GPa) error on the relaxed hcp training cells."""
    import spglib
    from ase.io import read

    from mtpjax.calculator import PotentialCalculator

    cells = []
    for a in read(data, index=":"):
        if a.info.get("subset") in ("VOLMIN", "CELLMIN", "INTMIN") and a.get_volume() / len(a) < vmax:
            sg = spglib.get_spacegroup((a.cell[:], a.get_scaled_positions(), a.numbers), symprec=0.01) or ""
            if sg.endswith("(194)"):
                cells.append(a)
    print(f"\n{len(cells)} relaxed hcp training cells below {vmax} Å³/atom")
    print("| potential | cell | atoms | V (Å³/atom) | c/a | E oracle (eV/atom) | dE (meV/atom) | dP (GPa) |\n|" + " --- |" * 8)
    for name, path in potentials.items():
        calc = PotentialCalculator.from_file(path)
        for a in cells:
            b = a.copy()
            b.calc = calc
            n = len(a)
            de = (b.get_potential_energy() - a.get_potential_energy()) / n * 1000.0
            dp = -np.trace(b.get_stress(voigt=False) - a.get_stress(voigt=False)) / 3.0 * EV_PER_A3_TO_GPA
            p = a.cell.cellpar()
            print(f"| {name} | {a.info.get('id', '?')} | {n} | {a.get_volume() / n:.2f} | {p[2] / p[0]:.3f} | "
                  f"{a.get_potential_energy() / n:.4f} | {de:+.2f} | {dp:+.3f} |")


if __name__ == "__main__":
    raise SystemExit(main())
