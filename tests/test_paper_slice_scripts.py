"""scripts/paper_slice_weights.py and the weights record of scripts/paper_slice.py: on a hand-made data folder, the
weight of each structure by its volume per atom against hand-computed classes, read back by mtpjax's own loader
(mtpjax.data.load_records, what mtpjax fit trains on), and the counts that paper_slice.py records; the column order
and the per-(level, cutoff) Fig. 14 matrices of scripts/paper_slice_tables.py; the error by coordination of
scripts/paper_slice_coordination_bias.py; the influence functions and the vacancy fix of
scripts/paper_slice_vacancy_influence.py against autodiff, exact refits and the fit's own loss."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from conftest import GOLDEN, load_script, need
from mtpjax.data import load_records

ROOT = Path(__file__).resolve().parents[1]
OMEGA0 = 20.0  # Å³ per atom


def _script(name):
    return load_script(name)


def _folder(tmp_path):
    """Four labelled cells at 0.5, 1.0, 1.7 and 0.79 Ω0 per atom (1, 2, 1 and 3 atoms)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"omega0": OMEGA0}))
    (data / "RANDSPG.extxyz").write_text("linked, not read\n")
    cells = []
    for n, x in ((1, 0.5), (2, 1.0), (1, 1.7), (3, 0.79)):
        a = (n * x * OMEGA0) ** (1 / 3)
        at = Atoms("Mg" * n, cell=np.diag([a, a, a]) @ np.array([[1, 0, 0], [0.1, 1, 0], [0, 0, 1]]), pbc=True)
        at.positions = np.linspace(0, 0.5, n)[:, None] * at.cell.sum(0)
        at.info["subset"] = "TRIAX"
        at.calc = SinglePointCalculator(at, energy=-1.0 * n, forces=np.zeros((n, 3)), stress=np.zeros(6))
        cells.append(at)
    write(data / "EVERYTHING.extxyz", cells, format="extxyz")
    return data


def test_weights_by_volume_are_what_the_fit_reads(tmp_path, capsys):
    data = _folder(tmp_path)
    out = tmp_path / "weighted"
    W = _script("paper_slice_weights")
    assert W.main(["--data", str(data), "--out", str(out), "--below", "0.8", "--weight-below", "2",
                   "--above", "1.6", "--weight-above", "0.5"]) == 0
    recs = load_records(out / "EVERYTHING.extxyz")
    assert [r.weight for r in recs] == [2.0, 1.0, 0.5, 2.0]
    # the structures and labels are unchanged
    before = load_records(data / "EVERYTHING.extxyz")
    for a, b in zip(before, recs):
        np.testing.assert_array_equal(a.positions, b.positions)
        assert a.energy == b.energy and a.subset == b.subset
    assert (out / "RANDSPG.extxyz").is_symlink() and (out / "manifest.json").is_symlink()
    assert "weight 2: 2 structures" in capsys.readouterr().out
    # a second pass would double-book the weights: refused
    with pytest.raises(SystemExit, match="already has a weight"):
        W.main(["--data", str(out), "--out", str(tmp_path / "again")])

    P = _script("paper_slice")
    assert P.data_weights(data) == {1.0: 4}
    assert P.data_weights(out) == {2.0: 2, 1.0: 1, 0.5: 1}
    run = tmp_path / "run"
    run.mkdir()
    (run / "settings.json").write_text(json.dumps({"level": 16, "cutoff": 5.2}))
    P.record_weights(data, run)  # unweighted data: nothing recorded
    assert "variant" not in json.loads((run / "settings.json").read_text())
    P.record_weights(out, run)
    s = json.loads((run / "settings.json").read_text())
    assert s["variant"] == "weighted" and s["weights"] == {"0.5": 1, "1": 1, "2": 2} and s["level"] == 16
    P.record_weights(out, run, "compressed")  # --variant names a second weighting of the same (level, cutoff)
    assert json.loads((run / "settings.json").read_text())["variant"] == "compressed"
    P.record_weights(data, run, "weight1")  # and a control on unweighted data, when given
    s = json.loads((run / "settings.json").read_text())
    assert s["variant"] == "weight1" and s["weights"] == {"1": 4}
    for bad in ("a b", ""):  # refused before anything runs: not a file-name part; no name (the default names it)
        assert P.main(["--variant", bad, "--data", str(out), "--out", str(run)]) == 2
        assert "letters, digits and underscores" in capsys.readouterr().err


