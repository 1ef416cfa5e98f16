"""The combined report of ``mtpjax run``: ``OUT/report.md`` with relative links to the figures of every stage.

Sections: the stages (hash, time), the data set (counts per subset — the paper's Fig. 2 — and Figs. 1 and 3), the
fit (settings, loss curve, RMSE per subset on the training and test sets) and the verification (its error table —
the rows of Fig. 14 — and its figures: E–V Figs. 6/7, phonons Figs. 8/9, vacancies Figs. 10/11, planar defects
Fig. 12).
"""
from __future__ import annotations

import json
from pathlib import Path

from .io.files import atomic_write

#: Captions of the verification figures by file stem (the paper's figure numbers where there is one).
FIGURE_CAPTIONS = {
    "eos_10": "E(V) within ±10 % of Ω0 (Fig. 6)", "eos_80": "E(V) within ±80 % of Ω0 (Fig. 6)",
    "eos_diff_10": "E(phase) − E(hcp), ±10 % (Fig. 7)", "eos_diff_80": "E(phase) − E(hcp), ±80 % (Fig. 7)",
    "strain": "energies under strain", "elastic": "elastic constants",
    "phonons_force_constants": "force constants, potential vs oracle (Fig. 9)",
    "vacancy": "vacancy formation energies and volumes (Figs. 10, 11)",
    "surfaces": "surface energies (Fig. 12)", "gsf": "basal generalised stacking fault (Fig. 12)",
    "decohesion": "decohesion (Fig. 12)", "gb_sigma7": "Σ7 tilt grain boundary (Fig. 12)",
    "gb_sigma3": "Σ3 twin boundary (Fig. 12)",
}
#: The GSF plane named in captions per ground state.
GSF_PLANES = {"hcp": "basal", "fcc": "{111}", "bcc": "{110}"}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _fmt(x, digits=4):
    from .verify.report import fmt

    return fmt(x, digits)


def _table(headers, body, align=None):
    from .verify.report import markdown_table

    return markdown_table(headers, body, align)


def _image(out: Path, rel: str, caption: str) -> list[str]:
    if not (out / rel).exists():
        return [f"*{caption}: figure missing ({rel})*", ""]
    return [f"![{caption}]({rel})", "", f"*{caption}* — [{rel}]({rel})", ""]


def _caption(stem: str, ground_state: str = "hcp") -> str:
    g = ground_state if ground_state in GSF_PLANES else "hcp"
    if g != "hcp" and stem.startswith("eos_diff_"):
        return f"E(phase) − E({g}), ±{stem[len('eos_diff_'):]} % (Fig. 7)"
    if g != "hcp" and stem == "gsf":
        return f"{GSF_PLANES[g]} generalised stacking fault (Fig. 12)"
    if stem in FIGURE_CAPTIONS:
        return FIGURE_CAPTIONS[stem]
    if stem.startswith("phonons_"):
        return f"phonon bands and DOS, {stem[len('phonons_'):]} (Fig. 8)"
    return stem.replace("_", " ")


def stages_section(stages: dict) -> list[str]:
    """``stages``: {stage: its ``stage.json`` record, or None when not run}, in pipeline order."""
    body = []
    for s, st in stages.items():
        st = st or {}
        secs = st.get("seconds")
        body.append([s, st.get("hash", "—"), st.get("status", "not run") if s != "report" else "done",
                     st.get("finished", "—") if s != "report" else "(this file)", "—" if secs is None else f"{secs:.1f}"])
    return ["## Stages", "", _table(["stage", "input hash", "status", "finished", "time (s)"], body,
                                    ["l", "l", "l", "l", "r"]), "", "The run log is [stages.log](stages.log).", ""]


