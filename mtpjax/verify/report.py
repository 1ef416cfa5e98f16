"""Writers of the verification report: ``metrics.json``, ``rows.csv``, ``summary.md``, and side-by-side comparisons
of several potentials' reports (one column per potential).

A *row* is one test quantity (one row of the paper's Fig. 14): ``{"test", "quantity", "unit", "mtp", "oracle",
"error"}`` with ``error = mtp − oracle`` for values, or the RMSE itself for RMSE rows (where ``mtp``/``oracle`` hold
the RMS of each, or None). The relative error is ``error / |oracle|`` (None where the oracle is None or 0).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..io.files import atomic_open, atomic_write, json_safe, read_json, write_json

ROW_FIELDS = ("test", "quantity", "unit", "mtp", "oracle", "error", "relative_error")


def relative_error(row: dict):
    """error / |oracle| of a row, or None (also when the row says ``"relative": False``)."""
    if row.get("relative") is False:
        return None
    e, o = row.get("error"), row.get("oracle")
    if e is None or o is None:
        return None
    try:
        e, o = float(e), float(o)
    except (TypeError, ValueError):
        return None
    return e / abs(o) if o != 0 and math.isfinite(e) and math.isfinite(o) else None


def normalise_rows(rows) -> list:
    """Rows with every field of :data:`ROW_FIELDS` (relative error added), JSON-safe values."""
    out = []
    for r in rows:
        r = json_safe(dict(r))
        r = {k: r.get(k) for k in ROW_FIELDS[:-1]} | {k: v for k, v in r.items() if k not in ROW_FIELDS}
        r["relative_error"] = relative_error(r)
        out.append(r)
    return out


def write_rows_csv(path, rows) -> Path:
    """One line per row, columns :data:`ROW_FIELDS` (empty cells for None)."""
    path = Path(path)
    with atomic_open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(ROW_FIELDS)
        for r in normalise_rows(rows):
            w.writerow(["" if r.get(k) is None else r.get(k) for k in ROW_FIELDS])
    return path


def fmt(x, digits: int = 4, signed: bool = False) -> str:
    """A number for a table: ``digits`` significant digits, '—' for None/NaN, booleans as yes/no."""
    if x is None:
        return "—"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, str):
        return x
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "—"
    s = f"{v:{'+' if signed else ''}.{digits}g}"
    return s


def fmt_percent(x) -> str:
    return "—" if x is None else f"{100 * float(x):+.2f} %"


def markdown_table(headers, body, align=None) -> str:
    """A GitHub markdown table; ``align``: one of 'l', 'r' per column (default: first left, rest right)."""
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
             "| " + " | ".join("---:" if a == "r" else ":---" for a in align) + " |"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


#: Verification errors at or above these (by the row's unit) mean a broken potential, not an inaccurate one: an MTP
#: that describes the element misses energies per atom by meV–tens of meV and forces by ≲ 1 eV/Å.
BROKEN_ERRORS = {"eV/atom": 1.0, "meV/atom": 1000.0, "eV/Å": 10.0}


def verification_warnings(rows) -> list[str]:
    """Loud warnings for verification ``rows`` whose |error| is at or above :data:`BROKEN_ERRORS` for its unit
    (an energy error of eV/atom scale, a force error of tens of eV/Å), and for a negative surface energy of the
    potential where the oracle's is positive (the crystal would cleave by itself)."""
    out = []
    for r in rows:
        m, o = r.get("mtp"), r.get("oracle")
        if (r.get("unit") == "J/m²" and str(r.get("quantity", "")).startswith("surface energy")
                and isinstance(m, (int, float)) and isinstance(o, (int, float)) and m < 0 < o):
            out.append(f"{r.get('test')}: {r.get('quantity')} of the potential is {m:.4g} J/m² (oracle {o:.4g}): a "
                       "negative surface energy, the crystal would cleave by itself; the potential is broken there")
        lim, err = BROKEN_ERRORS.get(r.get("unit") or ""), r.get("error")
        if lim is not None and isinstance(err, (int, float)) and abs(err) >= lim:
            out.append(f"{r.get('test')}: {r.get('quantity')} error {err:.4g} {r['unit']} (≥ {lim:g} {r['unit']}): "
                       "the potential is broken (see the fit's RMSEs and the generation's rejected structures)")
    return out


