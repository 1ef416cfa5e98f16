"""The reduced Al study end to end (issue 14, "any element"): ``configs/quickstart_al.toml`` (the Zhou 2004 EAM's
own Al parameters) through ``mtpjax run`` — generation, fit, verification on the element's own fcc ground state
and the report — with its accuracy checked against the oracle. Slow: about 4 minutes on 2 cores (phonons and strain,
5.5 of the full run's 8 minutes, are left out; docs/study/any_element.md has the full run)."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart_al.toml"


@pytest.mark.slow
def test_reduced_al_study_end_to_end(tmp_path):
    from mtpjax.pipeline import config_from_dict, run

    data = tomllib.loads(CONFIG.read_text())
    data["verify"]["tests"] = ["eos", "elastic", "vacancy", "planar"]
    out = tmp_path / "run"
    summary = run(config_from_dict(data), out=out, progress=False)
    assert all(s["action"] == "run" for s in summary["stages"].values()), summary["stages"]

    m = json.loads((out / "verify" / "metrics.json").read_text())
    assert m["ground_state"]["lattice"] == "fcc"
    assert all(t["status"] == "ok" for t in m["tests"].values()), {n: t.get("error") for n, t in m["tests"].items()}
    rows = {r["quantity"]: r for r in m["rows"]}

    # Independent reference: the oracle's own values, computed by the suite on the same fcc lattice. Bounds are the
    # measured errors of the committed run (docs/study/any_element.md) with room for another seed of the pipeline:
    # C11 -3.7 %, C12 +13 %, C44 +6 %; fcc vacancy 0.017 eV; E-V (all phases, ±10 %) 3.4 meV/atom; surfaces <= 0.035 J/m².
    for c in ("C11", "C12", "C44"):
        r = rows[c]
        assert r["oracle"] > 20.0, (c, r)  # Zhou Al: 105.5, 59.8, 27.8 GPa
        assert abs(r["error"]) <= 0.25 * r["oracle"], (c, r)
    assert abs(rows["fcc a (cubic)"]["error"]) < 0.03  # Å; oracle 4.05 Å
    assert abs(rows["vacancy formation energy (fcc 2x2x2)"]["error"]) < 0.08  # eV; oracle 0.66 eV
    assert rows["energy RMSE all phases ±10%"]["error"] < 10.0  # meV/atom
    for s in ("(111)", "(100)", "(110)"):
        r = rows[f"surface energy {s}"]
        assert r["mtp"] > 0 and abs(r["error"]) < 0.15, (s, r)  # J/m²; oracle 0.91-1.03 J/m²
    # The element's own faults and boundary were measured (not hcp's basal ones).
    assert {"{111} intrinsic stacking fault", "Σ3 (111) coherent twin boundary energy"} <= set(rows)
    assert not any(q.startswith("basal") or "Σ7" in q for q in rows)

    report = (out / "report.md").read_text()
    assert "Ground state: **fcc**" in report
    # Nothing near equilibrium is flagged as broken (the ±80 % rows may be: the quickstart set is small).
    assert not [w for w in m["warnings"] if "±10%" in w or "C1" in w or "vacancy" in w], m["warnings"]
