"""Physics tests of ``mtpjax verify`` (eos, strain, elastic, vacancy, planar); their FIRE relaxations are tested in
``test_relax.py``.

The key test reproduces the reference table's ``Sun2006_EAM_ase`` row (ASE/LAMMPS) with the Sun 2006 EAM as the
potential: a, c/a to 0.001, C_ij within 1 %, the relaxed 4×4×3 vacancy within 0.01 eV, γ(0001) within 0.01 J/m².
"""
from __future__ import annotations

import csv
import math

import jax
import pytest

from conftest import SHARED, need

jax.config.update("jax_enable_x64", True)

SUN = SHARED / "data" / "potentials" / "Mg_mm.eam.fs"
REFERENCE = SHARED / "data" / "potentials" / "reference_properties.csv"
MTP16 = SHARED / "bench" / "fit" / "mlip3_l16_rc6p5.almtp"


@pytest.fixture(scope="module")
def sun():
    from mtpjax.oracles import TabulatedEAM

    return TabulatedEAM.from_file(need(SUN))


@pytest.fixture(scope="module")
def zhou():
    from mtpjax.oracles import ZhouEAM

    return ZhouEAM("Mg")


@pytest.fixture(scope="module")
def reference():
    with open(need(REFERENCE)) as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    return {k: float(v) for k, v in rows["Sun2006_EAM_ase"].items() if k != "name"}


# ------------------------------------------------------------------------------------------------------------------
# the reference row


def test_sun_eam_reproduces_reference_row(sun, reference):
    from mtpjax.verify import elastic, planar, vacancy

    props, fails, _ = elastic.properties(sun, "Mg", eos_points=0)
    assert not fails
    assert abs(props["hcp_a"] - reference["hcp_a"]) <= 1e-3
    assert abs(props["hcp_c_over_a"] - reference["hcp_c_over_a"]) <= 1e-3
    assert abs(props["hcp_V0"] - reference["hcp_V0"]) <= 2e-3
    assert abs(props["hcp_E0"] - reference["hcp_Ecoh"]) <= 1e-3
    for c in ("C11", "C12", "C13", "C33", "C44"):
        assert props[c] == pytest.approx(reference[c], rel=0.01), c
    for p in ("fcc", "bcc", "dhcp"):
        assert props[f"dE_{p}_hcp_meV"] == pytest.approx(reference[f"dE_{p}_hcp_meV"], abs=0.01), p

    vac, fails, rec = vacancy.formation_energies(sun, "Mg", phases=(), hcp443=True, fmax=1e-4, smax=1e-4)
    assert not fails and rec["hcp 4x4x3"]["converged"]
    assert vac["hcp 4x4x3"]["n_sites"] == 96
    assert abs(vac["hcp 4x4x3"]["Ef_eV"] - reference["Evac_relaxed"]) <= 0.01

    opts = {**planar.DEFAULTS, "surfaces": ("0001",), "n_planes": 12, "gsf_directions": (), "gb": False,
            "decohesion_points": 0}
    pl, fails, _ = planar.properties(sun, "Mg", opts)
    assert not fails
    assert abs(pl["surface_J_m2"]["0001"] - reference["gamma_0001_J_m2"]) <= 0.01


# ------------------------------------------------------------------------------------------------------------------
# elements (the relaxations themselves are tested in test_relax.py)


def test_relax_rejects_mismatched_elements(sun, zhou):
    from mtpjax.errors import MtpjaxError
    from mtpjax.oracles import ZhouEAM
    from mtpjax.verify import eos
    from mtpjax.verify.prototypes import element_of

    assert element_of(sun, zhou) == "Mg"
    with pytest.raises(MtpjaxError, match="different elements"):
        eos.run(sun, ZhouEAM("Al"), "unused")
    with pytest.raises(MtpjaxError, match="not among"):
        element_of(sun, zhou, element="Al")

    class NotJax:
        species = ("Mg",)

    with pytest.raises(MtpjaxError, match="not a JAX potential"):
        element_of(sun, NotJax())


