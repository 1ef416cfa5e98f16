"""Points below the potential's r_min in the ``eos`` and ``strain`` verification tests (issue 14, item 3).

An MTP's radial basis is fitted on [r_min, R_cut]; below r_min its Chebyshev polynomials extrapolate (a random
level-6 MTP gives about -4600 eV/atom for hcp Mg at 0.2 Ω0). Such points are left out of the RMSEs and counted. The
references here are independent: ASE's neighbour list for the shortest distances and numpy RMSEs over the curves.
"""
from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from conftest import random_mtp

jax.config.update("jax_enable_x64", True)

PHASES = ("hcp", "fcc", "dhcp", "bcc")


@pytest.fixture(scope="module")
def zhou():
    from mtpjax.oracles import ZhouEAM

    return ZhouEAM("Mg")


def _mtp(rmin: float):
    """A random level-6 Mg MTP, nearly flat in volume (small moment coefficients), shifted by -1 eV/atom so that its
    energies near Ω0 are within tens of meV of Zhou's Mg (its error is not of eV/atom scale there)."""
    m = random_mtp(6, rcut=5.0, rmin=rmin, seed=0, scale=0.01)
    return eqx.tree_at(lambda t: t.species_coeffs, m, m.species_coeffs - 1.0)


def _shortest(atoms, cutoff: float = 6.0) -> float:
    """Shortest interatomic distance (Å) by ASE's neighbour list."""
    d = neighbor_list("d", atoms, cutoff)
    return float(d.min()) if len(d) else np.inf