def dataset_section(cfg, out: Path) -> list[str]:
    man = _read_json(out / "generate" / "manifest.json")
    lines = ["## Data set", ""]
    if man is None:
        return lines + ["*no generation manifest (generate/manifest.json)*", ""]
    ref = man["reference"]
    oracle = man["oracle"].get("name", man["oracle"].get("type", ""))
    phase = ref.get("phase", "hcp")  # manifests before the ground-state reference: hcp
    lines += [f"{man['element']}, labelled by {oracle}; seed {man['seed']}; Ω0 = {ref['omega0']:.4f} Å³/atom "
              f"of the oracle's ground state {phase} (oracle's hcp a = {ref['a']:.4f} Å, c/a = {ref['c_over_a']:.4f}). "
              "Details: "
              "[generate/summary.md](generate/summary.md), [generate/manifest.json](generate/manifest.json).", "",
              "### Structures per subset (Fig. 2)", ""]
    body = []
    for name, s in man["subsets"].items():
        sel = s.get("selected", True)
        body.append([name, "yes" if sel else "no", s["structures"], s["atoms"],
                     f"{s['atoms'] / s['structures']:.1f}" if s["structures"] else "—",
                     f"[{name}.extxyz](generate/{name}.extxyz)" if sel and (out / "generate" / f"{name}.extxyz").exists() else ""])
    lines += [_table(["subset", "in data set", "structures", "atoms", "atoms/structure", "file"], body,
                     ["l", "l", "r", "r", "r", "l"]), ""]
    lines += _image(out, "generate/fig1_space_groups.png", "Fig. 1: space groups of the RANDSPG structures")
    lines += _image(out, "generate/fig3_distances.png", "Fig. 3: neighbour distances of RANDSPG and INTMIN")
    return lines


def _rmse_rows(split: str, errs: dict) -> list[list]:
    order = sorted(errs, key=lambda k: (k != "all", k))
    return [[split, k, _fmt(errs[k].get("energy")), _fmt(errs[k].get("forces")), _fmt(errs[k].get("stress"))] for k in order]


def fit_section(cfg, out: Path) -> list[str]:
    res = _read_json(out / "fit" / "result.json")
    lines = ["## Fit", ""]
    if res is None:
        return lines + ["*no fit result (fit/result.json)*", ""]
    f = cfg.fit
    test_desc = (f"the {f.test_subset} subset" if f.test_subset else
                 f"a random {100 * f.test_fraction:g} % of {f.subset}" if f.test_fraction else "none")
    lines += [f"Level-{res['level']} MTP ({res['n_basis']} basis functions), cutoff {res['cutoff']:g} Å, "
              f"r_min {res['rmin']:.3f} Å, seed {res['seed']}; optimizer {res.get('optimizer', f.optimizer)}, "
              f"{res['steps']} steps in {res['wall_s']:.1f} s. Trained on {res['n_train']} structures of {f.subset}; "
              f"test set: {test_desc} ({res['n_test']} structures).", "",
              "Potential: [fit/potential.almtp](fit/potential.almtp) (MLIP, LAMMPS) and "
              "[fit/potential.mtpjax](fit/potential.mtpjax) (exact); metrics: [fit/result.json](fit/result.json).", "",
              "### RMSE per subset", ""]
    body = _rmse_rows("train", res.get("train", {})) + _rmse_rows("test", res.get("test", {}))
    lines += [_table(["set", "subset", "energy (meV/atom)", "forces (eV/Å)", "stress (GPa)"], body,
                     ["l", "l", "r", "r", "r"]), ""]
    lines += _image(out, "fit/loss.png", "loss curve")
    return lines