# ------------------------------------------------------------------------------------------------------------------
# run() of each module


def _check_run(out, tmp_path, nonzero=True):
    assert set(out) == {"metrics", "figures", "rows", "failures"}
    assert out["failures"] == []
    assert out["figures"] and all((tmp_path / p).exists() or __import__("pathlib").Path(p).exists() for p in out["figures"])
    errors = [r["error"] for r in out["rows"] if r["error"] is not None]
    assert errors and all(math.isfinite(e) for e in errors)
    if nonzero:
        assert any(abs(e) > 1e-6 for e in errors)
    import json

    json.dumps(out["metrics"])  # JSON-able
    return errors


def test_eos_of_a_potential_against_itself_is_exact(sun, tmp_path):
    from mtpjax.verify import eos

    out = eos.run(sun, sun, tmp_path, points=7)
    errors = _check_run(out, tmp_path, nonzero=False)
    assert all(e == 0.0 for e in errors)
    assert out["metrics"]["rmse_meV"]["10%"]["all"] == 0.0
    assert out["metrics"]["omega0"] == pytest.approx(22.7617, abs=1e-3)


def test_eos_and_strain_zhou_vs_sun(zhou, sun, tmp_path):
    from mtpjax.verify import eos, strain

    out = eos.run(zhou, sun, tmp_path / "eos", quick=True)
    _check_run(out, tmp_path)
    assert 1.0 < out["metrics"]["rmse_meV"]["10%"]["all"] < 100.0
    out = strain.run(zhou, sun, tmp_path / "strain", quick=True)
    _check_run(out, tmp_path)
    assert out["metrics"]["rmse_meV"]["fcc"]["xy"] > 0


@pytest.mark.slow
def test_elastic_zhou_vs_sun(zhou, sun, tmp_path):
    from mtpjax.verify import elastic

    out = elastic.run(zhou, sun, tmp_path, quick=True)
    _check_run(out, tmp_path)
    m = out["metrics"]
    assert m["potential"]["hcp_a"] == pytest.approx(3.199, abs=2e-3)  # Zhou's row of the reference table
    assert m["error"]["C11"] < -10.0


@pytest.mark.slow
def test_vacancy_zhou_vs_sun(zhou, sun, tmp_path):
    from mtpjax.verify import vacancy

    out = vacancy.run(zhou, sun, tmp_path, quick=True)
    _check_run(out, tmp_path)
    assert out["metrics"]["oracle"]["hcp 2x2x2"]["Ef_eV"] > 0.5


@pytest.mark.slow
def test_planar_zhou_vs_sun(zhou, sun, tmp_path):
    from mtpjax.verify import planar

    out = planar.run(zhou, sun, tmp_path, quick=True)
    _check_run(out, tmp_path)
    m = out["metrics"]
    assert m["potential"]["surface_J_m2"]["0001"] == pytest.approx(0.375, abs=0.01)  # Zhou's row of the table
    assert m["oracle"]["surface_J_m2"]["10-10A"] < m["oracle"]["surface_J_m2"]["10-10B"]
    g = m["oracle"]["gsf"]["10-10"]
    assert g["sf_t_over_period"] == pytest.approx(1 / 3) and 0 < g["sf_J_m2"] < g["usf_J_m2"]
    assert 0.1 < m["oracle"]["gb"]["gamma_J_m2"] < 1.0


@pytest.mark.slow
def test_mtp_level16_relaxes(sun, tmp_path):
    """The MLIP-3 level-16 MTP through the batched relaxation (custom batching of the packed evaluation)."""
    from mtpjax.model import load_mtp
    from mtpjax.verify import vacancy

    mtp = load_mtp(need(MTP16), ["Mg"])
    out = vacancy.run(mtp, sun, tmp_path, phases=("hcp", "bcc"), quick=True)
    _check_run(out, tmp_path)
