"""The oracles' interaction range (:func:`mtpjax.oracles.interaction_range`) and the run's default fit cutoff that
follows it (:func:`mtpjax.pipeline.fit_cutoff`, :func:`mtpjax.pipeline.resolve_fit_cutoff`).

Independent references: dimers evaluated through the full calculator path (neighbour lists, site energies) and
through ASE's own EAM calculator reading the shared potential files (Mg_mm.eam.fs; Mg_Zhou2004.eam.alloy, made by
LAMMPS's create.f), the cutoff in the file header as ASE reads it, and the analytic Lennard-Jones root.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from mtpjax.calculator import PotentialCalculator
from mtpjax.oracles import RANGE_TOL, ZHOU2004, LennardJones, ZhouEAM, interaction_range, make_oracle
from mtpjax.pipeline import DEFAULT_FIT_CUTOFF, RunConfigError, config_from_dict, fit_cutoff, load_config, stage_hashes

POTENTIALS = Path(__file__).parents[2] / "shared" / "data" / "potentials"
ROOT = Path(__file__).parents[1]


def _binding(calc, r: float, element: str) -> float:
    """E(pair at r) - E(pair 20 Å apart), eV: two atoms in a periodic 40 Å box."""
    def energy(x):
        d = Atoms(f"{element}2", positions=[[0, 0, 0], [x, 0, 0]], cell=[40.0] * 3, pbc=True)
        d.calc = calc
        return d.get_potential_energy()

    return energy(r) - energy(20.0)


def _jax_calc(oracle, element):
    return PotentialCalculator(oracle, species=[element], out_of_domain="ignore")


# ---------------------------------------------------------------------------------------------- the range


@pytest.mark.parametrize("element", ["W", "Mg"])
def test_zhou_range_against_dimers(element):
    """Just beyond the 1 meV range a dimer is bound by <= 1 meV, just inside by more; the hard range is create.f's
    cutoff sqrt(5) re, beyond which a pair contributes exactly nothing."""
    o = ZhouEAM(element)
    rng = interaction_range(o)
    calc = _jax_calc(o, element)
    assert abs(_binding(calc, rng + 0.02, element)) <= RANGE_TOL < abs(_binding(calc, rng - 0.02, element))
    hard = interaction_range(o, tol=0.0)
    assert hard == pytest.approx(math.sqrt(5.0) * ZHOU2004[element]["re"], abs=1e-12) == o.cutoff
    assert abs(_binding(calc, hard + 1e-3, element)) < 1e-12
    assert abs(_binding(calc, hard - 0.05, element)) > 1e-12
    if element == "W":  # docs/study/stiff_elements.md: bound by > 1 meV up to 4.35 Å, not at 4.40 (0.05 Å steps)
        assert 4.35 < rng <= 4.40


def test_zhou_range_matches_lammps_tabulation_read_by_ase():
    """zhou:Mg's range, checked with ASE's EAM calculator on LAMMPS create.f's Mg_Zhou2004.eam.alloy."""
    from ase.calculators.eam import EAM

    path = POTENTIALS / "Mg_Zhou2004.eam.alloy"
    rng = interaction_range(ZhouEAM("Mg"))
    ase_calc = EAM(potential=str(path))
    assert abs(_binding(ase_calc, rng + 0.02, "Mg")) <= RANGE_TOL < abs(_binding(ase_calc, rng - 0.02, "Mg"))
    assert interaction_range(make_oracle(str(path))) == pytest.approx(rng, abs=2e-3)


def test_tabulated_eam_range_against_ase():
    """Mg_mm.eam.fs: the hard range is the header's cutoff (7.5 Å, as ASE reads it); the 1 meV range is checked
    with ASE's EAM calculator."""
    from ase.calculators.eam import EAM

    path = POTENTIALS / "Mg_mm.eam.fs"
    header = path.read_text().splitlines()[4].split()  # nrho drho nr dr cutoff
    o = make_oracle(str(path))
    ase_calc = EAM(potential=str(path))
    assert interaction_range(o, tol=0.0) == float(header[4]) == ase_calc.cutoff == 7.5
    assert abs(_binding(ase_calc, 7.5 + 1e-3, "Mg")) < 1e-12 < abs(_binding(ase_calc, 7.45, "Mg"))
    rng = interaction_range(o)
    assert 5.5 < rng < 7.5
    assert abs(_binding(ase_calc, rng + 0.02, "Mg")) <= RANGE_TOL < abs(_binding(ase_calc, rng - 0.02, "Mg"))