def _rmse_meV(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return 1000.0 * np.sqrt(np.mean((a - b) ** 2))


def _eos_references(m, r_min):
    """(below mask, RMSE over kept points, RMSE over all points, diff RMSEs kept/all) per range and phase from the
    curves, with the shortest distances from ASE on the same prototypes."""
    from mtpjax.relax import prototype

    g = m["ground_state"]
    ref = {}
    for key, curves in m["curves"].items():
        below = {p: np.array([_shortest(prototype(p, "Mg", v)) < r_min for v in curves[p]["V"]]) for p in PHASES}
        em = {p: np.array(curves[p]["potential"], float) for p in PHASES}
        eo = {p: np.array(curves[p]["oracle"], float) for p in PHASES}
        ref[key] = {
            "below": below,
            "rmse": {p: _rmse_meV(em[p][~below[p]], eo[p][~below[p]]) for p in PHASES},
            "rmse_all": {p: _rmse_meV(em[p], eo[p]) for p in PHASES},
            "diff": {p: _rmse_meV((em[p] - em[g])[~(below[p] | below[g])], (eo[p] - eo[g])[~(below[p] | below[g])])
                     for p in PHASES if p != g},
            "diff_all": {p: _rmse_meV(em[p] - em[g], eo[p] - eo[g]) for p in PHASES if p != g},
            "all": _rmse_meV(np.concatenate([em[p][~below[p]] for p in PHASES]),
                             np.concatenate([eo[p][~below[p]] for p in PHASES])),
        }
    return ref


def test_rmin_of_potentials(zhou):
    from mtpjax.verify.eos import below_rmin, potential_rmin
    from mtpjax.relax import prototype

    assert potential_rmin(zhou) is None
    assert potential_rmin(_mtp(2.3)) == pytest.approx(2.3)
    a = prototype("fcc", "Mg", 4.0)  # nearest neighbours (16)^(1/3)/√2 = 1.78 Å apart
    b = prototype("fcc", "Mg", 23.0)
    d = _shortest(a)
    assert d == pytest.approx((4 * 4.0) ** (1 / 3) / np.sqrt(2), rel=1e-12)
    assert below_rmin([a, b], d + 1e-6).tolist() == [True, False]
    assert below_rmin([a, b], d - 1e-6).tolist() == [False, False]
    assert below_rmin([a, b], None).tolist() == [False, False]


def test_eos_excludes_and_counts_points_below_rmin(zhou, tmp_path):
    from mtpjax.verify import eos
    from mtpjax.verify.report import verification_warnings

    r_min = 2.3  # above the nearest-neighbour distance at 0.2 Ω0 (1.8-1.9 Å), below it at 0.6 Ω0 (2.6-2.7 Å)
    out = eos.run(_mtp(r_min), zhou, tmp_path, element="Mg", points=5, ranges=(0.1, 0.8))
    m = out["metrics"]
    assert out["failures"] == []
    assert m["r_min"] == pytest.approx(r_min)
    ref = _eos_references(m, r_min)
    # the most compressed ±80 % point of each phase (and only it) is inside r_min
    assert m["excluded_below_rmin"] == {"10%": {p: 0 for p in PHASES} | {"all": 0},
                                        "80%": {p: 1 for p in PHASES} | {"all": 4}}
    for key in ("10%", "80%"):
        for p in PHASES:
            assert m["curves"][key][p]["below_rmin"] == ref[key]["below"][p].tolist()
            assert m["rmse_meV"][key][p] == pytest.approx(ref[key]["rmse"][p], rel=1e-10)
            assert m["rmse_all_points_meV"][key][p] == pytest.approx(ref[key]["rmse_all"][p], rel=1e-10)
        for p, v in ref[key]["diff"].items():
            assert m["rmse_diff_meV"][key][p] == pytest.approx(v, rel=1e-10)
            assert m["rmse_diff_all_points_meV"][key][p] == pytest.approx(ref[key]["diff_all"][p], rel=1e-10)
            assert m["excluded_diff_below_rmin"][key][p] == (1 if key == "80%" else 0)
        assert m["rmse_meV"][key]["all"] == pytest.approx(ref[key]["all"], rel=1e-10)
    assert m["curves"]["80%"]["hcp"]["V"][0] == pytest.approx(0.2 * m["omega0"])
    # the excluded point is an extrapolation of eV/atom scale, the kept ones are not
    assert m["rmse_all_points_meV"]["80%"]["hcp"] > 1e5 > 1e3 > m["rmse_meV"]["80%"]["hcp"]
    # rows: the count first, then the RMSEs over the kept points; the broken-potential flags follow the rows
    rows = {r["quantity"]: r for r in out["rows"]}
    assert rows[f"{eos.EXCLUDED_ROW} ±80%"]["mtp"] == 4 and rows[f"{eos.EXCLUDED_ROW} ±10%"]["mtp"] == 0
    assert rows["energy RMSE hcp ±80%"]["error"] == pytest.approx(ref["80%"]["rmse"]["hcp"], rel=1e-10)
    assert not [w for w in verification_warnings(out["rows"]) if w.startswith("eos")]
    old = [r | {"error": m["rmse_all_points_meV"]["80%"][r["quantity"].split()[2]]} for r in out["rows"]
           if r["quantity"].startswith("energy RMSE") and r["quantity"].endswith("±80%") and "all phases" not in r["quantity"]]
    assert len(verification_warnings(old)) == 4  # what the all-points RMSEs would have flagged
    assert len(out["figures"]) == 4  # E-V and E - E(hcp) per range, the excluded points drawn as x


def test_eos_with_rmin_below_every_distance_keeps_all_points(zhou, tmp_path):
    from mtpjax.verify import eos

    r_min = 1.5  # below the shortest distance of every phase at 0.2 Ω0
    out = eos.run(_mtp(r_min), zhou, tmp_path, element="Mg", points=5, ranges=(0.1, 0.8), figures=False)
    m = out["metrics"]
    ref = _eos_references(m, r_min)
    assert all(n == 0 for per in m["excluded_below_rmin"].values() for n in per.values())
    assert m["rmse_meV"] == m["rmse_all_points_meV"] and m["rmse_diff_meV"] == m["rmse_diff_all_points_meV"]
    for key in ("10%", "80%"):
        for p in PHASES:
            assert m["rmse_meV"][key][p] == pytest.approx(ref[key]["rmse_all"][p], rel=1e-10)
    assert [r["mtp"] for r in out["rows"] if r["quantity"].startswith(eos.EXCLUDED_ROW)] == [0, 0]


def test_strain_excludes_and_counts_points_below_rmin(zhou, tmp_path):
    from mtpjax.relax import prototype
    from mtpjax.verify import strain
    from mtpjax.verify.eos import EXCLUDED_ROW
    from mtpjax.verify.prototypes import strained

    r_min = 2.3
    out = strain.run(_mtp(r_min), zhou, tmp_path, element="Mg", points=5, max_strain=0.6)
    m = out["metrics"]
    s = np.array(m["strains"])
    total, kept_m, kept_o = 0, [], []
    for p in PHASES:
        base = prototype(p, "Mg", m["omega0"])
        n_phase = 0
        for c in strain.COMPONENTS:
            below = np.array([_shortest(strained(base, strain.strain_tensor(c, x))) < r_min for x in s])
            em = np.array(m["curves"][p][c]["potential"], float)
            eo = np.array(m["curves"][p][c]["oracle"], float)
            assert m["curves"][p][c]["below_rmin"] == below.tolist()
            assert m["excluded_below_rmin"][p][c] == below.sum()
            assert m["rmse_all_points_meV"][p][c] == pytest.approx(_rmse_meV(em, eo), rel=1e-10)
            if below.all():
                assert m["rmse_meV"][p][c] is None
            else:
                assert m["rmse_meV"][p][c] == pytest.approx(_rmse_meV(em[~below], eo[~below]), rel=1e-10)
            n_phase += below.sum()
            kept_m.append(em[~below])
            kept_o.append(eo[~below])
        assert m["excluded_below_rmin"][p]["all"] == n_phase
        total += n_phase
    assert total > 0 and m["excluded_below_rmin"]["all"] == total
    assert m["rmse_meV"]["all"] == pytest.approx(_rmse_meV(np.concatenate(kept_m), np.concatenate(kept_o)), rel=1e-10)
    assert m["rmse_all_points_meV"]["all"] > 1e5 > m["rmse_meV"]["all"]
    counts = {r["quantity"]: r["mtp"] for r in out["rows"] if r["quantity"].startswith(EXCLUDED_ROW)}
    assert counts[f"{EXCLUDED_ROW} (all phases and components)"] == total
    assert sum(counts[f"{EXCLUDED_ROW} {p}"] for p in PHASES) == total