def test_tables_order_columns_as_the_paper_and_write_fig14_per_level_and_cutoff(tmp_path, monkeypatch):
    """Columns go in the paper's subset order (RANDSPG first, EVERYTHING last, a variant after its subset), and a
    (level, cutoff) with three or more subsets, variants not counted, gets its own Fig. 14 matrix whose values are
    the fits' own rows."""
    T = _script("paper_slice_tables")
    cols = ["EVERYTHING-weighted L16 6.5", "VOLMIN L16 6.5", "EVERYTHING L16 6.5", "RANDSPG L20 6.5",
            "RATTLE L16 6.5", "RANDSPG L16 6.5", "EVERYTHING L8 5.2", "RANDSPG L8 5.2"]
    assert sorted(cols, key=T.column_key) == [
        "RANDSPG L8 5.2", "RANDSPG L16 6.5", "RANDSPG L20 6.5", "VOLMIN L16 6.5", "RATTLE L16 6.5",
        "EVERYTHING L8 5.2", "EVERYTHING L16 6.5", "EVERYTHING-weighted L16 6.5"]

    def rows(err):
        return [{"test": "vacancy", "quantity": "vacancy formation energy (hcp)", "unit": "eV", "mtp": "1",
                 "oracle": "1", "error": str(err), "relative_error": ""}]

    monkeypatch.setattr(T, "HERE", tmp_path)
    by_col = {c: rows(0.01 * k) for k, c in enumerate(cols)}
    written = T.subset_matrices({c: by_col[c] for c in sorted(cols, key=T.column_key)})
    # only L16 / 6.5 Å has three subsets besides the variant (RANDSPG, VOLMIN, RATTLE, EVERYTHING)
    assert written == ["fig14_L16_rc6.5.csv", "fig14_L16_rc6.5.md", "fig14_L16_rc6.5.png", "fig14_L16_rc6.5_summary.md"]
    summary = (tmp_path / "fig14_L16_rc6.5_summary.md").read_text().splitlines()
    assert [ln.split(" | ")[0] for ln in summary[2:]] == ["| RANDSPG", "| VOLMIN", "| RATTLE", "| EVERYTHING"]
    with open(tmp_path / "fig14_L16_rc6.5.csv", newline="") as fh:
        (line,) = list(csv.DictReader(fh))
    assert list(line)[4:] == ["RANDSPG", "VOLMIN", "RATTLE", "EVERYTHING"]
    for sub in ("RANDSPG", "VOLMIN", "RATTLE", "EVERYTHING"):
        assert float(line[sub]) == pytest.approx(0.01 * cols.index(f"{sub} L16 6.5"))