def test_lj_range_analytic():
    """Unshifted LJ: hard range = its cutoff; 1 meV range = the root of |4 eps ((s/r)^12 - (s/r)^6)| = 1 meV."""
    from scipy.optimize import brentq

    o = LennardJones()  # argon, 2.5 sigma = 8.5 Å, unshifted
    eps, sig = float(o.epsilon), float(o.sigma)
    assert interaction_range(o, tol=0.0) == o.cutoff == 8.5
    root = brentq(lambda r: 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6) + RANGE_TOL, 1.2 * sig, 2.5 * sig)
    assert interaction_range(o) == pytest.approx(root, abs=1.5e-3)
    calc = _jax_calc(o, "Ar")
    assert abs(_binding(calc, 8.5 + 1e-3, "Ar")) < 1e-12 < abs(_binding(calc, 8.45, "Ar"))
    assert interaction_range(LennardJones(cutoff=5.0)) == 5.0  # bound by > 1 meV at the cutoff: the range is the cutoff


def test_alloy_range_covers_every_pair():
    """Zhou W-Fe: the range is the farthest of the W-W, Fe-Fe and W-Fe dimers; the mixed dimer, evaluated through
    the calculator, is bound by <= 1 meV beyond it; an alloy run config resolves from it."""
    o = ZhouEAM(["W", "Fe"])
    rng = interaction_range(o)
    assert rng >= max(interaction_range(ZhouEAM("W")), interaction_range(ZhouEAM("Fe")))
    calc = PotentialCalculator(o, species=["W", "Fe"], out_of_domain="ignore")

    def mixed(x):
        d = Atoms("WFe", positions=[[0, 0, 0], [x, 0, 0]], cell=[40.0] * 3, pbc=True)
        d.calc = calc
        return d.get_potential_energy()

    assert abs(mixed(rng + 0.02) - mixed(20.0)) <= RANGE_TOL
    assert config_from_dict({"generate": {"elements": ["W", "Fe"]}}).fit.cutoff == fit_cutoff(rng) == 4.5


def test_ase_oracle_range_unknown():
    assert interaction_range(make_oracle("ase:ase.calculators.emt.EMT")) is None


# ---------------------------------------------------------------------------------------------- the default cutoff


def test_fit_cutoff_rule():
    assert fit_cutoff(4.384) == 4.5 and fit_cutoff(4.5) == 4.5 and fit_cutoff(3.967) == 4.0
    assert fit_cutoff(6.46) == fit_cutoff(5.64) == fit_cutoff(None) == DEFAULT_FIT_CUTOFF == 5.5
    assert fit_cutoff(5.01) == 5.5 and fit_cutoff(4.9) == 5.0


def _toml_config(tmp_path, element, oracle: str, fit: str = ""):
    p = tmp_path / f"{element}.toml"
    p.write_text(f'[generate]\nelement = "{element}"\n\n[generate.oracle]\n{oracle}\n\n[fit]\nlevel = 8\n{fit}\n')
    return load_config(p)


def test_run_config_resolves_per_oracle(tmp_path):
    w = _toml_config(tmp_path, "W", 'type = "zhou"')
    mg = _toml_config(tmp_path, "Mg", 'type = "zhou"')
    cu = _toml_config(tmp_path, "Cu", 'type = "ase"\ncalculator = "ase.calculators.emt.EMT"')
    tab = _toml_config(tmp_path, "Mg", f'type = "eam"\nfile = "{POTENTIALS / "Mg_mm.eam.fs"}"')
    assert (w.fit.cutoff, mg.fit.cutoff, cu.fit.cutoff, tab.fit.cutoff) == (4.5, 5.5, 5.5, 5.5)
    assert "4.38 Å" in w.fit.cutoff_source and "unknown" in cu.fit.cutoff_source
    user = _toml_config(tmp_path, "W", 'type = "zhou"', "cutoff = 5.0")
    assert user.fit.cutoff == 5.0 and user.fit.cutoff_source == "config"


def test_resolved_cutoff_in_hash_and_checks(tmp_path):
    """The hash covers the resolved value: leaving the key out hashes like writing it (so the old 5.5 Å default's
    runs stay cached for Mg), reloading hashes alike, and r_min is checked against the resolved cutoff."""
    def hashes(element, fit=None):
        return stage_hashes(config_from_dict({"generate": {"element": element}, "fit": fit or {}}))

    assert hashes("W") == hashes("W") == hashes("W", {"cutoff": 4.5})
    assert hashes("W")["fit"] != hashes("W", {"cutoff": 5.5})["fit"]
    assert hashes("Mg") == hashes("Mg", {"cutoff": 5.5})
    with pytest.raises(RunConfigError, match=r"fit\.rmin: must be below the cutoff \(4\.5 Å") as err:
        config_from_dict({"generate": {"element": "W"}, "fit": {"rmin": 4.7}})
    assert err.value.key == "fit.rmin"
    assert config_from_dict({"generate": {"element": "Mg"}, "fit": {"rmin": 4.7}}).fit.cutoff == 5.5
    with pytest.raises(RunConfigError) as err:
        config_from_dict({"generate": {"element": "Mg", "oracle": {"type": "eam", "file": str(tmp_path / "no.eam.fs")}}})
    assert err.value.key == "generate.oracle"


def test_quickstart_w_uses_the_default():
    cfg = load_config(ROOT / "configs" / "quickstart_w.toml")
    assert cfg.fit.cutoff == 4.5
