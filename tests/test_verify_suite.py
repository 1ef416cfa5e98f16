"""``mtpjax verify``: phonons (finite differences against the autodiff Hessian, acoustic sum rule, self-comparison,
Sun vs Zhou, bcc Mg at 12 Å³/atom), the suite (timings, a failing test does not stop the others, "not available"),
the report writers, loading potentials (different elements are refused) and the CLI in quick mode.

Reference potentials live in ../shared; tests that need them skip with a clear message where it is absent.
"""
from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import SHARED, need, random_mtp
from mtpjax.errors import MtpjaxError
from mtpjax.neighbors import neighbour_list
from mtpjax.oracles import LennardJones, TabulatedEAM, ZhouEAM
from mtpjax.potential import energy
from mtpjax.verify import phonons as P
from mtpjax.verify import report
from mtpjax.oracles import check_elements, load_pair, make_potential
from mtpjax.verify.suite import TESTS, run_suite

MM = SHARED / "data" / "potentials" / "Mg_mm.eam.fs"
#: Sun et al. 2006 hcp Mg (reference_properties.csv): a in Å, c/a.
SUN_A, SUN_Q = 3.184, 1.628


@pytest.fixture(scope="module")
def sun():
    return TabulatedEAM.from_file(need(MM))


@pytest.fixture(scope="module")
def zhou():
    return ZhouEAM("Mg")


def hcp_supercell(a=SUN_A, q=SUN_Q, multiples=(3, 3, 2)):
    ph = P.make_phonopy("hcp", a, q * a, "Mg", multiples)
    return ph, np.asarray(ph.supercell.cell), np.asarray(ph.supercell.positions), list(ph.primitive.p2s_map)


# ------------------------------------------------------------------------------------------------------------------
# force constants


def test_fd_force_constants_equal_autodiff_hessian_sun_eam(sun):
    """Central differences (δ = 1e-5 Å, batched) equal the exact Hessian rows to 1e-5 eV/Å² on a 36-atom hcp supercell
    with the tabulated Sun EAM; those rows equal jax.hessian of the total energy; acoustic sum rule and Φ_ij = Φ_ji^T."""
    _, cell, pos, rows = hcp_supercell()
    calc = P.Calc(sun, "Mg")
    fd = P.finite_difference_fc(calc, cell, pos, rows, P.default_delta())
    ex = P.exact_fc(sun, cell, pos, rows)
    assert np.abs(fd - ex).max() < 1e-5
    assert P.acoustic_sum_rule(fd) < 1e-8 and P.acoustic_sum_rule(ex) < 1e-10
    # the rows against the full jax.hessian of E(x) (N x 3 x N x 3)
    n = len(pos)
    nbrs = jax.tree.map(jnp.asarray, neighbour_list(pos, cell, True, sun.cutoff + 0.3, n_atoms_pad=n))
    H = jax.jit(jax.hessian(lambda x: energy(sun, x, jnp.asarray(cell), jnp.zeros(n, jnp.int32), nbrs)))(jnp.asarray(pos))
    H = np.asarray(H).transpose(0, 2, 1, 3)  # (i, j, a, b)
    np.testing.assert_allclose(ex, H[rows], atol=1e-10)
    np.testing.assert_allclose(H, H.transpose(1, 0, 3, 2), atol=1e-10)  # Φ_ij^ab = Φ_ji^ba
    assert np.abs(ex).max() > 1.0  # not trivially zero


def test_fd_force_constants_equal_autodiff_hessian_random_mtp():
    """Same with a random-coefficient level-8 MTP, on a rattled cell (no symmetry) and two arbitrary rows."""
    mtp = random_mtp(level=8, rcut=5.0, seed=3)
    _, cell, pos, _ = hcp_supercell(multiples=(2, 2, 2))
    pos = pos + np.random.default_rng(0).normal(scale=0.05, size=pos.shape)
    calc = P.Calc(mtp, "Mg")
    rows = [0, 7]
    fd = P.finite_difference_fc(calc, cell, pos, rows, P.default_delta())
    ex = P.exact_fc(mtp, cell, pos, rows)
    assert np.abs(ex).max() > 1e-2
    assert np.abs(fd - ex).max() < 1e-5
    assert P.acoustic_sum_rule(fd) < 1e-8 and P.acoustic_sum_rule(ex) < 1e-10


