"""Alloys (issue 14 item 5): the multi-element generation recipe, RANDSPG over compositions, one-element generation
unchanged, and the alloy verification's formation energy against a hand computation with the oracle through ASE."""
from __future__ import annotations

import numpy as np
import pytest

from mtpjax.errors import ConfigError
from mtpjax.generate.config import (GenerateConfig, RandspgConfig, composition_code, compositions_of, config_from_dict,
                                    vegard_volume)
from mtpjax.generate.randspg import generate_one, tasks


# ------------------------------------------------------------------------------------------------- the config
def test_alloy_config_parses():
    cfg = config_from_dict({"elements": ["Al", "Mg"], "randspg": {"n_atoms": [1, 3]}})
    assert cfg.is_alloy and cfg.species == ("Al", "Mg")
    assert cfg.element == "Al"  # element left out: the first of elements (MLIP type 0)
    assert cfg.oracle_spec() == {"type": "zhou", "elements": ["Al", "Mg"]}
    assert {"elements", "composition_step", "compositions"} <= set(cfg.to_dict())
    # every split of 1..3 atoms over two elements: 2 + 3 + 4
    assert compositions_of(cfg) == [(1, 0), (0, 1), (2, 0), (1, 1), (0, 2), (3, 0), (2, 1), (1, 2), (0, 3)]
    step = config_from_dict({"elements": ["Cu", "Ni"], "composition_step": 0.5, "randspg": {"n_atoms": [1, 4]}})
    assert compositions_of(step) == [(1, 0), (0, 1), (2, 0), (1, 1), (0, 2), (3, 0), (0, 3), (4, 0), (2, 2), (0, 4)]
    ratios = config_from_dict({"elements": ["Al", "Mg"], "compositions": [[3, 1], [2, 2]], "randspg": {"n_atoms": [1, 8]}})
    assert compositions_of(ratios) == [(1, 1), (3, 1), (2, 2), (3, 3), (6, 2), (4, 4)]
    three = config_from_dict({"elements": ["Cu", "Ni", "Al"], "randspg": {"n_atoms": [2, 2]}})
    assert sorted(compositions_of(three)) == sorted([(2, 0, 0), (0, 2, 0), (0, 0, 2), (1, 1, 0), (1, 0, 1), (0, 1, 1)])
    assert composition_code((3, 1)) == 1003 and composition_code((1, 2, 3)) == 3002001
    assert vegard_volume((16.0, 24.0), (3, 1)) == pytest.approx(18.0)


def test_one_element_config_unchanged():
    """A one-element recipe's dict (what generation checkpoints and ``mtpjax run`` stage hashes cover) has no alloy
    keys, and the [randspg] table (whose repr keys the RANDSPG checkpoints) has no new fields."""
    cfg = config_from_dict({"element": "Al"})
    assert list(cfg.to_dict()) == ["element", "seed", "oracle", "subsets", "randspg", "relax", "deform", "executor",
                                   "entropy", "hessian"]
    assert not cfg.is_alloy and cfg.species == ("Al",) and cfg.oracle_spec() == {"type": "zhou", "element": "Al"}
    assert repr(RandspgConfig()) == ("RandspgConfig(space_groups=(1, 230), n_atoms=(1, 10), copies=1, volume_range="
                                     "(0.9, 1.1), min_distance=0.6, symprec=0.001, max_attempts=3, time_limit=20.0, workers=2)")
    assert GenerateConfig().element == "Mg"


@pytest.mark.parametrize("data, field, words", [
    ({"elements": ["Al"]}, "elements", "two or more"),
    ({"elements": ["Al", "Xx"]}, "elements", "'Xx' is not a chemical element"),
    ({"elements": ["Al", "Mg", "Al"]}, "elements", "more than once"),
    ({"elements": "AlMg"}, "elements", "not a list"),
    ({"element": "Cu", "elements": ["Al", "Mg"]}, "element", "conflicts"),
    ({"composition_step": 0.5}, "composition_step", "alloys only"),
    ({"compositions": [[1, 1]]}, "compositions", "alloys only"),
    ({"elements": ["Al", "Mg"], "composition_step": 0.3}, "composition_step", "1/step"),
    ({"elements": ["Al", "Mg"], "composition_step": 1.5}, "composition_step", "[0, 1]"),
    ({"elements": ["Al", "Mg"], "composition_step": 0.5, "compositions": [[1, 1]]}, "compositions", "not both"),
    ({"elements": ["Al", "Mg"], "compositions": [[1, 1, 1]]}, "compositions", "2 non-negative integers"),
    ({"elements": ["Al", "Mg"], "compositions": [[0, 0]]}, "compositions", "not all zero"),
    ({"elements": ["Al", "Mg"], "compositions": [[5, 1]], "randspg": {"n_atoms": [1, 4]}}, "compositions", "no composition"),
    ({"elements": ["Al", "Mg"], "subsets": ["RANDSPG", "HESSIAN"]}, "subsets", "not available for alloys"),
])
def test_alloy_config_errors(data, field, words):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert err.value.field == field and words in str(err.value)