def verify_section(cfg, out: Path) -> list[str]:
    from .verify.report import error_table

    m = _read_json(out / "verify" / "metrics.json")
    lines = ["## Verification", ""]
    if m is None:
        return lines + ["*no verification result (verify/metrics.json)*", ""]
    lines += [f"{m.get('potential_label', 'potential')} against {m.get('oracle_label', 'oracle')}; "
              f"mode: {'quick' if m.get('quick') else 'full'}; {m.get('total_seconds', 0):.0f} s. "
              "Details: [verify/summary.md](verify/summary.md), [verify/rows.csv](verify/rows.csv), "
              "[verify/metrics.json](verify/metrics.json).", ""]
    body = [[n, t["status"], f"{t.get('seconds', 0):.1f}", (t.get("error") or "").replace("\n", " ")[:120]]
            for n, t in m["tests"].items()]
    lines += [_table(["test", "status", "time (s)", "error"], body, ["l", "l", "r", "l"]), ""]
    gs = m.get("ground_state") if isinstance(m.get("ground_state"), dict) else {}
    g = gs.get("lattice") or "hcp"
    if gs.get("lattice"):
        lines += [f"Ground state: **{g}** ({'given in [verify]' if gs.get('source') == 'config' else 'detected: the oracle’s lowest relaxed prototype'}); "
                  "elastic constants, phase energies and planar defects are those of this lattice.", ""]
    rows = m.get("rows", [])
    if cfg.report.max_rows and len(rows) > cfg.report.max_rows:
        lines += [f"The first {cfg.report.max_rows} of {len(rows)} rows (all in [verify/rows.csv](verify/rows.csv)).", ""]
        rows = rows[: cfg.report.max_rows]
    lines += ["### Errors (Fig. 14 rows)", "",
              "error = potential − oracle; for RMSE rows the error is the RMSE. rel. error = error / |oracle|.", ""]
    lines += [error_table(rows, "potential", "oracle") if rows else "*no rows*", ""]
    fails = m.get("failures", [])
    if fails:
        lines += ["### Failures and notes", ""] + [f"- {x.get('test')}: {x.get('structure') or ''} {x.get('reason')}".replace("\n", " ")
                                                   for x in fails[:50]] + [""]
    figs = [(n, f) for n, t in m["tests"].items() for f in t.get("figures", [])]
    if figs:
        lines += ["### Figures", ""]
        for _, f in figs:
            lines += _image(out, f"verify/{f}", _caption(Path(f).stem, g))
    return lines


def run_warnings(out) -> list[str]:
    """Every loud warning of the run in ``out``: implausible labels discarded by the generation
    (``generate/manifest.json``), a fit whose RMSEs mean a broken set or fit (:func:`mtpjax.fit.train.fit_warnings`
    on ``fit/result.json``), verification errors of eV/atom scale
    (:func:`mtpjax.verify.report.verification_warnings` on ``verify/metrics.json``); each prefixed by its stage."""
    from .fit.train import fit_warnings
    from .generate.pipeline import generation_warnings
    from .verify.report import verification_warnings

    out = Path(out)
    found = []
    man = _read_json(out / "generate" / "manifest.json")
    if man is not None:
        found += [f"generate: {w}" for w in generation_warnings(man)]
    res = _read_json(out / "fit" / "result.json")
    if res is not None:
        found += [f"fit: {w}" for w in fit_warnings(res)]
    m = _read_json(out / "verify" / "metrics.json")
    if m is not None:
        found += [f"verify: {w}" for w in verification_warnings(m.get("rows", []))]
    return found


def warnings_section(out) -> list[str]:
    """The WARNINGS block at the top of the report (empty when there is nothing to warn about)."""
    ws = run_warnings(out)
    if not ws:
        return []
    return ["## ⚠ WARNINGS", "", "The run finished, but these results are broken or were cut:", ""] + [f"- **{w}**" for w in ws] + [""]


def report_markdown(cfg, out, stages: dict) -> str:
    """The whole report as markdown; links are relative to ``out``. ``stages``: as for :func:`stages_section`."""
    out = Path(out)
    title = cfg.report.title or f"{cfg.name}: generate → fit → verify"
    lines = [f"# {title}", "", f"Produced by `mtpjax run {cfg.path or 'CONFIG'}` into this folder.", ""]
    lines += warnings_section(out) + stages_section(stages) + dataset_section(cfg, out) + fit_section(cfg, out) + verify_section(cfg, out)
    return "\n".join(lines).rstrip() + "\n"


def write_report(cfg, out, stages: dict) -> Path:
    """Write ``OUT/report.md`` (atomically); returns its path. ``stages``: {stage: its ``stage.json`` record
    or None}, in pipeline order (what :func:`mtpjax.pipeline.read_stage` returns for each of its ``STAGES``)."""
    out = Path(out)
    return atomic_write(out / "report.md", report_markdown(cfg, out, stages))
