"""The generator's reference is the oracle's own ground state (mtpjax.generate.reference.ground_state_reference):
with the built-in Zhou 2004 EAMs W is bcc, Al fcc and Mg hcp, Ω0 agrees with an independent ASE relaxation of that
phase (mtpjax's ASE calculator for the oracle, FrechetCellFilter + BFGS), and Mg's reference is the former hcp-only
one to the last digit (so Mg runs keep every stage's checkpoint key)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mtpjax.generate.manifest import summary_markdown
from mtpjax.generate.reference import ground_state_reference, nn_distance
from mtpjax.oracles import get_calculator, make_oracle
from mtpjax.units import EV_PER_A3_TO_GPA

#: Element -> (its ground state in the Zhou EAM, a starting lattice constant in Å for the ASE relaxation).
CASES = {"W": ("bcc", 3.20), "Al": ("fcc", 4.00), "Mg": ("hcp", 3.25)}


@pytest.fixture(scope="module")
def refs():
    """{element: (its Zhou oracle, its reference)}."""
    out = {}
    for el in CASES:
        oracle = make_oracle({"type": "zhou", "element": el})
        out[el] = (oracle, ground_state_reference(oracle, el))
    return out


def ase_volume(oracle, el, phase, a0):
    """Ω0 (Å³/atom) of ``phase`` relaxed by ASE (BFGS on FrechetCellFilter, fmax 1e-5 eV/Å) with the oracle's ASE
    calculator, from a strained start (a0; hcp at c/a 1.6)."""
    from ase.build import bulk
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = bulk(el, phase, a=a0, c=1.6 * a0) if phase == "hcp" else bulk(el, phase, a=a0)
    atoms.calc = get_calculator(oracle)
    opt = BFGS(FrechetCellFilter(atoms), logfile=None)
    assert opt.run(fmax=1e-5, steps=500)
    return atoms.get_volume() / len(atoms)


@pytest.mark.parametrize("el", list(CASES))
def test_ground_state_and_volume_match_ase(refs, el):
    oracle, ref = refs[el]
    phase, a0 = CASES[el]
    assert ref["phase"] == phase
    e = ref["phase_energies"]
    assert ref["energy"] == e[phase] == min(v for v in e.values() if v is not None)
    assert abs(ref["omega0"] - ase_volume(oracle, el, phase, a0)) < 1e-3
    assert ref["energy_scale"] == pytest.approx(ref["bulk_modulus_GPa"] / EV_PER_A3_TO_GPA * ref["omega0"], rel=1e-6)
    # the nearest-neighbour distance is that of the ground-state lattice at Ω0
    if phase == "fcc":
        assert ref["nn_distance"] == pytest.approx((4 * ref["omega0"]) ** (1 / 3) / math.sqrt(2), rel=1e-9)
    elif phase == "bcc":
        assert ref["nn_distance"] == pytest.approx((2 * ref["omega0"]) ** (1 / 3) * math.sqrt(3) / 2, rel=1e-9)
    # HESSIAN's hcp keys are still those of the relaxed hcp (a metastable phase for W and Al)
    assert ref["hcp_relaxed"]
    assert ref["omega0"] != pytest.approx(math.sqrt(3) / 4 * ref["a"] ** 3 * ref["c_over_a"], rel=1e-3) or phase == "hcp"


def test_mg_reference_unchanged(refs):
    """Mg (hcp): every value of the former hcp-only reference (equilibrium of hcp alone, scanned) to 1e-10."""
    from mtpjax.relax import equilibrium, hex_parameters

    oracle, ref = refs["Mg"]
    r = equilibrium(oracle, ["hcp"], "Mg", scan=True)["hcp"]
    hp = hex_parameters(r.atoms)
    a, c = hp["a"], hp["a"] * hp["c_over_a"]
    assert abs(ref["omega0"] - hp["volume"]) < 1e-10
    assert abs(ref["a"] - a) < 1e-10 and abs(ref["c"] - c) < 1e-10
    assert abs(ref["nn_distance"] - min(a, np.sqrt(a * a / 3 + c * c / 4))) < 1e-10
    assert abs(ref["energy"] - r.energy_per_atom) < 1e-10
    assert abs(ref["omega0"] - 23.093236707802838) < 1e-6  # measured with the hcp-only reference before the change
    assert nn_distance("hcp", hp["volume"], hp["c_over_a"]) == pytest.approx(ref["nn_distance"], rel=1e-9)


def test_summary_names_the_phase(refs):
    _, ref = refs["W"]
    m = {"reference": ref, "element": "W", "oracle": {"name": "zhou W"}, "seed": 1, "min_distance": 1.6,
         "subsets": {}, "timings": {}}
    text = summary_markdown(m)
    assert f"Ω0 = {ref['omega0']:.4f} Å³/atom of the oracle's ground state bcc" in text