def test_supercell_widths_and_structure_specs():
    cell, _ = P.unit_cell("hcp", 3.2, 5.2)
    m = P.supercell_multiples(cell, 15.0)
    assert (P.widths(np.diag(m) @ cell) >= 15.0).all() and (P.widths(np.diag(m - 1) @ cell) < 15.0).any()
    assert list(m) == [6, 6, 3]
    s = P.StructureSpec.parse("bcc@12")
    assert (s.kind, s.volume, s.name, s.slug) == ("bcc", 12.0, "bcc@12", "bcc_V12")
    with pytest.raises(MtpjaxError, match="unknown structure"):
        P.StructureSpec.parse("fcc@x")
    assert P.tick_labels(["G", "M", "K", "A", "L"], [True, False, True]) == ["G", "M", "K|A", "L"]


def test_relaxed_lattice_matches_reference(sun):
    """Relaxed hcp of the Sun EAM: a = 3.184 Å, c/a = 1.628, zero pressure (reference_properties.csv)."""
    lat = P.relax_lattice(P.Calc(sun, "Mg"), "hcp")
    assert lat["a"] == pytest.approx(SUN_A, abs=2e-3) and lat["c_over_a"] == pytest.approx(SUN_Q, abs=2e-3)
    assert abs(lat["pressure"]) < 1e-4


# ------------------------------------------------------------------------------------------------------------------
# the phonon test


def test_phonons_potential_against_itself_is_exact(sun, tmp_path):
    """Two separately loaded copies of one potential: every error is exactly zero."""
    out = P.run(TabulatedEAM.from_file(MM), sun, tmp_path, quick=True, structures=["hcp"], mesh=[4, 4, 4], npoints=5)
    m = out["metrics"]["hcp"]
    assert m["fc_rmse"] == 0 and m["frequency_rmse"] == 0
    assert all(r["error"] == 0 for r in out["rows"])
    assert not m["imaginary_mtp"] and m["checks"]["oracle"]["fd_vs_hessian_max"] < 1e-5
    assert {r["unit"] for r in out["rows"]} == {"eV/Å²", "THz"}
    assert all((tmp_path / f).exists() for f in ("phonons_hcp.png", "phonons_force_constants.png"))


def test_phonons_sun_against_zhou_differ(sun, zhou, tmp_path):
    """Zhou (as the 'potential') against Sun (the oracle): different force constants and frequencies; hcp stable."""
    out = P.run(zhou, sun, tmp_path, quick=True, structures=["hcp"], mesh=[6, 6, 4], npoints=9)
    m = out["metrics"]["hcp"]
    assert m["fc_rmse"] > 0.01 and m["frequency_rmse"] > 0.1
    assert 8.5 < m["max_frequency_oracle"] < 10 and 7 < m["max_frequency_mtp"] < 8.5
    assert not m["imaginary_mtp"] and not m["imaginary_oracle"]
    assert m["lattice"]["mtp"]["a"] == pytest.approx(3.199, abs=2e-3)  # Zhou's own lattice ("own" geometry)
    assert not out["failures"]


def test_bcc_at_12_A3_is_dynamically_stable_quick(sun, tmp_path):
    """bcc Mg compressed to 12 Å³/atom: no imaginary modes with the Sun EAM (quick cell)."""
    out = P.run(sun, sun, tmp_path, quick=True, structures=["bcc@12"], mesh=[8, 8, 8], npoints=9)
    m = out["metrics"]["bcc@12"]
    assert m["lattice"]["oracle"]["volume"] == pytest.approx(12.0)
    assert m["min_frequency_oracle"] > -P.IMAGINARY_TOL and not m["imaginary_oracle"]


@pytest.mark.slow
def test_phonons_full_sun_vs_zhou(sun, zhou, tmp_path):
    """Full mode (supercells ≥ 2 × 7.5 Å): hcp stable for both; bcc at equilibrium unstable with Zhou, stable with
    Sun; bcc at 12 Å³/atom stable with both; finite differences within 1e-5 eV/Å² of the Hessian (except the Sun
    spline at 12 Å³/atom, whose third-derivative jumps at table knots give ~1e-4)."""
    out = P.run(zhou, sun, tmp_path)
    ms = out["metrics"]
    assert set(ms) == {"hcp", "bcc", "bcc@12"}
    assert not ms["hcp"]["imaginary_mtp"] and not ms["hcp"]["imaginary_oracle"]
    assert ms["bcc"]["imaginary_mtp"] and not ms["bcc"]["imaginary_oracle"]
    assert not ms["bcc@12"]["imaginary_mtp"] and not ms["bcc@12"]["imaginary_oracle"]
    for name, m in ms.items():
        assert min(m["supercell"]["widths"]) >= 15.0
        assert m["checks"]["mtp"]["fd_vs_hessian_max"] < 1e-5
        assert m["checks"]["oracle"]["fd_vs_hessian_max"] < (1e-5 if name != "bcc@12" else P.FD_CHECK_TOL)
    assert len(out["rows"]) == 12 and len(out["figures"]) == 4


# ------------------------------------------------------------------------------------------------------------------
# the suite and the report


