"""Implausible labels (issue 14): discarded and counted like failed structures; broken fits and verifications warn
loudly in the log, the result files and at the top of the report."""
import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.lj import LennardJones as ASELJ
from ase.calculators.singlepoint import SinglePointCalculator

from mtpjax.fit.train import BROKEN_ENERGY_RMSE, fit_warnings
from mtpjax.generate.config import GenerateConfig
from mtpjax.generate.manifest import summary_markdown
from mtpjax.generate.pipeline import _Run, generation_warnings
from mtpjax.oracles import LennardJones, label
from mtpjax.oracles.label import MAX_ENERGY_ABOVE_REFERENCE, MAX_FORCE, MAX_STRESS_GPA, implausibility, screen
from mtpjax.units import EV_PER_A3_TO_GPA
from mtpjax.verify.report import verification_warnings


def _labelled(energy_per_atom, fmax=0.1, stress_gpa=1.0, n=2, name="x"):
    a = bulk("Ar", "fcc", a=5.26, cubic=True)[:n]
    f = np.zeros((n, 3))
    f[0, 0] = fmax
    a.info["id"] = name
    a.calc = SinglePointCalculator(a, energy=energy_per_atom * n, forces=f,
                                   stress=np.full(6, stress_gpa / EV_PER_A3_TO_GPA))
    return a


def test_rule_bounds_and_relative_energy():
    ref = -3.36  # any oracle's zero: the rule is relative to its ground state
    assert implausibility(_labelled(ref + 0.999 * MAX_ENERGY_ABOVE_REFERENCE), ref) is None
    assert "above the oracle's ground state" in implausibility(_labelled(ref + 1.001 * MAX_ENERGY_ABOVE_REFERENCE), ref)
    # the same absolute energy is fine for an oracle whose zero lies 2000 eV/atom higher (e.g. a DFT code's)
    assert implausibility(_labelled(ref + 1500.0), ref + 2000.0) is None
    assert implausibility(_labelled(1e6), None) is None  # no reference: only forces, stress, finiteness
    assert "force" in implausibility(_labelled(0.0, fmax=-1.01 * MAX_FORCE), ref)
    assert implausibility(_labelled(0.0, fmax=0.99 * MAX_FORCE), ref) is None
    assert "stress" in implausibility(_labelled(0.0, stress_gpa=-1.01 * MAX_STRESS_GPA), ref)
    assert implausibility(_labelled(0.0, stress_gpa=0.99 * MAX_STRESS_GPA), ref) is None
    res = screen([_labelled(0.0, name="ok"), _labelled(1.5e6, name="huge"), _labelled(np.nan, name="nan")], ref)
    assert not hasattr(res[0], "reason")
    assert (res[1].name, res[1].reason, res[2].name, res[2].reason) == ("huge", "implausible", "nan", "non_finite")


def _cells():
    good = bulk("Ar", "fcc", a=5.26)  # argon near its LJ equilibrium
    squeezed = bulk("Ar", "fcc", a=1.5)  # d_nn = 1.06 Å = 0.31 σ: ~1e5 eV/atom, far beyond any real material
    for k, a in enumerate((good, squeezed)):
        a.info["id"] = f"TRIAX/c{k}"
    return [good, squeezed]


def test_label_discards_huge_lj_energies_with_the_value():
    lj = LennardJones()
    ref = -0.08  # about argon's LJ ground state (eV/atom)
    good, squeezed = _cells()
    want = ASELJ(epsilon=float(lj.epsilon), sigma=float(lj.sigma), rc=float(lj.cutoff))  # independent reference for the reported value
    s = squeezed.copy()
    s.calc = want
    e_sq = s.get_potential_energy() / len(s)
    assert e_sq - ref > MAX_ENERGY_ABOVE_REFERENCE
    out = label(lj, [good, squeezed], reference_energy=ref)
    g = good.copy()
    g.calc = want  # ASE shifts each pair by -u(rc) = 1.7e-4 eV: ~40 pairs per atom within rc
    assert out[0].get_potential_energy() == pytest.approx(g.get_potential_energy(), abs=1e-2)
    f = out[1]
    assert (f.name, f.reason) == ("TRIAX/c1", "implausible")
    shown = float(f.message.split("energy ")[1].split(" eV/atom")[0])
    assert shown == pytest.approx(e_sq, rel=1e-5)
    alone = label(lj, [squeezed])[0]  # without a reference the energy rule is off, but its stress is absurd too
    assert alone.reason == "implausible" and "stress" in alone.message


def test_generator_counts_and_lists_implausible(tmp_path):
    lj = LennardJones()
    cfg = GenerateConfig(element="Ar", oracle={"type": "lj"})
    r = _Run(cfg, tmp_path, lj, None, False)
    try:
        r.reference_energy = -0.08
        r.stats["TRIAX"] = {"selected": True, "attempted": 2, "rejected": {}}
        with pytest.warns(UserWarning, match="1 of 2 structures discarded as implausible"):
            ok = r.label("TRIAX", _cells())
    finally:
        r.close()
    assert [a.info["id"] for a in ok] == ["TRIAX/c0"]
    assert r.stats["TRIAX"]["label_failures"] == {"implausible": 1}
    assert r.stats["TRIAX"]["structures"] == 1
    (rej,) = r.rejected
    assert (rej["stage"], rej["id"], rej["reason"]) == ("label TRIAX", "TRIAX/c1", "implausible")
    manifest = {"element": "Ar", "oracle": {"name": "LJ"}, "seed": 0, "min_distance": 2.2,
                "reference": {"omega0": 36.4, "a": 3.7, "c_over_a": 1.63},
                "subsets": {"TRIAX": r.stats["TRIAX"], "EVERYTHING": {"structures": 1, "atoms": 1}},
                "timings": {}, "implausible": r.rejected}
    manifest["warnings"] = generation_warnings(manifest)
    assert manifest["warnings"] and "1 structures discarded as implausible" in manifest["warnings"][0]
    md = summary_markdown(manifest)
    assert md.index("WARNINGS") < md.index("| subset |")
    assert "| label TRIAX | TRIAX/c1 |" in md and "implausible 1" in md