def _fit_rows(vac, cij, ev10=1.5, ev80=1234.5, dfcc=-0.004, surf=(0.01, -0.03), gb=0.002):
    """Verification rows of one fit, in c_error_matrix's long format (units of the suite: eV, meV/atom, J/m²)."""
    r = []

    def add(test, q, error, mtp="", oracle="", rel=""):
        r.append({"test": test, "quantity": q, "unit": "", "mtp": str(mtp), "oracle": str(oracle),
                  "error": str(error), "relative_error": str(rel)})
    add("eos", "energy RMSE all phases ±10%", ev10)
    add("eos", "energy RMSE all phases ±80%", ev80)
    for p, e in zip(("hcp", "fcc", "dhcp", "bcc"), vac):
        add("vacancy", f"vacancy formation energy ({p} 3x3x3)", e)
        add("vacancy", f"unrelaxed vacancy formation energy ({p} 3x3x3)", 9.0)  # not the relaxed one: not read
    for c, x in cij.items():
        add("elastic", c, 1.0, rel=x)
    add("elastic", "E(fcc) − E(hcp)", 0.5, mtp=dfcc, oracle=1.11)
    for s, fc in (("hcp", 0.0123), ("bcc", 0.002), ("bcc@12", 1.5)):
        add("phonons", f"{s}: force constants RMSE", fc)
    for k, e in enumerate(surf):
        add("planar", f"surface energy (s{k})", e)
        add("planar", f"unrelaxed surface energy (s{k})", 5.0)  # not read
    add("planar", "Σ7 [0001] tilt grain boundary energy", gb)
    return r


def test_summary_table_puts_each_number_in_its_column_in_the_documented_unit(tmp_path):
    """The short Fig. 14 table against hand-computed entries: the largest |C_ij| error by magnitude (a negative one
    too), the vacancy MAE of the four relaxed vacancies only, surfaces and GB from J/m² to meV/Å², thousands with
    separators, a typographic minus and no "−0.00"."""
    T = _script("paper_slice_tables")
    cols = {"RANDSPG": _fit_rows((0.01, -0.03, 0.02, 0.0), {"C11": 0.05, "C13": -0.123, "C44": 0.1}),
            "EVERYTHING": _fit_rows((0.1, 0.1, 0.1, -0.1), {"C11": 0.01}, ev80=15.54, dfcc=-0.12345, gb=-0.01)}
    fits = {"RANDSPG": {"n_train": "2029", "train_energy_meV": "2.345"}}
    head, rule, a, b = T.summary_table(cols, fits).splitlines()
    assert "oracle 1.11" in head and rule.count("---:") == 9
    assert a.split(" | ") == ["| RANDSPG", "2029", "2.3", "1.50", "1,230", "12.3 (C13)", "0.012 / 0.002 / 1.500",
                              "0.0150", "0.00", "1.25 / +0.12 |"]
    assert b.split(" | ") == ["| EVERYTHING", "–", "–", "1.50", "15.5", "1.0 (C11)", "0.012 / 0.002 / 1.500",
                              "0.1000", "−0.12", "1.25 / −0.62 |"]
    assert T.sig3(79123.0) == "79,100" and T.sig3(float("nan")) == "–"


def test_update_page_rewrites_only_the_marked_tables(tmp_path):
    """Tables go between their markers (whatever was there replaced, the rest of the page unchanged), blocks the
    page has no markers for are left out, a rerun changes nothing, and a marker without its pair is an error that
    names the file and line and writes nothing."""
    T = _script("paper_slice_tables")
    page = tmp_path / "page.md"
    text = ("# Title\n\ntext\n<!-- tables: matrix -->\n| old |\n<!-- /tables: matrix -->\nmore\n"
            "<!-- tables: other -->\nkept\n<!-- /tables: other -->\n")
    page.write_text(text)
    assert T.update_page(page, {"matrix": "| new |\n|---|\n", "absent": "| x |\n"}) == ["matrix"]
    assert page.read_text() == text.replace("| old |", "\n| new |\n|---|\n")
    once = page.read_text()
    assert T.update_page(page, {"matrix": "| new |\n|---|\n"}) == ["matrix"] and page.read_text() == once
    for bad, line in (("a\n<!-- tables: m -->\nb\n", 2), ("a\nb\n<!-- /tables: m -->\n", 3),
                      ("<!-- tables: m -->\n<!-- tables: n -->\n", 2)):
        page.write_text(bad)
        with pytest.raises(ValueError, match=rf"page\.md:{line}: table marker"):
            T.update_page(page, {"m": "| t |\n"})
        assert page.read_text() == bad