def _fake(rows=1):
    def run(potential, oracle, outdir, quick=False, element=None):
        outdir.mkdir(parents=True, exist_ok=True)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        fig.savefig(outdir / "fake.png")
        plt.close(fig)
        return {"metrics": {"quick": quick, "element": element, "value": np.float64(1.5), "bad": float("nan")},
                "figures": [outdir / "fake.png"],
                "rows": [{"test": "fake", "quantity": f"q{k}", "unit": "eV", "mtp": 1.0 + k, "oracle": 1.0, "error": float(k)}
                         for k in range(rows)],
                "failures": [{"structure": "s1", "reason": "did not converge"}]}
    return run


def _boom(potential, oracle, outdir, **options):
    raise RuntimeError("injected failure")


def test_suite_continues_when_a_test_raises(tmp_path):
    lj = LennardJones(species=("Mg",))
    res = run_suite(lj, lj, tmp_path, tests=["boom", "fake", "vacancy"], progress=False, quick=True,
                    registry={"boom": _boom, "fake": _fake(2), "vacancy": "not available (test)"})
    t = res["tests"]
    assert t["boom"]["status"] == "failed" and "injected failure" in t["boom"]["error"]
    assert t["fake"]["status"] == "ok" and t["vacancy"]["status"] == "not available"
    assert t["fake"]["metrics"]["quick"] is True and t["fake"]["metrics"]["element"] == "Mg"
    assert all(t[n]["seconds"] >= 0 for n in t) and res["total_seconds"] > 0
    assert [r["quantity"] for r in res["rows"]] == ["q0", "q1"] and res["rows"][1]["relative_error"] == 1.0
    assert {f["test"] for f in res["failures"]} == {"boom", "fake"}
    data = json.loads((tmp_path / "metrics.json").read_text())  # strict JSON: NaN became null
    assert data["tests"]["fake"]["metrics"]["bad"] is None and data["tests"]["fake"]["figures"] == ["fake/fake.png"]
    md = (tmp_path / "summary.md").read_text()
    assert "injected failure" in md and "| fake | q1 | eV |" in md and "not available" in md
    assert (tmp_path / "rows.csv").read_text().splitlines()[0] == "test,quantity,unit,mtp,oracle,error,relative_error"


def test_suite_refuses_unknown_tests_and_elements(tmp_path):
    lj = LennardJones(species=("Mg",))
    with pytest.raises(MtpjaxError, match="unknown test"):
        run_suite(lj, lj, tmp_path, tests=["nonsense"], progress=False)
    with pytest.raises(MtpjaxError, match="same element"):
        run_suite(LennardJones(species=("Al",)), lj, tmp_path, tests=[], progress=False)
    assert TESTS == ("eos", "strain", "elastic", "phonons", "vacancy", "planar")


def test_compare_reports_side_by_side(tmp_path):
    lj = LennardJones(species=("Mg",))
    a = run_suite(lj, lj, tmp_path / "a", tests=["fake"], registry={"fake": _fake(2)}, progress=False, potential_label="A")
    b = run_suite(lj, lj, tmp_path / "b", tests=["fake"], registry={"fake": _fake(3)}, progress=False, potential_label="B")
    names, rows = report.compare_rows([tmp_path / "a", b])
    assert names == ["A", "B"] and [r["quantity"] for r in rows] == ["q0", "q1", "q2"]
    assert rows[2]["A"] is None and rows[2]["B"] == 2.0 and rows[1]["oracle"] == 1.0
    paths = report.write_comparison([a, b], tmp_path / "cmp")
    assert "| fake | q1 | eV | 1 | +1 | +1 |" in paths["markdown"].read_text()


# ------------------------------------------------------------------------------------------------------------------
# loading


def test_load_potentials_and_element_checks(tmp_path):
    from mtpjax.model import save_mtp

    assert isinstance(make_potential("zhou:Mg"), ZhouEAM)
    with pytest.raises(MtpjaxError, match="nonsense"):
        make_potential("nonsense")
    with pytest.raises(MtpjaxError, match="no such file"):
        make_potential(tmp_path / "missing.almtp")
    with pytest.raises(MtpjaxError, match="same element"):
        load_pair("zhou:Cu", "zhou:Mg")
    assert check_elements(ZhouEAM(["Cu", "Ag"]), ZhouEAM(["Ag", "Cu"])) == ["Cu", "Ag"]
    # an MLIP file names no species: it takes the oracle's element, or --species; a wrong --species is refused
    mtp = random_mtp(level=8, rcut=5.0)
    save_mtp(mtp, tmp_path / "p.almtp")
    pot, orc, els = load_pair(str(tmp_path / "p.almtp"), "zhou:Mg")
    assert els == ["Mg"] and pot.species == ("Mg",)
    with pytest.raises(MtpjaxError, match="same element"):
        load_pair(str(tmp_path / "p.almtp"), "zhou:Mg", species=["Al"])
    if MM.exists():
        assert isinstance(make_potential(str(MM)), TabulatedEAM)