def error_table(rows, potential_name: str = "potential", oracle_name: str = "oracle") -> str:
    """The error table (one line per row): test, quantity, unit, potential, oracle, error, relative error."""
    body = [[r["test"], r["quantity"], r["unit"] or "", fmt(r["mtp"]), fmt(r["oracle"]), fmt(r["error"], signed=True),
             fmt_percent(r["relative_error"])] for r in normalise_rows(rows)]
    return markdown_table(["test", "quantity", "unit", potential_name, oracle_name, "error", "rel. error"], body,
                          ["l", "l", "l", "r", "r", "r", "r"])


def summary_markdown(result: dict) -> str:
    """``summary.md`` of a suite result (see :func:`mtpjax.verify.suite.run_suite`)."""
    pot, orc = result.get("potential", {}), result.get("oracle", {})
    pname, oname = result.get("potential_label", pot.get("name", "potential")), result.get("oracle_label", orc.get("name", "oracle"))
    out = [f"# Verification: {pname} against {oname}", ""]
    if result.get("warnings"):
        out += ["**WARNINGS**", ""] + [f"- **{w}**" for w in result["warnings"]] + [""]
    meta = [f"element(s): {', '.join(result.get('elements') or []) or '—'}",
            f"mode: {'quick' if result.get('quick') else 'full'}",
            f"total time: {fmt(result.get('total_seconds'), 3)} s"]
    gs = result.get("ground_state")
    if isinstance(gs, dict) and gs.get("lattice"):
        meta.append(f"ground state: {gs['lattice']} ({'given' if gs.get('source') == 'config' else 'detected'})")
    if result.get("created"):
        meta.append(f"created: {result['created']}")
    out += [" · ".join(meta), ""]
    desc = [["name", pot.get("name", "—"), orc.get("name", "—")],
            ["cutoff (Å)", fmt(pot.get("cutoff")), fmt(orc.get("cutoff"))],
            ["species", ", ".join(pot.get("species") or []) or "—", ", ".join(orc.get("species") or []) or "—"],
            ["source", pot.get("source", "—"), orc.get("source", "—")]]
    out += [markdown_table(["", "potential", "oracle"], desc, ["l", "l", "l"]), ""]
    for note in result.get("notes") or []:
        out.append(f"> {note}")
    if result.get("notes"):
        out.append("")
    out += ["## Errors", "",
            "One row per test quantity (the rows of the paper's Fig. 14). error = potential − oracle; for RMSE rows the "
            "error is the RMSE and the value columns hold each one's RMS (or —). rel. error = error / |oracle|.", ""]
    rows = result.get("rows") or []
    out += [error_table(rows, "potential", "oracle") if rows else "_no rows: no test completed_", ""]
    out += ["## Tests", ""]
    body = []
    for name, t in (result.get("tests") or {}).items():
        body.append([name, t.get("status", "—"), fmt(t.get("seconds"), 3), str(len(t.get("rows") or [])),
                     str(len(t.get("figures") or [])), str(len(t.get("failures") or [])),
                     (t.get("error") or "").splitlines()[0][:160] if t.get("error") else ""])
    out += [markdown_table(["test", "status", "time (s)", "rows", "figures", "failures", "message"], body,
                           ["l", "l", "r", "r", "r", "r", "l"]), ""]
    fails = result.get("failures") or []
    if fails:
        out += ["## Failures and notes", ""]
        for f in fails:
            sev = f" ({f['severity']})" if f.get("severity") else ""
            out.append(f"- **{f.get('test', '?')}** / {f.get('structure', '—')}{sev}: {f.get('reason', '')}")
        out.append("")
    figs = [(name, f) for name, t in (result.get("tests") or {}).items() for f in (t.get("figures") or [])]
    if figs:
        out += ["## Figures", ""]
        current = None
        for name, f in figs:
            if name != current:
                out += [f"### {name}", ""]
                current = name
            out += [f"![{Path(f).name}]({f})", ""]
    return "\n".join(out).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------------------------