def test_unknown_element_of_the_oracle(tmp_path):
    from mtpjax.generate.pipeline import run

    cfg = config_from_dict({"elements": ["Al", "Si"]})  # Zhou 2004 has no Si
    with pytest.raises(ConfigError, match="Si"):
        run(cfg, tmp_path / "out")


# ------------------------------------------------------------------------------------------------- RANDSPG
def _has_group(atoms, sg: int, symprec: float = 1e-3) -> bool:
    """Whether every operation of space group ``sg`` (pyxtal's general position, in the structure's conventional
    cell) is among the symmetry operations spglib finds for ``atoms``."""
    import spglib
    from pyxtal.symmetry import Group

    sym = spglib.get_symmetry((atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers), symprec=symprec)
    for op in Group(sg)[0].ops:
        r, t = np.rint(op.affine_matrix[:3, :3]).astype(int), op.affine_matrix[:3, 3]
        if not any((R == r).all() and np.abs((t - T) - np.rint(t - T)).max() < 1e-4
                   for R, T in zip(sym["rotations"], sym["translations"])):
            return False
    return True


def test_randspg_over_compositions():
    """Every structure has the requested composition and volume, and the requested space group's operations (spglib)."""
    cfg = RandspgConfig(space_groups=(187, 194), n_atoms=(1, 4), workers=1)
    comps = [(2, 1), (1, 1), (1, 2), (2, 2), (3, 1)]
    todo, n_bad = tasks(cfg, comps)
    assert n_bad == 8 * len(comps) - len(todo) and all(c in comps for _, c, _ in todo)
    omegas = (16.6, 23.1)
    made = 0
    for k, task in enumerate(todo):
        a = generate_one(task, ("Al", "Mg"), omegas, 1.6, cfg, 5, k)
        if not hasattr(a, "positions"):
            assert a.reason == "min_distance"
            continue
        made += 1
        sg, counts, _ = task
        sym = a.get_chemical_symbols()
        assert (sym.count("Al"), sym.count("Mg")) == counts
        assert a.info["id"] == f"RANDSPG/sg{sg}-" + "".join(f"{e}{c}" for e, c in zip(("Al", "Mg"), counts) if c) + "-c0"
        assert list(a.info["key"]) == [sg, counts[0] + 1000 * counts[1], 0] and a.info["spacegroup_requested"] == sg
        v = a.get_volume() / len(a) / vegard_volume(omegas, counts)
        assert 0.9 - 1e-9 <= v <= 1.1 + 1e-9
        assert _has_group(a, sg), (a.info["id"], a.info["spacegroup"])
    assert made >= 10
    # the check can fail: the 3:1 structure of P-6m2 (187) lacks the operations of P6_3/mmc (194)
    a = generate_one((187, (3, 1), 0), ("Al", "Mg"), omegas, 1.6, cfg, 5)
    assert _has_group(a, 187) and not _has_group(a, 194)


def test_one_element_randspg_unchanged():
    """The same structures for a fixed seed as the code before alloys (numbers recorded from commit 2cd445f)."""
    cfg = RandspgConfig(space_groups=(191, 194), n_atoms=(1, 3), copies=1, workers=1)
    todo, n_bad = tasks(cfg)
    assert todo == [(191, 1, 0), (191, 2, 0), (191, 3, 0), (192, 2, 0), (193, 2, 0), (194, 2, 0)] and n_bad == 6
    before = {"RANDSPG/sg191-n1-c0": (191, 23.387739, 1.768849), "RANDSPG/sg191-n2-c0": "min_distance",
              "RANDSPG/sg191-n3-c0": "min_distance", "RANDSPG/sg192-n2-c0": (191, 41.8557, 2.329365),
              "RANDSPG/sg193-n2-c0": (191, 48.750595, 2.16346), "RANDSPG/sg194-n2-c0": (191, 46.996051, 2.137058)}
    for k, t in enumerate(todo):
        a = generate_one(t, "Mg", 23.0, 1.9, cfg, 7, k)
        if hasattr(a, "positions"):
            sg, volume, possum = before[a.info["id"]]
            assert a.info["spacegroup"] == sg and list(a.info["key"]) == list(t)
            assert a.get_volume() == pytest.approx(volume, abs=2e-6)
            assert a.positions.sum() == pytest.approx(possum, abs=2e-6)
            assert set(a.get_chemical_symbols()) == {"Mg"} and "mlip_type" not in a.arrays
        else:
            assert before[a.name] == a.reason