# ------------------------------------------------------------------------------------------------------------------
# the CLI


def _cli(argv):
    from mtpjax.verify.cli import add_parser

    parser = argparse.ArgumentParser(prog="mtpjax")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_quick_writes_report(tmp_path, capsys):
    need(MM)
    out = tmp_path / "rep"
    rc = _cli(["verify", "--potential", str(MM), "--oracle", "zhou:Mg", "--tests", "phonons", "--quick", "-o", str(out),
               "--options", '{"phonons": {"structures": ["hcp"], "mesh": [4, 4, 4], "npoints": 5}}'])
    assert rc == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["tests"]["phonons"]["status"] == "ok" and data["quick"] is True
    assert {r["quantity"] for r in data["rows"]} >= {"hcp: force constants RMSE", "hcp: frequency RMSE on path"}
    assert (out / "summary.md").exists() and (out / "rows.csv").exists()
    pngs = sorted(p.name for p in (out / "phonons").glob("*.png"))
    assert pngs == ["phonons_force_constants.png", "phonons_hcp.png"]
    assert "hcp: max frequency" in capsys.readouterr().out
    # several reports side by side
    assert _cli(["verify", "--compare", str(out), str(out), "--names", "x", "y", "-o", str(tmp_path / "cmp"), "-q"]) == 0
    assert "| x | y |" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_cli_errors_exit_2(tmp_path, capsys):
    assert _cli(["verify", "--potential", "zhou:Cu", "--oracle", "zhou:Mg", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "mtpjax verify: error" in err and "same element" in err
    assert _cli(["verify", "--oracle", "zhou:Mg"]) == 2
    assert "--potential" in capsys.readouterr().err
    assert _cli(["verify", "--potential", "zhou:Mg", "--oracle", "zhou:Mg", "--tests", "nope", "-o", str(tmp_path / "y")]) == 2


@pytest.mark.slow
def test_cli_quick_all_available_tests(tmp_path):
    """Every available test in quick mode, Zhou against Sun: a report with one row set per test that ran."""
    out = tmp_path / "all"
    rc = _cli(["verify", "--potential", "zhou:Mg", "--oracle", str(need(MM)), "--quick", "-o", str(out), "-q"])
    data = json.loads((out / "metrics.json").read_text())
    ran = [n for n, t in data["tests"].items() if t["status"] == "ok"]
    assert "phonons" in ran and rc == (1 if any(t["status"] == "failed" for t in data["tests"].values()) else 0)
    assert {r["test"] for r in data["rows"]} == set(ran) - {n for n in ran if not data["tests"][n]["rows"]}


def test_interrupted_suite_resumes_with_the_unfinished_tests(tmp_path):
    """A suite killed during its second test reruns only that one with resume=True; changed options rerun a test."""
    lj = LennardJones(species=("Mg",))
    calls = []

    def counted(name, rows):
        fake = _fake(rows)

        def run(potential, oracle, outdir, quick=False, element=None):
            calls.append(name)
            return fake(potential, oracle, outdir, quick=quick, element=element)
        return run

    def interrupt(potential, oracle, outdir, **options):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_suite(lj, lj, tmp_path, tests=["a", "b"], progress=False, registry={"a": counted("a", 2), "b": interrupt})
    assert calls == ["a"] and (tmp_path / "a" / "result.json").exists()
    res = run_suite(lj, lj, tmp_path, tests=["a", "b"], progress=False, resume=True,
                    registry={"a": counted("a", 2), "b": counted("b", 1)})
    assert calls == ["a", "b"]  # "a" was reused, not run again
    assert res["tests"]["a"]["status"] == "ok" and [r["quantity"] for r in res["rows"]] == ["q0", "q1", "q0"]
    assert res["tests"]["a"]["figures"] == ["a/fake.png"]
    run_suite(lj, lj, tmp_path, tests=["a"], progress=False, resume=True, quick=True, registry={"a": counted("a", 2)})
    assert calls == ["a", "b", "a"]  # other options: run again
    run_suite(lj, lj, tmp_path, tests=["a"], progress=False, registry={"a": counted("a", 2)})
    assert calls == ["a", "b", "a", "a"]  # without resume everything runs
    other = LennardJones(species=("Mg",), epsilon=0.02)
    run_suite(other, lj, tmp_path, tests=["a"], progress=False, resume=True, registry={"a": counted("a", 2)})
    assert calls == ["a", "b", "a", "a", "a"]  # another potential: run again