@pytest.mark.parametrize("settings, name", [({"seed": 0}, "EVERYTHING"), ({"seed": 2}, "EVERYTHING-s2"),
                                            ({"seed": 1, "variant": "compressed"}, "EVERYTHING-compressed-s1")])
def test_tables_name_a_run_by_its_variant_and_fit_seed(tmp_path, settings, name):
    """A run with another fit seed gets its own column (SUBSET-s<seed>), so it is compared with the seed-0 fit of the
    same level and cutoff (variant_comparison.csv) instead of replacing it."""
    T = _script("paper_slice_tables")
    (tmp_path / "settings.json").write_text(json.dumps({"level": 16, "cutoff": 5.2, **settings}))
    (tmp_path / "error_matrix_long.csv").write_text(
        "subset,test,quantity,unit,mtp,oracle,error,relative_error\n"
        "EVERYTHING,vacancy,vacancy formation energy (hcp),eV,0.6,0.59,0.01,1.7\n")
    (tmp_path / "fits.csv").write_text("subset,level,cutoff\nEVERYTHING,16,5.2\n")
    level, cutoff, rows, fits = T.read_run(tmp_path)
    assert (level, cutoff, list(rows), [f["subset"] for f in fits]) == (16, 5.2, [name], [name])
    matrix = [{"test": "vacancy", "quantity": "q", "EVERYTHING L16 5.2": 0.02, f"{name} L16 5.2": 0.01}]
    if name != "EVERYTHING":
        (c,) = T.level_comparison(matrix, ["EVERYTHING L16 5.2", f"{name} L16 5.2"], by="variant")
        assert (c["low"], c["high"], c["smaller_at_high_variant"]) == ("EVERYTHING L16 5.2", f"{name} L16 5.2", 1)


def test_variant_comparison_pairs_a_subset_with_its_variants_and_the_variants_with_each_other():
    """by="variant": the base fit against each variant and two variants of one subset, level and cutoff against each
    other (a control fit on the same data beside a reweighted one), never across subsets, levels or cutoffs."""
    T = _script("paper_slice_tables")
    order = ["RANDSPG L20 6.5", "EVERYTHING L20 5.2", "EVERYTHING L20 6.5", "EVERYTHING-compressed L20 6.5",
             "EVERYTHING-weight1 L20 6.5"]
    errors = {"RANDSPG L20 6.5": (0.05, 0.05), "EVERYTHING L20 5.2": (0.04, 0.04), "EVERYTHING L20 6.5": (0.02, 0.01),
              "EVERYTHING-compressed L20 6.5": (0.05, -0.03), "EVERYTHING-weight1 L20 6.5": (-0.015, 0.06)}
    matrix = [{"test": "vacancy", "quantity": f"q{k}", **{c: e[k] for c, e in errors.items()}} for k in range(2)]
    got = {(c["low"], c["high"]): (c["rows"], c["smaller_at_high_variant"], c["median_ratio_high_over_low"])
           for c in T.level_comparison(matrix, order, by="variant")}
    assert set(got) == {("EVERYTHING L20 6.5", "EVERYTHING-compressed L20 6.5"),
                        ("EVERYTHING L20 6.5", "EVERYTHING-weight1 L20 6.5"),
                        ("EVERYTHING-compressed L20 6.5", "EVERYTHING-weight1 L20 6.5")}
    # |errors| compressed (0.05, 0.03) against weight1 (0.015, 0.06): one row smaller, ratios 0.3 and 2 -> median 2
    assert got[("EVERYTHING-compressed L20 6.5", "EVERYTHING-weight1 L20 6.5")] == (2, 1, pytest.approx(2.0))
    assert got[("EVERYTHING L20 6.5", "EVERYTHING-compressed L20 6.5")] == (2, 0, pytest.approx(3.0))


