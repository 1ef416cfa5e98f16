"""The tables and figures of docs/study/paper_scale.md, from the output folders of paper_slice.py (c_error_matrix).

    .venv/bin/python scripts/paper_slice_tables.py /tmp/paper_slice/L16_rc5.2 ...   # add (or replace) runs
    .venv/bin/python scripts/paper_slice_tables.py                                  # rebuild from the archive

Each folder holds ``settings.json`` (level, cutoff), ``fits.csv`` and ``error_matrix_long.csv`` (every verification
row of every training subset). Those three files of every folder named are copied into the archive,
``docs/study/paper_scale/runs/<folder name>/`` (a few kB each), with the fitted potentials
(``fits/runs/<fit>/potential.{almtp,mtpjax}`` as ``potentials/<fit>.{almtp,mtpjax}``: 25 kB at level 16, 130 kB at
level 20; the reports stay where they are), and
the tables are always made from every run in the archive, so that a new run is added to the earlier ones without
their output folders. Written here (docs/study/paper_scale/):

- ``matrix.csv``: c_error_matrix's matrix (test, quantity, unit, kind, then one column per fit "SUBSET Llevel
  cutoff"); ``kind = relative``: 100 (MTP − oracle)/|oracle| in %, ``absolute``: the error in the row's unit (an RMSE
  for curves, MTP − oracle otherwise);
- ``matrix.md``: the same as a Markdown table, without the rows of ``FIGURE_EXCLUDE``;
- ``matrix.png``: its heatmap (rows of ``FIGURE_EXCLUDE`` left out of the figure only);
- ``fits.csv``: the fits (training structures, basis size, steps, fit wall time, training RMSEs);
- ``targets.csv``: issue 14 item 3's targets per EVERYTHING fit (value, target, met);
- ``trend_numbers.csv``: the numbers the trends of item 2 are judged on, per fit;
- ``level_comparison.csv``: per subset and pair of levels, the matrix rows with the smaller |error| at the higher
  level, and the median ratio of the errors; ``cutoff_comparison.csv``: the same per subset, level and pair of
  cutoffs; ``variant_comparison.csv``: the same for a run on weighted data (scripts/paper_slice.py names its fits
  ``SUBSET-<variant>``, ``SUBSET-weighted`` by default) or with another fit seed (``SUBSET-s<seed>``) against the
  subset's fit at the same level and cutoff;
- ``ev_rmse_vs_level.png``: E–V RMSE (all phases) against level over ±10 % and ±80 % (Fig. 6), RANDSPG and
  EVERYTHING;
- ``fig14_L<level>_rc<cutoff>.{csv,md,png}``: the matrix of one (level, cutoff) that has three or more training
  subsets (the paper's Fig. 14), one column per subset in the paper's order, and
  ``fig14_L<level>_rc<cutoff>_summary.md``, its short table (one line per subset: E–V, C_ij, force constants,
  vacancies, phase order, surfaces and GB).

``matrix.md`` and the short tables also go into docs/study/paper_scale.md, each between the lines
``<!-- tables: NAME -->`` and ``<!-- /tables: NAME -->`` (NAME: ``matrix`` or ``fig14_L<level>_rc<cutoff>_summary``),
so that the page follows the archive with this one command; the prose around them is written by hand.

Units: meV/atom, eV, eV/Å², GPa, J/m² and meV/Å² (1 J/m² = 62.415 meV/Å²).
"""
from __future__ import annotations

import csv
import json
import math
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "docs" / "study" / "paper_scale"  # where the tables and figures go
PAGE = HERE.parent / "paper_scale.md"  # the page whose marked tables are rewritten (:func:`update_page`)
ARCHIVE = HERE / "runs"  # the inputs of every run: runs/<name>/{settings.json, fits.csv, error_matrix_long.csv}
#: The files of a run folder that the tables are made from (and that the archive keeps).
RUN_FILES = ("settings.json", "fits.csv", "error_matrix_long.csv")
sys.path.insert(0, str(REPO / "experiments"))

import c_error_matrix  # noqa: E402

from mtpjax import experiment as E  # noqa: E402
from mtpjax.io.files import atomic_write  # noqa: E402

