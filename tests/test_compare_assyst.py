"""scripts/compare_assyst.py: the per-stage statistics on a hand-made set against hand-computed values, and the
facts about assyst's perturbations that docs/study/assyst.md states (those parts need assyst itself)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("compare_assyst", ROOT / "scripts" / "compare_assyst.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _labelled(atoms, energy, fmax=0.0):
    f = np.zeros((len(atoms), 3))
    f[0, 1] = -fmax
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=f, stress=np.zeros(6))
    return atoms


def _hand_made():
    """Simple cubic (1 atom, a = 3 Å), bcc (2 atoms, a = 3.2 Å), fcc (4 atoms, a = 4 Å) Mg, with energies."""
    sc = _labelled(Atoms("Mg", cell=np.eye(3) * 3.0, pbc=True), -1.0)
    bcc = _labelled(Atoms("Mg2", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=np.eye(3) * 3.2, pbc=True), -2.4, 0.3)
    fcc = _labelled(Atoms("Mg4", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                          cell=np.eye(3) * 4.0, pbc=True), -6.0)
    return [sc, bcc, fcc]


def test_structure_rows_by_hand():
    m = _script()
    rows = [m.structure_row(a) for a in _hand_made()]
    assert [r["n_atoms"] for r in rows] == [1, 2, 4]
    np.testing.assert_allclose([r["volume"] for r in rows], [27.0, 3.2**3 / 2, 16.0], rtol=1e-12)
    np.testing.assert_allclose([r["energy"] for r in rows], [-1.0, -1.2, -1.5], rtol=1e-12)
    np.testing.assert_allclose([r["d_min"] for r in rows], [3.0, 3.2 * np.sqrt(3) / 2, 4.0 / np.sqrt(2)], rtol=1e-10)
    np.testing.assert_allclose([r["fmax"] for r in rows], [0.0, 0.3, 0.0])
    assert [r["spacegroup"] for r in rows] == [221, 229, 225]  # Pm-3m, Im-3m, Fm-3m


def test_stage_statistics_by_hand():
    m = _script()
    p1 = _labelled(Atoms("Mg3", positions=[[0, 0, 0], [1.1, 0.3, 0.2], [0.4, 2.0, 1.3]],
                         cell=[[4.0, 0, 0], [0.3, 4.4, 0], [0.2, 0.5, 5.1]], pbc=True), -3.0)
    s = m.stage_statistics([m.structure_row(a) for a in _hand_made() + [p1]])
    v = np.array([27.0, 3.2**3 / 2, 16.0, 4.0 * 4.4 * 5.1 / 3])
    assert s["structures"] == 4 and s["atoms"] == 10
    assert s["n_atoms"] == {1: 1, 2: 1, 3: 1, 4: 1}
    assert s["volume"]["mean"] == pytest.approx(v.mean()) and s["volume"]["std"] == pytest.approx(v.std())
    assert s["volume"]["min"] == pytest.approx(16.0) and s["volume"]["max"] == pytest.approx(4.0 * 4.4 * 5.1 / 3)
    assert s["energy"]["mean"] == pytest.approx((-1.0 - 1.2 - 1.5 - 1.0) / 4)
    assert s["energy"]["median"] == pytest.approx(-1.1)
    assert s["spacegroups"] == 4 and s["p1_percent"] == pytest.approx(25.0)
    assert s["systems"] == {"cubic": 3, "triclinic": 1}
    table = m.statistics_table({"TEST": s})
    assert "| TEST | 4 | 10 |" in table and f"{v.mean():.2f} ± {v.std():.2f}" in table


def test_unlabelled_and_isolated():
    """No label: energy NaN (left out of the statistics); nothing within the search radius: d_min = inf."""
    m = _script()
    r = m.structure_row(Atoms("Mg", cell=np.eye(3) * 9.0, pbc=True))
    assert np.isnan(r["energy"]) and np.isinf(r["d_min"])
    s = m.stage_statistics([r, m.structure_row(_hand_made()[0])])
    assert s["energy"]["mean"] == pytest.approx(-1.0) and s["d_min"]["max"] == pytest.approx(3.0)


def test_figure(tmp_path):
    m = _script()
    rows = [m.structure_row(a) for a in _hand_made()]
    path = m.plot_statistics({"all": {"a": rows, "b": rows[:2]}}, tmp_path / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shared_numbers():
    m = _script()
    n = m.load_numbers()
    assert n["element"] == "Mg" and n["space_groups"] == (168, 230) and n["n_atoms"] == (1, 4) and n["copies"] == 5


def test_assyst_perturbations_as_documented():
    """RandomChoice(a, b, chance) picks b with probability chance (the notebook's 'hydro' is a, so shear is drawn 70 %
    of the time); Stretch(hydro, shear) puts 1 ± U(1e-3, hydro) on the diagonal and ± U(1e-3, shear) off it."""
    pytest.importorskip("assyst")
    from assyst.perturbations import RandomChoice, Stretch

    cube = Atoms("Mg", cell=np.eye(3) * 3.0, pbc=True)
    hydro, shear = Stretch(hydro=0.8, shear=0.05, rng=1), Stretch(hydro=0.05, shear=0.2, rng=2)
    choice = RandomChoice(hydro, shear, 0.7, rng=3)
    picks = [choice(cube.copy()).info["perturbation"] for _ in range(2000)]
    share = np.mean([p.startswith("stretch(hydro=0.05") for p in picks])
    assert share == pytest.approx(0.7, abs=0.04)
    F = np.array([Stretch(hydro=0.8, shear=0.05, rng=k)(cube.copy()).cell.array / 3.0 for k in range(300)])
    diag = np.abs(F[:, [0, 1, 2], [0, 1, 2]] - 1)
    off = np.abs(F[:, [0, 0, 1], [1, 2, 2]])
    assert diag.min() >= 1e-3 and diag.max() <= 0.8 and diag.max() > 0.75
    assert off.min() >= 1e-3 and off.max() <= 0.05 and np.allclose(F, np.transpose(F, (0, 2, 1)))