# ------------------------------------------------------------------------------------------------- verification
def _ase_relaxed_energy(atoms, calc) -> float:
    """Energy (eV) of ``atoms`` relaxed, cell and positions, by ASE's BFGS on its FrechetCellFilter."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    a = atoms.copy()
    a.calc = calc
    BFGS(FrechetCellFilter(a), logfile=None).run(fmax=1e-5, steps=500)
    return a.get_potential_energy()


def test_formation_energy_formula_against_ase():
    """The bookkeeping of ΔH_f at fixed geometry (``max_steps=0``): the module's value for L1_2 Al3Mg and D0_19 AlMg3
    against E/N - x_Al e_Al - x_Mg e_Mg with every energy from the oracle's ASE calculator."""
    from ase.build import bulk

    from mtpjax.oracles import get_calculator, make_oracle
    from mtpjax.verify import alloy

    oracle = make_oracle({"type": "zhou", "elements": ["Al", "Mg"]})
    calc = get_calculator(oracle)

    def energy(atoms):
        a = atoms.copy()
        a.calc = calc
        return a.get_potential_energy()

    e_al = energy(bulk("Al", "fcc", a=4.05))
    e_mg = energy(bulk("Mg", "hcp", a=3.2, c=5.2)) / 2
    refs = {"Al": {"energy_eV": e_al}, "Mg": {"energy_eV": e_mg}}
    structures = alloy.ordered_structures("Al", "Mg", {"Al": 16.6, "Mg": 23.0}, ["L1_2 A3B", "D0_19 AB3"])
    got, _ = alloy.energies(oracle, {n: (a, "formation") for n, a in structures.items()}, refs, max_steps=0)
    assert list(got) == ["L1_2 Al3Mg", "D0_19 AlMg3"]
    for name, xb in (("L1_2 Al3Mg", 0.25), ("D0_19 AlMg3", 0.75)):
        a = structures[name]
        assert a.get_chemical_symbols().count("Mg") == round(xb * len(a))
        hand = 1e3 * (energy(a) / len(a) - (1 - xb) * e_al - xb * e_mg)
        assert abs(hand) > 10
        assert got[name]["dHf_meV"] == pytest.approx(hand, abs=1e-6)
    assert got["D0_19 AlMg3"]["space_group"] == 194 and got["L1_2 Al3Mg"]["space_group"] == 221


@pytest.mark.slow
def test_formation_energy_against_ase():
    """ΔH_f of L1_2 Al3Mg from the module (oracle as both potentials) against a hand computation with the oracle's
    ASE calculator: E(Al3Mg)/4 - 3/4 e(fcc Al) - 1/4 e(hcp Mg), each relaxed by ASE."""
    from ase import Atoms
    from ase.build import bulk

    from mtpjax.oracles import get_calculator, make_oracle
    from mtpjax.verify import alloy

    oracle = make_oracle({"type": "zhou", "elements": ["Al", "Mg"]})
    refs = alloy.references(oracle, ["Al", "Mg"], phases=("fcc", "hcp"))
    assert refs["Al"]["phase"] == "fcc" and refs["Mg"]["phase"] == "hcp"
    cases = {n: (a, "formation") for n, a in alloy.ordered_structures("Al", "Mg", {"Al": 16.6, "Mg": 23.0},
                                                                         ["L1_2 A3B"]).items()}
    assert list(cases) == ["L1_2 Al3Mg"]
    got, failures = alloy.energies(oracle, cases, refs)
    assert not failures
    dhf = got["L1_2 Al3Mg"]["dHf_meV"]
    assert got["L1_2 Al3Mg"]["space_group"] == 221

    calc = get_calculator(oracle)
    e_al = _ase_relaxed_energy(bulk("Al", "fcc", a=4.05), calc)
    e_mg = _ase_relaxed_energy(bulk("Mg", "hcp", a=3.2, c=5.2), calc) / 2
    l12 = Atoms("MgAl3", scaled_positions=[[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]],
                cell=np.eye(3) * 4.15, pbc=True)
    hand = 1e3 * (_ase_relaxed_energy(l12, calc) / 4 - 0.75 * e_al - 0.25 * e_mg)
    assert abs(hand) > 10  # a real formation energy (Zhou's Al-Mg: about +110 meV/atom), not a trivial zero
    assert dhf == pytest.approx(hand, abs=0.05)