#: meV/Å² per J/m².
MEV_A2_PER_J_M2 = 1000.0 / 16.021766
#: Rows left out of matrix.png (kept in matrix.csv): per-component strains, unrelaxed and displacement rows.
FIGURE_EXCLUDE = ("max displacement", "unrelaxed", " xx", " yy", " zz", " yz", " xz", " xy", "formation volume",
                  "min frequency", "max frequency", "points below r_min")
PROTOTYPES = ("hcp", "fcc", "dhcp", "bcc")
#: The subsets of Fig. 6 (E–V RMSE against level; their variants too): the others are fitted at one level only.
FIG6_SUBSETS = ("RANDSPG", "EVERYTHING")
CIJ = ("C11", "C12", "C13", "C33", "C44", "C66")


def read_run(folder: Path):
    """(level, cutoff, {subset: rows}, fits rows) of one paper_slice.py output folder; a run with a ``variant`` in
    its settings.json (scripts/paper_slice.py: weighted data) names its subsets ``SUBSET-variant``, one with a fit
    seed other than 0 ``SUBSET-s<seed>`` (both: ``SUBSET-variant-s<seed>``)."""
    s = json.loads((folder / "settings.json").read_text())
    rows = {}
    tag = (f"-{s['variant']}" if s.get("variant") else "") + (f"-s{s['seed']}" if s.get("seed") else "")
    with open(folder / "error_matrix_long.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            rows.setdefault(r.pop("subset") + tag, []).append(r)
    with open(folder / "fits.csv", newline="") as fh:
        fits = [{**r, "subset": r["subset"] + tag} for r in csv.DictReader(fh)]
    return int(s["level"]), float(s["cutoff"]), rows, fits


def label(subset: str, level: int, cutoff: float) -> str:
    return f"{subset} L{level} {cutoff:g}"


def num(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def find(rows, test: str, quantity: str):
    """The row of ``test`` whose quantity is ``quantity`` (exactly), or None."""
    return next((r for r in rows if r["test"] == test and r["quantity"] == quantity), None)


def pick(rows, test: str, quantity: str, key: str = "error"):
    r = find(rows, test, quantity)
    return math.nan if r is None else num(r.get(key))


def vacancy_rows(rows):
    """{prototype: row} of the relaxed vacancy formation energies."""
    out = {}
    for p in PROTOTYPES:
        r = next((r for r in rows if r["test"] == "vacancy" and r["quantity"].startswith("vacancy formation energy (")
                  and r["quantity"].split("(")[1].split()[0] == p), None)
        if r is not None:
            out[p] = r
    return out


def numbers(rows) -> dict:
    """The quantities the trends and targets are judged on, from one fit's verification rows."""
    n = {}
    for rng in ("±10%", "±80%"):
        n[f"ev_rmse_all {rng}"] = pick(rows, "eos", f"energy RMSE all phases {rng}")
        n[f"ev_excluded {rng}"] = pick(rows, "eos", f"points below r_min (excluded from the RMSEs) {rng}", "mtp")
        for p in PROTOTYPES:
            n[f"ev_rmse_{p} {rng}"] = pick(rows, "eos", f"energy RMSE {p} {rng}")
        for p in ("fcc", "dhcp", "bcc"):
            n[f"ev_rmse_diff_{p} {rng}"] = pick(rows, "eos", f"RMSE of E({p}) − E(hcp) {rng}")
    for p in ("fcc", "dhcp", "bcc"):
        n[f"dE_{p}_hcp mtp"] = pick(rows, "elastic", f"E({p}) − E(hcp)", "mtp")
        n[f"dE_{p}_hcp oracle"] = pick(rows, "elastic", f"E({p}) − E(hcp)", "oracle")
    vac = vacancy_rows(rows)
    for p, r in vac.items():
        n[f"vacancy_error_{p}"] = num(r["error"])
    errs = [abs(num(r["error"])) for r in vac.values()]
    n["vacancy_mae"] = sum(errs) / len(errs) if len(errs) == len(PROTOTYPES) else math.nan
    for s in ("hcp", "bcc", "bcc@12"):
        n[f"fc_rmse {s}"] = pick(rows, "phonons", f"{s}: force constants RMSE")
    for c in CIJ:
        n[f"{c} rel"] = pick(rows, "elastic", c, "relative_error")
    surf = [r for r in rows if r["test"] == "planar" and r["quantity"].startswith("surface energy (")]
    for r in surf:
        n[f"surface {r['quantity'].split('(')[1].rstrip(')')} err meV/A2"] = num(r["error"]) * MEV_A2_PER_J_M2
    gb = [r for r in rows if r["test"] == "planar" and "grain boundary energy" in r["quantity"]]
    n["gb err meV/A2"] = num(gb[0]["error"]) * MEV_A2_PER_J_M2 if gb else math.nan
    n["surface mean |err| meV/A2"] = (sum(abs(num(r["error"])) for r in surf) / len(surf) * MEV_A2_PER_J_M2
                                      if surf else math.nan)
    n["surface mean |rel| %"] = (100 * sum(abs(num(r["relative_error"])) for r in surf) / len(surf) if surf else math.nan)
    n["gb |rel| %"] = 100 * abs(num(gb[0]["relative_error"])) if gb else math.nan
    gsf = [r for r in rows if r["test"] == "planar" and ("GSF" in r["quantity"] or "stacking fault" in r["quantity"])]
    for r in gsf:
        n[f"gsf {r['quantity']} err meV/A2"] = num(r["error"]) * MEV_A2_PER_J_M2
    return n


def targets(n: dict) -> list[dict]:
    """Item 3's targets for one fit: quantity, value, target, met (None where the value is missing)."""
    def row(q, v, t, ok, note=""):
        return {"target": q, "value": v, "limit": t, "met": (None if v is None or (isinstance(v, float) and math.isnan(v))
                                                             else bool(ok)), "note": note}

    out = []
    for rng, lim in (("±10%", 3.0), ("±80%", 10.0)):
        v = n[f"ev_rmse_all {rng}"]
        out.append(row(f"E–V RMSE all phases {rng} (meV/atom)", v, f"≤ {lim:g}", v <= lim,
                       f"{n[f'ev_excluded {rng}']:g} points below r_min excluded"))
    v = n["vacancy_mae"]
    out.append(row("vacancy formation energy MAE, hcp fcc dhcp bcc (eV)", v, "≤ 0.02", v <= 0.02,
                   ", ".join(f"{p} {n.get(f'vacancy_error_{p}', math.nan):+.4f}" for p in PROTOTYPES)))
    for s in ("hcp", "bcc", "bcc@12"):
        v = n[f"fc_rmse {s}"]
        out.append(row(f"force constants RMSE {s} (eV/Å²)", v, "≤ 0.02", v <= 0.02))
    rel = [abs(n[f"{c} rel"]) * 100 for c in CIJ]
    v = max(rel) if all(map(math.isfinite, rel)) else math.nan
    out.append(row("C_ij: largest |relative error| (%)", v, "≤ 5", v <= 5,
                   ", ".join(f"{c} {n[f'{c} rel'] * 100:+.1f}%" for c in CIJ)))
    planar = {k: v for k, v in n.items() if k.startswith("surface ") and k.endswith("err meV/A2")
              and "mean" not in k}
    planar["GB"] = n["gb err meV/A2"]
    v = max(abs(x) for x in planar.values()) if planar and all(map(math.isfinite, planar.values())) else math.nan
    out.append(row("surface and GB energies: largest |error| (meV/Å²)", v, "≤ 5", v <= 5,
                   ", ".join(f"{k.replace(' err meV/A2', '')} {x:+.2f}" for k, x in planar.items())))
    gsf = {k: v for k, v in n.items() if k.startswith("gsf ")}
    v = max(abs(x) for x in gsf.values()) if gsf and all(map(math.isfinite, gsf.values())) else math.nan
    out.append(row("GSFE: largest |error| (meV/Å²)", v, "≤ 5", v <= 5,
                   ", ".join(f"{k[4:].replace(' err meV/A2', '')} {x:+.2f}" for k, x in gsf.items())))
    return out


def ev_figure(points: dict, path: Path) -> Path:
    """E–V RMSE (all phases, points below r_min excluded) against level, ±10 % and ±80 % (Fig. 6): ``points``
    {(subset, cutoff): [(level, rmse10, rmse80), ...]}; each series is shifted along x by a little, so that equal
    values stay visible."""
    from mtpjax.plotting import subplots

    fig, axes = subplots(1, 2, figsize=(10, 3.3))
    markers = {"EVERYTHING": "o", "RANDSPG": "s"}
    for k, ((subset, cutoff), pts) in enumerate(sorted(points.items())):
        pts = sorted(pts)
        for ax, j in zip(axes, (1, 2)):
            ax.plot([p[0] + 0.2 * (k - 1.5) for p in pts], [p[j] for p in pts], marker=markers.get(subset, "^"), ls="-",
                    color=E.colour("tab10", k), label=f"{subset}, {cutoff:g} Å")
    for ax, rng, lim in zip(axes, ("±10 %", "±80 %"), (3.0, 10.0)):
        ax.axhline(lim, color="0.5", ls=":", lw=1, label=f"target {lim:g} meV/atom")
        ax.set_yscale("log")
        ax.set_xlabel("MTP level")
        ax.set_ylabel("E–V energy RMSE (meV/atom)")
        ax.set_title(f"hcp, fcc, dhcp, bcc over {rng} of Ω0\n(points below r_min excluded)", fontsize=9)
        ax.set_xticks(sorted({p[0] for pts in points.values() for p in pts}))
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside: the curves span the panel
    fig.tight_layout()
    return E.save_figure(fig, path, dpi=100)


def level_comparison(matrix, order, by: str = "level") -> list[dict]:
    """For every two fits of one subset at different levels (``by="level"``; any cutoffs), at different cutoffs
    and the same level (``by="cutoff"``), or of a subset and its variant (``SUBSET-variant``, ``by="variant"``), or
    of two variants of it (the later one in ``order`` is "high"), at the same level and cutoff: over the matrix rows
    where both have a finite error (rows of :data:`FIGURE_EXCLUDE` left out), how many have the smaller |error| at
    the higher level (cutoff; with the variant), and the median of |error(high)| / |error(low)|."""
    out = []
    rows = [m for m in matrix if not any(e in f"{m['test']}: {m['quantity']}" for e in FIGURE_EXCLUDE)]
    for i, a in enumerate(order):
        for j, b in enumerate(order):
            sa, la, ca = a.split()
            sb, lb, cb = b.split()
            if by == "variant":
                if j <= i or "-" not in sb or sa.partition("-")[0] != sb.partition("-")[0] or (la, ca) != (lb, cb):
                    continue
            elif sa != sb or (int(la[1:]) >= int(lb[1:]) if by == "level" else (la != lb or float(ca) >= float(cb))):
                continue
            pairs = [(abs(m[a]), abs(m[b])) for m in rows if math.isfinite(m[a]) and math.isfinite(m[b])]
            ratios = sorted(y / x for x, y in pairs if x > 0)
            out.append({"subset": sa, "low": a, "high": b, "rows": len(pairs),
                        f"smaller_at_high_{by}": sum(y < x for x, y in pairs),
                        "median_ratio_high_over_low": ratios[len(ratios) // 2] if ratios else math.nan})
    return out


def markdown_matrix(matrix, order) -> str:
    """The matrix as a Markdown table (the rows of :data:`FIGURE_EXCLUDE` left out): ``%`` rows signed, 3 digits."""
    def cell(x, signed):
        v = num(x)
        return "–" if not math.isfinite(v) else (f"{v:+.3g}" if signed else f"{v:.3g}")

    lines = ["| test: quantity | unit | " + " | ".join(order) + " |", "|---|---|" + "---:|" * len(order)]
    for r in matrix:
        q = f"{r['test']}: {r['quantity']}"
        if any(x in q for x in FIGURE_EXCLUDE):
            continue
        rel = r["kind"] == "relative"
        lines.append(f"| {q} | {'%' if rel else r['unit']} | " + " | ".join(cell(r.get(c), rel) for c in order) + " |")
    return "\n".join(lines) + "\n"


def column_key(col: str):
    """Sort key of a matrix column "SUBSET[-variant] Llevel cutoff": the paper's subset order (RANDSPG first,
    EVERYTHING last; :data:`mtpjax.experiment.KNOWN_SUBSETS`), then level, cutoff and variant."""
    sub, level, cutoff = col.split()
    base, _, variant = sub.partition("-")
    rank = E.KNOWN_SUBSETS.index(base) if base in E.KNOWN_SUBSETS else len(E.KNOWN_SUBSETS)
    return rank, int(level[1:]), float(cutoff), variant


def sig3(v: float) -> str:
    """``v`` to three significant digits, thousands with separators (1,870; 79,100), NaN as "–"."""
    if not math.isfinite(v):
        return "–"
    if abs(v) >= 1000:
        return f"{float(f'{v:.3g}'):,.0f}"
    return f"{v:.3g}"


def signed(v: float, digits: int = 2, plus: bool = False) -> str:
    """``v`` with ``digits`` decimals and a typographic minus ("+" too when ``plus``), NaN as "–"."""
    if not math.isfinite(v):
        return "–"
    v = 0.0 if round(v, digits) == 0 else v  # no "−0.00"
    return f"{v:{'+' if plus else ''}.{digits}f}".replace("-", "\N{MINUS SIGN}")


#: The header of the short Fig. 14 table (:func:`summary_table`).
SUMMARY_HEADER = ("| training subset | structures | train E RMSE (meV/atom) | E–V ±10 % | E–V ±80 % | C_ij: largest "
                  "\\|error\\| (%) | force constants hcp / bcc / bcc at 12 Å³/atom (eV/Å²) | vacancy MAE (eV) | "
                  "E(fcc) − E(hcp) (meV/atom; oracle {oracle}) | surfaces mean \\|error\\| / Σ7 GB (meV/Å²) |")


def summary_table(cols: dict, fits: dict) -> str:
    """The short Fig. 14 table of docs/study/paper_scale.md, one line per training subset in ``cols`` ({subset:
    verification rows}, in order): structures and training energy RMSE (meV/atom) from ``fits`` ({subset: fits.csv
    row}); E–V RMSE over all four phases (meV/atom); the largest |relative error| of the six C_ij (%); the force
    constants RMSE of hcp, bcc and bcc at 12 Å³/atom (eV/Å²); the vacancy MAE over hcp, fcc, dhcp and bcc (eV);
    the MTP's E(fcc) − E(hcp) (meV/atom); the mean |error| of the relaxed surfaces and the error of the Σ7 boundary
    (meV/Å², from J/m² × 62.415)."""
    lines = []
    oracle = math.nan
    for sub, rows in cols.items():
        n = numbers(rows)
        f = fits.get(sub, {})
        oracle = n["dE_fcc_hcp oracle"] if math.isfinite(n["dE_fcc_hcp oracle"]) else oracle
        cij = {c: abs(n[f"{c} rel"]) for c in CIJ if math.isfinite(n[f"{c} rel"])}
        worst = max(cij, key=cij.get) if cij else None
        fc = " / ".join("–" if not math.isfinite(n[f"fc_rmse {s}"]) else f"{n[f'fc_rmse {s}']:.3f}"
                        for s in ("hcp", "bcc", "bcc@12"))
        lines.append(" | ".join([
            f"| {sub}", f.get("n_train", "–"), signed(num(f.get("train_energy_meV")), 1),
            signed(n["ev_rmse_all ±10%"]), sig3(n["ev_rmse_all ±80%"]),
            f"{100 * cij[worst]:.1f} ({worst})" if worst else "–", fc,
            "–" if not math.isfinite(n["vacancy_mae"]) else f"{n['vacancy_mae']:.4f}",
            signed(n["dE_fcc_hcp mtp"]),
            f"{signed(n['surface mean |err| meV/A2'])} / {signed(n['gb err meV/A2'], plus=True)} |"]))
    head = SUMMARY_HEADER.format(oracle=signed(oracle))
    return "\n".join([head, "|---|" + "---:|" * 9, *lines]) + "\n"


def subset_matrices(cols: dict, fits: dict | None = None) -> list[str]:
    """The paper's Fig. 14 at each (level, cutoff) with at least three training subsets (variants left out):
    ``fig14_L<level>_rc<cutoff>.{csv,md,png}`` in :data:`HERE`, columns named by subset alone in the paper's order,
    and its short table (:func:`summary_table`; ``fits``: {column: fits.csv row}) as
    ``fig14_L<level>_rc<cutoff>_summary.md``; returns the names written."""
    fits = fits or {}
    groups: dict[tuple[str, str], list[str]] = {}
    for c in cols:
        sub, level, cutoff = c.split()
        if "-" not in sub:
            groups.setdefault((level, cutoff), []).append(c)
    written = []
    for (level, cutoff), cs in groups.items():
        if len(cs) < 3:
            continue
        sub_cols = {c.split()[0]: cols[c] for c in sorted(cs, key=column_key)}
        names = list(sub_cols)
        stem = f"fig14_{level}_rc{cutoff}"
        matrix = c_error_matrix.assemble_matrix(sub_cols)
        E.write_csv(HERE / f"{stem}.csv", matrix, ["test", "quantity", "unit", "kind", *names])
        atomic_write(HERE / f"{stem}.md", markdown_matrix(matrix, names))
        shown = c_error_matrix.assemble_matrix(sub_cols, FIGURE_EXCLUDE)
        E.save_figure(c_error_matrix.matrix_figure(
            shown, names, f"Fig. 14 at paper scale: training subset × verification, level {level[1:]}, cutoff "
                          f"{cutoff} Å (Mg, Zhou EAM oracle)"), HERE / f"{stem}.png", dpi=80)
        atomic_write(HERE / f"{stem}_summary.md",
                     summary_table(sub_cols, {c.split()[0]: fits[c] for c in cs if c in fits}))
        written += [f"{stem}.csv", f"{stem}.md", f"{stem}.png", f"{stem}_summary.md"]
    return written


def update_page(page: Path, blocks: dict) -> list[str]:
    """Put each table of ``blocks`` ({name: Markdown}) into ``page`` between its markers, the lines
    ``<!-- tables: NAME -->`` and ``<!-- /tables: NAME -->`` (whatever was between them is replaced; a block
    without markers in the page is left out), and write the page atomically if it changed; returns the names
    put in. Raises ValueError naming the page and line of a marker without its pair, before writing anything."""
    lines = page.read_text().split("\n")
    out, done, open_at = [], [], None
    for k, line in enumerate(lines, 1):
        m = re.fullmatch(r"<!-- (/?)tables: (\S+) -->", line.strip())
        if m is None:
            if open_at is None or open_at[1] not in blocks:
                out.append(line)
            continue
        closing, name = m.group(1) == "/", m.group(2)
        if not closing:
            if open_at is not None:
                raise ValueError(f"{page}:{k}: table marker {name!r} opens inside {open_at[1]!r} (line {open_at[0]})")
            open_at = (k, name)
            out.append(line)
            continue
        if open_at is None or open_at[1] != name:
            raise ValueError(f"{page}:{k}: table marker /{name!r} closes nothing open")
        if name in blocks:
            out += ["", blocks[name].strip("\n"), ""]
            done.append(name)
        out.append(line)
        open_at = None
    if open_at is not None:
        raise ValueError(f"{page}:{open_at[0]}: table marker {open_at[1]!r} is never closed")
    text = "\n".join(out)
    if text != page.read_text():
        atomic_write(page, text)
    return done


def archive(folder: Path) -> Path:
    """Copy :data:`RUN_FILES` of one paper_slice.py output folder into ``ARCHIVE/<folder name>/`` (atomically, each
    file replaced), and its fitted potentials into ``potentials/`` there; returns that folder. Raises
    FileNotFoundError naming a missing file before copying any."""
    missing = [n for n in RUN_FILES if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: not a paper_slice.py output folder (no {', '.join(missing)})")
    dest = ARCHIVE / folder.name
    if dest.resolve() != folder.resolve():
        dest.mkdir(parents=True, exist_ok=True)
        for n in RUN_FILES:
            atomic_write(dest / n, (folder / n).read_bytes())
        for pot in sorted((folder / "fits" / "runs").glob("*/potential.*")):
            if pot.suffix in (".almtp", ".mtpjax"):
                (dest / "potentials").mkdir(exist_ok=True)
                atomic_write(dest / "potentials" / f"{pot.parent.name}{pot.suffix}", pot.read_bytes())
    return dest


def main(folders) -> None:
    for f in map(Path, folders):
        archive(f)
    runs = sorted(p for p in ARCHIVE.iterdir() if p.is_dir()) if ARCHIVE.is_dir() else []
    if not runs:
        sys.exit(f"no runs: name paper_slice.py output folders (the archive {ARCHIVE} is empty)")
    cols, fits, nums, ev = {}, [], {}, {}
    for f in runs:
        level, cutoff, rows, fit_rows = read_run(f)
        for sub, rs in rows.items():
            lab = label(sub, level, cutoff)
            if lab in cols:
                sys.exit(f"{f}: fit {lab} is also in another archived run; remove one from {ARCHIVE}")
            cols[lab] = rs
            nums[lab] = numbers(rs)
            if sub.split("-")[0] in FIG6_SUBSETS:
                ev.setdefault((sub, cutoff), []).append((level, nums[lab]["ev_rmse_all ±10%"],
                                                         nums[lab]["ev_rmse_all ±80%"]))
        fits += [{"fit": label(r["subset"], level, cutoff), **r} for r in fit_rows]
    order = sorted(cols, key=column_key)
    cols = {c: cols[c] for c in order}
    matrix = c_error_matrix.assemble_matrix(cols)
    E.write_csv(HERE / "matrix.csv", matrix, ["test", "quantity", "unit", "kind", *order])
    atomic_write(HERE / "matrix.md", markdown_matrix(matrix, order))
    shown = c_error_matrix.assemble_matrix(cols, FIGURE_EXCLUDE)
    E.save_figure(c_error_matrix.matrix_figure(shown, order, "Error matrix, paper-scale Mg set (Zhou EAM oracle), "
                                                              "full verification suite"), HERE / "matrix.png", dpi=60)
    written = subset_matrices(cols, {f["fit"]: f for f in fits})
    E.write_csv(HERE / "fits.csv", fits)
    keys = list(dict.fromkeys(k for c in order for k in nums[c]))
    E.write_csv(HERE / "trend_numbers.csv", [{"quantity": k, **{c: nums[c].get(k) for c in order}} for k in keys],
                ["quantity", *order])
    trows = [{"fit": c, **t} for c in order if c.startswith("EVERYTHING") for t in targets(nums[c])]
    E.write_csv(HERE / "targets.csv", trows)
    E.write_csv(HERE / "level_comparison.csv", level_comparison(matrix, order))
    E.write_csv(HERE / "cutoff_comparison.csv", level_comparison(matrix, order, by="cutoff"))
    variants = level_comparison(matrix, order, by="variant")
    if variants:
        E.write_csv(HERE / "variant_comparison.csv", variants)
    ev_figure(ev, HERE / "ev_rmse_vs_level.png")
    blocks = {"matrix": (HERE / "matrix.md").read_text()}
    blocks |= {w[:-3]: (HERE / w).read_text() for w in written if w.endswith("_summary.md")}
    on_page = update_page(PAGE, blocks) if PAGE.is_file() else []
    for c in order:
        print(c)
        for t in targets(nums[c]) if c.startswith("EVERYTHING") else ():
            print(f"   {t['target']}: {t['value']:.4g} ({t['limit']}) met={t['met']}  {t['note']}")
    print(f"wrote matrix.csv ({len(matrix)} rows), matrix.md, matrix.png, fits.csv, trend_numbers.csv, targets.csv, "
          f"level_comparison.csv, cutoff_comparison.csv, ev_rmse_vs_level.png{''.join(', ' + w for w in written)} "
          f"in {HERE}; tables on {PAGE.name}: {', '.join(on_page) or 'none'}")


if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        sys.exit(__doc__)
    main(sys.argv[1:])