# several potentials side by side


def load_result(source) -> dict:
    """A suite result from a dict, a report directory or its ``metrics.json``."""
    if isinstance(source, dict):
        return source
    p = Path(source)
    if p.is_dir():
        p = p / "metrics.json"
    if not p.exists():
        from ..errors import MtpjaxError

        raise MtpjaxError(f"{source}: no metrics.json (not a verify report directory)")
    return read_json(p, "verify report")


def compare_rows(results, names=None, value: str = "error") -> tuple[list, list]:
    """Side-by-side rows of several suite results: (names, rows), each row ``{"test", "quantity", "unit", "oracle",
    name_1: v_1, ...}`` with v = the row's ``value`` ("error", "relative_error" or "mtp"), in first-seen order.
    ``oracle`` is the first non-None oracle value (the oracles should agree)."""
    results = [load_result(r) for r in results]
    if names is None:
        names = [r.get("potential_label") or (r.get("potential") or {}).get("name") or f"potential {k + 1}"
                 for k, r in enumerate(results)]
    names = _unique(names)
    table, order = {}, []
    for name, res in zip(names, results):
        for r in normalise_rows(res.get("rows") or []):
            key = (r["test"], r["quantity"], r["unit"])
            if key not in table:
                table[key] = {"test": key[0], "quantity": key[1], "unit": key[2], "oracle": r.get("oracle")}
                order.append(key)
            if table[key]["oracle"] is None:
                table[key]["oracle"] = r.get("oracle")
            table[key][name] = r.get(value)
    return names, [{**{n: None for n in names}, **table[k]} for k in order]


def _unique(names):
    seen, out = {}, []
    for n in names:
        n = str(n)
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def compare_markdown(results, names=None, value: str = "error") -> str:
    """A markdown table: one line per test quantity, the oracle's value, one column per potential (``value``)."""
    names, rows = compare_rows(results, names, value)
    f = fmt_percent if value == "relative_error" else (lambda x: fmt(x, signed=value == "error"))
    body = [[r["test"], r["quantity"], r["unit"] or "", fmt(r["oracle"])] + [f(r[n]) for n in names] for r in rows]
    return markdown_table(["test", "quantity", "unit", "oracle"] + names, body, ["l", "l", "l"] + ["r"] * (1 + len(names)))


def write_comparison(results, outdir, names=None) -> dict:
    """Write ``comparison.md`` (errors and relative errors) and ``comparison.csv`` (errors) into ``outdir``."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    results = [load_result(r) for r in results]
    names, rows = compare_rows(results, names, "error")
    md = ["# Comparison of potentials", "", "error = potential − oracle (RMSE for RMSE rows).", "",
          compare_markdown(results, names, "error"), "", "## Relative errors", "",
          compare_markdown(results, names, "relative_error"), "", "## Timings (s)", ""]
    tests = list(dict.fromkeys(t for r in results for t in (r.get("tests") or {})))
    body = [[t] + [fmt(((r.get("tests") or {}).get(t) or {}).get("seconds"), 3) for r in results] for t in tests]
    body.append(["total"] + [fmt(r.get("total_seconds"), 3) for r in results])
    md += [markdown_table(["test"] + names, body), ""]
    atomic_write(outdir / "comparison.md", "\n".join(md))
    with atomic_open(outdir / "comparison.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["test", "quantity", "unit", "oracle"] + names)
        for r in rows:
            w.writerow(["" if r[k] is None else r[k] for k in ["test", "quantity", "unit", "oracle"] + names])
    return {"markdown": outdir / "comparison.md", "csv": outdir / "comparison.csv", "names": names}


def write_report(result: dict, outdir) -> dict:
    """Write ``metrics.json``, ``rows.csv`` and ``summary.md`` of a suite result into ``outdir``; returns the paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    result = dict(result)
    result["rows"] = normalise_rows(result.get("rows") or [])
    return {"metrics": write_json(outdir / "metrics.json", result),
            "rows": write_rows_csv(outdir / "rows.csv", result["rows"]),
            "summary": atomic_write(outdir / "summary.md", summary_markdown(json_safe(result)))}