@pytest.mark.slow
def test_alloy_generation_end_to_end(tmp_path):
    """A tiny Al-Mg run: every composition of the grid appears, ``mlip_type`` follows the order of ``elements``, the
    manifest lists the elements' own references and the Vegard volumes."""
    import ase.io

    from mtpjax.generate.pipeline import run

    cfg = config_from_dict({"elements": ["Mg", "Al"], "seed": 3, "subsets": ["RANDSPG", "VOLMIN"],
                            "randspg": {"space_groups": [221, 229], "n_atoms": [1, 2], "workers": 1},
                            "relax": {"max_steps": 100}})
    man = run(cfg, tmp_path / "out", progress=False)
    assert man["elements"] == ["Mg", "Al"] and man["element"] == "Mg-Al"
    assert set(man["references"]) == {"Mg", "Al"}
    om = {e: man["references"][e]["omega0"] for e in ("Mg", "Al")}
    assert {tuple(c["counts"]) for c in man["compositions"]} == {(1, 0), (0, 1), (2, 0), (1, 1), (0, 2)}
    for c in man["compositions"]:
        assert c["omega0"] == pytest.approx((c["counts"][0] * om["Mg"] + c["counts"][1] * om["Al"]) / sum(c["counts"]))
    structures = ase.io.read(tmp_path / "out" / "EVERYTHING.extxyz", index=":")
    seen = set()
    for a in structures:
        sym = a.get_chemical_symbols()
        assert list(a.arrays["mlip_type"]) == [("Mg", "Al").index(x) for x in sym]
        seen.add((sym.count("Mg"), sym.count("Al")))
    assert (1, 1) in seen and {(1, 0), (0, 1)} <= seen


def _labelled_alloy_cells(n=6):
    """Rattled Al-Mg cells labelled by the Zhou Al-Mg oracle, with mlip_type as mtpjax generate writes them."""
    from ase.build import bulk

    from mtpjax.oracles import get_calculator, make_oracle

    calc = get_calculator(make_oracle({"type": "zhou", "elements": ["Al", "Mg"]}))
    out = []
    for k in range(n):
        a = bulk("Al", "fcc", a=4.1, cubic=True)
        a.symbols[k % 4] = "Mg"
        a.rattle(0.05, seed=k)
        a.calc = calc
        a.get_potential_energy(), a.get_forces(), a.get_stress()
        from ase.calculators.singlepoint import SinglePointCalculator

        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy(), forces=a.get_forces(), stress=a.get_stress())
        a.arrays["mlip_type"] = np.array([0 if s == "Al" else 1 for s in a.get_chemical_symbols()], dtype=np.int64)
        out.append(a)
    return out


def test_fit_takes_the_species_from_mlip_types(tmp_path, capsys):
    """mtpjax fit on an alloy file without --species takes Al (type 0) and Mg (type 1) from its mlip_type arrays and
    fits a two-species MTP that knows them; a file whose type 0 is Al in one cell and Mg in another is refused,
    naming the file and the structure."""
    import ase.io

    from mtpjax.cli import main
    from mtpjax.model import load_mtp

    cells = _labelled_alloy_cells()
    ase.io.write(tmp_path / "alloy.extxyz", cells)
    out = tmp_path / "pot.almtp"
    assert main(["fit", str(tmp_path / "alloy.extxyz"), "--level", "2", "--cutoff", "5.0", "--max-steps", "2",
                 "-o", str(out)]) == 0
    assert load_mtp(out).n_species == 2
    assert list(load_mtp(tmp_path / "pot.mtpjax").species) == ["Al", "Mg"]  # the exact file keeps the names
    bad = cells[:2]
    bad[1].arrays["mlip_type"] = 1 - bad[1].arrays["mlip_type"]
    ase.io.write(tmp_path / "bad.extxyz", bad)
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "bad.extxyz"), "--level", "2", "--cutoff", "5.0", "--max-steps", "2",
                 "-o", str(tmp_path / "bad.almtp")]) == 2
    err = capsys.readouterr().err
    assert "bad.extxyz" in err and "structure 2" in err and "--species" in err
