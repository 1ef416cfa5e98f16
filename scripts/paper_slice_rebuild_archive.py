"""Rebuild docs/study/paper_scale/runs/ (paper_slice_tables.py's archive) for the six runs made before it existed.

    .venv/bin/python scripts/paper_slice_rebuild_archive.py REFERENCE_ROWS.csv
    .venv/bin/python scripts/paper_slice_rebuild_archive.py docs/study/study_mg/rows.csv   # what was run

The first six paper-scale runs (L08_rc5.2, L08_rc6.5, L08_rc8.2, L16_rc6.5, L16_rc8.2, L20_rc6.5) were tabulated
from their output folders in /tmp, which are gone; what is committed are the tables made from them
(docs/study/paper_scale/matrix.csv, trend_numbers.csv, fits.csv). This script writes, for each of those runs, the
three files paper_slice_tables.py reads (``settings.json``, ``fits.csv``, ``error_matrix_long.csv``), from:

- ``matrix.csv``: each fit's error (``absolute`` rows, in the row's unit) or 100 × relative error (``relative``
  rows, %);
- ``REFERENCE_ROWS.csv``: the verification rows (test, quantity, mtp, oracle, error) of any later full-suite run
  against the same oracle (an ``error_matrix_long.csv`` or ``mtpjax verify``'s rows CSV); only its ``oracle``
  column is used. The oracle's side of a row does not depend on the fit (the suite recomputes it for every
  potential with the same settings), so it is the same number for every run;
- ``trend_numbers.csv``: the MTP's side of the rows whose ``mtp`` is not ``oracle + error`` (the E(phase) − E(hcp)
  rows and the count of E–V points below r_min).

A relative row's error is rebuilt as relative error × |oracle| and its ``mtp`` as oracle + error; an absolute row
keeps its error and gets ``mtp = oracle + error`` only where the reference row has ``error = mtp − oracle``.
Rows that are NaN in the matrix are left out. ``settings.json`` says ``"rebuilt"``. The script then checks that
paper_slice_tables.py's numbers from the rebuilt runs equal the committed trend_numbers.csv (relative difference
≤ 1e-9) and exits non-zero otherwise. Units: those of each row (eV, meV/atom, eV/Å², GPa, J/m²).
"""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import paper_slice_tables as T

from mtpjax import experiment as E
from mtpjax.io.files import atomic_write

#: Output folder name -> (level, cutoff) of the six runs made before the archive.
RUNS = {"L08_rc5.2": (8, 5.2), "L08_rc6.5": (8, 6.5), "L08_rc8.2": (8, 8.2), "L16_rc6.5": (16, 6.5),
        "L16_rc8.2": (16, 8.2), "L20_rc6.5": (20, 6.5)}
#: Rows whose MTP value is in trend_numbers.csv: (test, quantity) -> that file's quantity. The E–V rows count the
#: points below r_min (mtp only: not in the matrix, which holds rows with an error).
MTP_FROM_TRENDS = {**{("elastic", f"E({p}) − E(hcp)"): f"dE_{p}_hcp mtp" for p in ("fcc", "dhcp", "bcc")},
                   **{("eos", f"points below r_min (excluded from the RMSEs) {r}"): f"ev_excluded {r}"
                      for r in ("±10%", "±80%")}}