def test_coordination_bias_recovers_the_error_per_neighbour_count(tmp_path, capsys):
    """scripts/paper_slice_coordination_bias.py on hcp cells whose 'predicted' energies are the labels plus
    a·n12 + b·n11 (a = 0.4, b = −1.1 meV per atom; n11 the twelve neighbours of a vacancy, counted by hand): the table
    gives a, b, b − a and 12 (b − a); a bcc cell (14 neighbours) and a compressed one (0.73 Ω0) are left out; NAME=FILE is
    checked."""
    from ase.build import bulk

    a0, c0 = 3.2, 3.2 * 1.63
    perfect = bulk("Mg", "hcp", a=a0, c=c0).repeat((3, 3, 3))
    vacancy = perfect.copy()
    del vacancy[0]
    small = bulk("Mg", "hcp", a=a0, c=c0).repeat((2, 2, 2))
    bcc = bulk("Mg", "bcc", a=(2 * perfect.get_volume() / len(perfect)) ** (1 / 3), cubic=True).repeat(2)
    squeezed = small.copy()
    squeezed.set_cell(small.cell * 0.9, scale_atoms=True)
    cells = [perfect, vacancy, small, bcc, squeezed]
    n11 = [0, 12, 0, 0, 0]  # hcp: 12 neighbours within 3.85 Å, 11 next to the vacancy
    labels, predicted = [], []
    for k, (atoms, m) in enumerate(zip(cells, n11)):
        e = -1.5 * len(atoms) + 0.01 * k
        for out, de in ((labels, 0.0), (predicted, 1e-3 * (0.4 * (len(atoms) - m) - 1.1 * m) + 7.0 * (k >= 3))):
            b = atoms.copy()
            b.calc = SinglePointCalculator(b, energy=e + de)
            out.append(b)
    write(tmp_path / "train.extxyz", labels)
    write(tmp_path / "pred.extxyz", predicted)
    mod = _script("paper_slice_coordination_bias")
    omega0 = perfect.get_volume() / len(perfect)
    assert mod.main([str(tmp_path / "train.extxyz"), f"X={tmp_path / 'pred.extxyz'}", "--omega0", str(omega0)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 of 5 cells") and "2 of them" not in out and "1 of them have 12 11-coordinated" in out
    row = [r for r in out.splitlines() if r.startswith("| X |")][0].split("|")[2:6]
    np.testing.assert_allclose([float(x) for x in row], [0.4, -1.1, -1.5, -0.018], atol=1e-6)
    with pytest.raises(SystemExit):
        mod.main([str(tmp_path / "train.extxyz"), "X", "--omega0", "1"])


def _labelled_mg(seed=0):
    """Eight small Mg cells (1-4 atoms, 0.8-1.3 Ω0, rattled) labelled by the Zhou EAM, in two subsets."""
    from mtpjax.oracles import make_oracle
    from mtpjax.oracles.factory import get_calculator
    from mtpjax.relax import prototype

    calc = get_calculator(make_oracle({"type": "zhou", "element": "Mg"}))
    rng = np.random.default_rng(seed)
    cells = []
    for k, (kind, x) in enumerate([("hcp", 1.0), ("fcc", 0.9), ("bcc", 1.1), ("hcp", 0.8), ("dhcp", 1.05), ("fcc", 1.3),
                                   ("bcc", 0.95), ("hcp", 1.2)]):
        a = prototype(kind, "Mg", 23.0 * x)
        a.positions += rng.normal(0, 0.1, a.positions.shape)
        a.cell = a.cell[:] @ (np.eye(3) + rng.normal(0, 0.02, (3, 3)))
        a.calc = calc
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        a.info["subset"] = "TRIAX" if k % 2 else "RATTLE"
        cells.append(a)
    return cells


def test_vacancy_influence_matches_refits_and_autodiff(tmp_path):
    """scripts/paper_slice_vacancy_influence.py: (1) its per-structure loss gradients sum to jax.grad of the fit's loss
    (mtpjax.fit.loss.loss, plain autodiff); (2) its Gauss–Newton matrix equals the loss's exact Hessian in the
    coefficients the energy is linear in; (3) with the radial coefficients held, the influence of up-weighting one
    structure on a quantity equals the change of that quantity between the exact weighted least-squares refits at
    weights 1 and 1 + ε; (4) the quantity's θ-gradient matches finite differences of the potential's energy."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    from mtpjax.data import pack_records, records_from_atoms
    from mtpjax.fit.jacobian import flatten, n_parameters, unflatten
    from mtpjax.fit.loss import flat_batches, loss
    from mtpjax.fit.residuals import LossConfig
    from mtpjax.model import load_mtp
    from mtpjax.relax import prototype

    V = _script("paper_slice_vacancy_influence")
    mtp = load_mtp(need(GOLDEN / "pub_l08_s1_rc5.almtp"))
    records = records_from_atoms(_labelled_mg())
    cfg = LossConfig(fast_gradient=False)
    n_r, n_s, n_m = n_parameters(mtp)
    lin = np.arange(n_r, n_r + n_s + n_m)  # species and moment coefficients: the energy is linear in them

    def pack(recs):
        batches, _ = pack_records(recs, float(mtp.cutoff))
        return flat_batches(batches)

    def L(theta, batches):
        return loss(unflatten(mtp, theta), batches, cfg, len(records))

    dL, d2L = jax.jit(jax.grad(L)), jax.jit(jax.hessian(L))

    batches = pack(records)
    theta = flatten(mtp)
    H, G, Ls, keys = V.loss_pass(mtp, batches, cfg)
    assert G.shape == (len(records), theta.size)
    np.testing.assert_allclose(G.sum(0) + V.penalty_gradient(mtp, cfg), dL(theta, batches), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(Ls.sum(), L(theta, batches) - cfg.penalty_weight * float(jnp.sum(
        V.penalty_residuals(mtp) ** 2)), rtol=1e-10)
    exact = d2L(theta, batches)
    np.testing.assert_allclose(H[np.ix_(lin, lin)], exact[np.ix_(lin, lin)], rtol=1e-8, atol=1e-10 * np.abs(exact).max())

    # (3) the exact linear refit: Newton on the quadratic loss in the linear coefficients, radial ones held
    def refit(recs):
        b = pack(recs)
        t = jnp.asarray(theta)
        for _ in range(2):  # one step is exact for the quadratic; the second takes up rounding
            t = t.at[lin].add(-np.linalg.lstsq(np.asarray(d2L(t, b))[np.ix_(lin, lin)], np.asarray(dL(t, b))[lin], rcond=None)[0])
        return t

    t0 = refit(records)
    H0, G0, _, keys0 = V.loss_pass(unflatten(mtp, t0), batches, cfg)
    hcp = prototype("hcp", "Mg", 23.0).repeat((2, 2, 2))
    vac = hcp.copy()
    del vac[3]
    q = lambda t: (V.energy_and_gradient(unflatten(mtp, t), vac)[0]  # noqa: E731
                   - len(vac) / len(hcp) * V.energy_and_gradient(unflatten(mtp, t), hcp)[0])
    g = V.energy_and_gradient(unflatten(mtp, t0), vac)[1] - len(vac) / len(hcp) * V.energy_and_gradient(unflatten(mtp, t0), hcp)[1]
    infl, sens, _, _ = V.influences(H0[np.ix_(lin, lin)], G0[:, lin], g[lin], 1.0)
    assert sens > 0
    for s in (2, 5):
        eps = 1e-3
        bumped = [dataclasses.replace(r, weight=1.0 + eps) if k == s else r for k, r in enumerate(records)]
        # loss_pass's rows follow the packing order; find structure s's row by its G against a one-structure pass
        one = V.loss_pass(unflatten(mtp, t0), pack([records[s]]), cfg)[1][0] / len(records)
        row = int(np.argmin(np.linalg.norm(G0 - one, axis=1)))
        np.testing.assert_allclose(G0[row], one, rtol=1e-8, atol=1e-12)
        fd = (q(refit(bumped)) - q(t0)) / eps
        np.testing.assert_allclose(infl[row], fd, rtol=2e-3, atol=1e-6)

    # (4) the gradient of E_f in a radial coefficient against central differences of the energy
    k, h = 3, 1e-5
    e = np.zeros(theta.size)
    e[k] = h
    np.testing.assert_allclose(g[k], (q(t0 + e) - q(t0 - e)) / (2 * h), rtol=1e-5)


def test_vacancy_influence_fix_step_gives_the_oracle_vacancy(tmp_path, capsys):
    """The script end to end on eight labelled cells with MLIP's level-8 potential: its tables and CSVs, and with
    --fix the written potential: its hcp vacancy energy (unrelaxed, at the oracle's lattice) is the oracle's, and its
    loss on the data, measured by a new pass, is the old one plus the rise the script computed (both exact: only the
    coefficients the energy is linear in change)."""
    from ase.io import write as write_xyz

    V = _script("paper_slice_vacancy_influence")
    data = tmp_path / "EVERYTHING.extxyz"
    cells = _labelled_mg()
    for k in (1, 4):
        cells[k].info["weight"] = 2.0  # loss weights, as scripts/paper_slice_weights.py writes them
    write_xyz(data, cells, format="extxyz")
    out = tmp_path / "infl.csv"
    assert V.main(["--data", str(data), "--potential", f"L8={need(GOLDEN / 'pub_l08_s1_rc5.almtp')}", "--out", str(out),
                   "--fix", "hcp vacancy"]) == 0
    rows = list(csv.DictReader(out.open()))
    every = {(r["potential"], r["quantity"]): r for r in rows if r["group"] == "all"}
    assert [q for p, q in every if p == "L8"] == list(V.QUANTITIES)  # what --fix accepts is what is computed
    before, after = every[("L8", "hcp vacancy")], every[("L8+fix", "hcp vacancy")]
    assert before["oracle_eV"] == after["oracle_eV"]
    assert abs(float(after["error_eV"])) < 1e-6 < abs(float(before["error_eV"]))
    cap = capsys.readouterr()
    assert "| hcp vacancy |" in cap.out
    rise = float(re.search(r"loss rise (\S+)", cap.err).group(1))
    # the fit's loss (mtpjax.fit.loss.loss, its own path) of the potential before and after
    from mtpjax.data import pack_records
    from mtpjax.fit.loss import loss
    from mtpjax.fit.residuals import LossConfig
    from mtpjax.model import load_mtp

    mtp, fixed = load_mtp(GOLDEN / "pub_l08_s1_rc5.almtp"), load_mtp(tmp_path / "infl_L8_fixed.mtpjax")
    batches, _ = pack_records(load_records(data), float(mtp.cutoff))
    L0, L1 = (float(loss(m, batches, LossConfig(), 8)) for m in (mtp, fixed))  # with the weights of 2
    assert rise > 0 and np.isclose(L1 - L0, rise, rtol=1e-5)
    # the groups of each potential and quantity add up to the whole, both ways of grouping
    for (pot, q), r in every.items():
        mine = [x for x in rows if x["potential"] == pot and x["quantity"] == q and x["group"] != "all"]
        for by_weight in (False, True):
            parts = [float(x["influence_eV"]) for x in mine if x["group"].startswith("weight ") == by_weight]
            assert np.isclose(sum(parts), float(r["influence_eV"]), atol=1e-3 * np.abs(parts).sum())  # 4 digits each
        assert [(x["group"], x["structures"]) for x in mine if x["group"].startswith("weight ")] == [("weight 2", "2"),
                                                                                                  ("weight 1", "6")]
    assert (tmp_path / "infl_L8_fixed.mtpjax").is_file() and (tmp_path / "infl_structures.csv").is_file()