def _result(e_mev):
    return {"train": {"all": {"energy": e_mev, "forces": 0.2, "stress": 1.0}}, "test": {"all": {"energy": float("nan")}}}


def test_fit_and_verify_warnings():
    assert fit_warnings(_result(5.0)) == []
    (w,) = fit_warnings(_result(3.9e6))  # 3.9 keV/atom, the fit
    assert "3900 eV/atom" in w and f"> {BROKEN_ENERGY_RMSE:g} eV/atom" in w
    assert verification_warnings([{"test": "eos", "quantity": "energy RMSE hcp ±10", "unit": "meV/atom", "error": 12.0}]) == []
    (v,) = verification_warnings([{"test": "eos", "quantity": "energy RMSE hcp ±80", "unit": "meV/atom", "error": 2.5e3}])
    assert "eos" in v and "2500 meV/atom" in v


def test_report_shows_warnings_at_the_top(tmp_path):
    from mtpjax.pipeline import config_from_dict
    from mtpjax.study_report import report_markdown

    cfg = config_from_dict({"name": "al"})
    (tmp_path / "fit").mkdir()
    res = {**_result(3.9e6), "level": 8, "n_basis": 10, "cutoff": 5.0, "rmin": 2.0, "seed": 0, "steps": 3,
           "wall_s": 1.0, "n_train": 10, "n_test": 1}
    (tmp_path / "fit" / "result.json").write_text(json.dumps(res))
    md = report_markdown(cfg, tmp_path, {"generate": None, "fit": None, "verify": None, "report": None})
    assert "WARNINGS" in md and "fit: train energy RMSE 3900 eV/atom" in md
    assert md.index("WARNINGS") < md.index("## Stages") < md.index("## Fit")
    (tmp_path / "fit" / "result.json").write_text(json.dumps({**res, **_result(4.0)}))
    assert "WARNINGS" not in report_markdown(cfg, tmp_path, {"generate": None, "fit": None, "verify": None, "report": None})


def test_run_log_carries_warnings(tmp_path, capsys):
    from mtpjax.pipeline import _warn, read_log

    _warn(tmp_path, "fit", fit_warnings(_result(3.9e6)), None)
    assert read_log(tmp_path) == [("fit", "WARNING")]
    assert "3900 eV/atom" in (tmp_path / "stages.log").read_text() and "WARNING" in capsys.readouterr().err


def test_energy_bound_in_the_oracles_own_scale():
    """With B0·Ω0 known the bound is 8 B0·Ω0 (Al_mm.eam.fs: 7.33 eV/atom -> 58.6 eV/atom), within [50, 1000] eV/atom,
    and the absolute bound when the scale is missing or meaningless."""
    from mtpjax.oracles.label import MAX_ENERGY_IN_B0_OMEGA0, energy_limit

    assert energy_limit(None) == MAX_ENERGY_ABOVE_REFERENCE
    assert energy_limit(float("nan")) == energy_limit(-1.0) == MAX_ENERGY_ABOVE_REFERENCE
    assert energy_limit(7.33) == pytest.approx(MAX_ENERGY_IN_B0_OMEGA0 * 7.33)
    assert energy_limit(1e6) == MAX_ENERGY_ABOVE_REFERENCE
    assert energy_limit(0.66) == 50.0  # Lennard-Jones argon's B0·Ω0: the floor
    ref = -3.38
    assert "limit 58.64 eV/atom" in implausibility(_labelled(ref + 63.4), ref, 7.33)  # the Al SHEAR cells: 63-97 eV/atom
    assert implausibility(_labelled(ref + 20.6), ref, 7.33) is None  # a RANDSPG cell at Ω0 with a close contact
    bad = screen([_labelled(ref + 97.0, name="shear"), _labelled(ref + 1.0, name="ok")], ref, 7.33)
    assert [getattr(r, "reason", None) for r in bad] == ["implausible", None]


def test_reference_bulk_modulus_is_the_voigt_average_of_the_published_elastic_constants():
    """The generator's B0 (E(V) curvature under uniform strain, positions scaled: the Voigt average) of the Sun 2006
    EAM against the Voigt average of its elastic constants in ../shared's reference_properties.csv (ASE and LAMMPS):
    (2 C11 + C33 + 2 C12 + 4 C13) / 9 = 35.90 GPa, within 1 %; energy_scale = B0·Ω0."""
    import csv

    from conftest import SHARED, need
    from mtpjax.generate.reference import hcp_reference
    from mtpjax.oracles import make_potential

    rows = {r["name"]: r for r in csv.DictReader(open(need(SHARED / "data" / "potentials" / "reference_properties.csv")))}
    c = {k: float(rows["Sun2006_EAM_lammps"][k]) for k in ("C11", "C12", "C13", "C33")}
    b_voigt = (2 * c["C11"] + c["C33"] + 2 * c["C12"] + 4 * c["C13"]) / 9
    ref = hcp_reference(make_potential(str(need(SHARED / "data" / "potentials" / "Mg_mm.eam.fs"))), "Mg")
    assert ref["bulk_modulus_GPa"] == pytest.approx(b_voigt, rel=0.01)
    assert ref["energy_scale"] == pytest.approx(ref["bulk_modulus_GPa"] / EV_PER_A3_TO_GPA * ref["omega0"], rel=1e-12)