#: Rows whose error is in trend_numbers.csv: (test, quantity) -> that file's quantity. The phonon test's supercells
#: and force-constant range follow the larger of the MTP's and the oracle's cutoff, so the oracle's side of its rows
#: changes with an MTP cutoff above the oracle's (7.15 Å): there the reference's oracle values do not hold, and the
#: force-constant RMSEs are taken from trend_numbers.csv (the oracle's side then = error / relative error).
ERROR_FROM_TRENDS = {("phonons", f"{s}: force constants RMSE"): f"fc_rmse {s}" for s in ("hcp", "bcc", "bcc@12")}
#: The oracle's cutoff (Zhou 2004 EAM, Mg), Å.
ORACLE_CUTOFF = 7.15


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def rows_of(fit: str, matrix, oracle: dict, trends: dict) -> list[dict]:
    """The long-format rows of one fit (label "SUBSET Llevel cutoff") rebuilt from the matrix."""
    out = []
    cutoff = float(fit.split()[2])
    for key, q in MTP_FROM_TRENDS.items():
        if key[0] == "eos":
            out.append({"test": key[0], "quantity": key[1], "unit": "points", "mtp": T.num(trends[q][fit])})
    for m in matrix:
        v = T.num(m.get(fit))
        if not math.isfinite(v):
            continue
        key = (m["test"], m["quantity"])
        o, diff = oracle.get(key, (math.nan, False))
        if key[0] == "phonons" and cutoff > ORACLE_CUTOFF:
            o = math.nan  # another supercell and force-constant range than the reference's
        row = {"test": m["test"], "quantity": m["quantity"], "unit": m["unit"], "mtp": None, "oracle": None,
               "error": None, "relative_error": None}
        if key in ERROR_FROM_TRENDS:
            e, rel = T.num(trends[ERROR_FROM_TRENDS[key]][fit]), v / 100.0
            o = e / rel if rel else math.nan
            row.update(relative_error=rel, error=e, oracle=o, mtp=o + e)
        elif m["kind"] == "relative" and key[0] == "phonons" and not math.isfinite(o):
            row["relative_error"] = v / 100.0  # the oracle's side (and so the error) is not known
        elif m["kind"] == "relative":
            if not math.isfinite(o) or o == 0:
                raise SystemExit(f"matrix row {key}: relative, but the reference has no oracle value")
            rel = v / 100.0
            row.update(relative_error=rel, error=rel * abs(o), oracle=o, mtp=o + rel * abs(o))
        else:
            row["error"] = v
            if math.isfinite(o):
                row["oracle"] = o
                if diff:
                    row["mtp"] = o + v
        if key in MTP_FROM_TRENDS:
            row["mtp"] = T.num(trends[MTP_FROM_TRENDS[key]][fit])
        out.append(row)
    return out


def main(reference: Path) -> int:
    matrix = read_csv(T.HERE / "matrix.csv")
    trends = {r["quantity"]: r for r in read_csv(T.HERE / "trend_numbers.csv")}
    fits = read_csv(T.HERE / "fits.csv")
    oracle = {}
    for r in read_csv(reference):
        o, e, mtp = T.num(r.get("oracle")), T.num(r.get("error")), T.num(r.get("mtp"))
        diff = all(map(math.isfinite, (o, e, mtp))) and abs(mtp - o - e) <= 1e-9 * max(1.0, abs(e), abs(o))
        oracle.setdefault((r["test"], r["quantity"]), (o, diff))
    bad = []
    for name, (level, cutoff) in RUNS.items():
        labels = [c for c in matrix[0] if c.endswith(f" L{level} {cutoff:g}")]
        dest = T.ARCHIVE / name
        dest.mkdir(parents=True, exist_ok=True)
        long = [{"subset": c.split()[0], **r} for c in labels for r in rows_of(c, matrix, oracle, trends)]
        E.write_csv(dest / "error_matrix_long.csv", long,
                    ["subset", "test", "quantity", "unit", "mtp", "oracle", "error", "relative_error"])
        E.write_csv(dest / "fits.csv", [{k: v for k, v in f.items() if k != "fit"} for f in fits if f["fit"] in labels])
        atomic_write(dest / "settings.json", json.dumps(
            {"level": level, "cutoff": cutoff, "rebuilt": "by scripts/paper_slice_rebuild_archive.py from the "
             f"committed matrix.csv, trend_numbers.csv and fits.csv, oracle values from {reference.name}; the "
             "original output folder is gone"}, indent=1) + "\n")
        _, _, rows, _ = T.read_run(dest)
        for sub, rs in rows.items():
            lab = T.label(sub, level, cutoff)
            for k, x in T.numbers(rs).items():
                want = T.num(trends.get(k, {}).get(lab))
                same = (math.isnan(x) and math.isnan(want)) or abs(x - want) <= 1e-9 * max(1.0, abs(want))
                if not same:
                    bad.append(f"{lab}: {k} rebuilt {x!r}, committed {want!r}")
        print(f"{dest}: {len(long)} rows, fits {labels}")
    for b in bad:
        print("MISMATCH", b)
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
