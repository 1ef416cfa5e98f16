"""Force-constant labels from files (issue 16): their extended-XYZ storage (mtpjax.io.write_structures writes the
per-atom array 'hessian' at full precision: read back bit for bit), the checks of mtpjax.fit.force_constants.
read_force_constant_labels (errors naming the file, the structure and its line), and `mtpjax fit --force-constants`
/ train_potential(force_constants=...) against the library path (fit_models with ForceConstantLM on the in-memory
labels), and a weight > 0 without labels refused."""
from __future__ import annotations

import json
import os

import ase.io
import numpy as np
import pytest
from ase.build import bulk

from mtpjax.errors import FormatError, MtpjaxError
from mtpjax.fit.force_constants import check_force_constants, read_force_constant_labels
from mtpjax.io import write_structures
from mtpjax.oracles import label, make_potential
from mtpjax.oracles.hessian import attach_force_constants, force_constants, read_force_constants


@pytest.fixture(scope="module")
def zhou():
    return make_potential("zhou:Mg")


def cells(n, seed0, repeat=(1, 1, 1)):
    """n rattled hcp Mg cells (a within ±2 % of 3.21 Å, σ = 0.06 Å), with ids."""
    out = []
    for k in range(n):
        rng = np.random.default_rng(seed0 + k)
        a = bulk("Mg", "hcp", a=3.21 * (1 + rng.uniform(-0.02, 0.02)), c=5.21).repeat(repeat)
        a.rattle(0.06, seed=seed0 + k)
        a.info["id"] = f"T/{seed0 + k}"
        out.append(a)
    return out


@pytest.fixture(scope="module")
def fc_cells(zhou):
    """Two cells (2 and 4 atoms) labelled with the oracle's energies, forces, stresses and force constants."""
    out = label(zhou, cells(1, 10) + cells(1, 11, (2, 1, 1)))
    for a in out:
        attach_force_constants(a, force_constants(zhou, a))
    return out


def test_labels_round_trip_bit_exact(tmp_path, fc_cells):
    path = tmp_path / "fc.extxyz"
    write_structures(fc_cells, path)
    got = read_force_constant_labels(path)
    assert [a.info["id"] for a in got] == [a.info["id"] for a in fc_cells]
    for a, b in zip(fc_cells, got):
        H, G = read_force_constants(a), read_force_constants(b)
        assert G.shape == (3 * len(a), 3 * len(a)) and np.abs(H).max() > 1.0
        assert np.array_equal(H.view(np.int64), G.view(np.int64))  # bit for bit
        # the rest of the frame as ASE writes it: energy exact (comment line), forces and positions to 8 decimals
        assert b.get_potential_energy() == a.get_potential_energy()
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-8)
        np.testing.assert_allclose(b.positions, a.positions, atol=1e-8)
    # awkward values too (subnormal, -0.0, 1/3, huge): still bit for bit, and still plain ASE-readable extxyz
    odd = fc_cells[0].copy()
    H = read_force_constants(fc_cells[0]).copy()
    H[0, 0], H[1, 1], H[2, 2], H[3, 3] = 5e-324, -0.0, 1.0 / 3.0, 1.2345678901234567e300
    attach_force_constants(odd, H)
    write_structures([odd], tmp_path / "odd.extxyz")
    G = read_force_constants(ase.io.read(tmp_path / "odd.extxyz"))
    assert np.array_equal(H.view(np.int64), G.view(np.int64))
    # the test can fail: ASE's own writer keeps 8 decimals, which is not bit for bit
    ase.io.write(tmp_path / "ase.extxyz", fc_cells, format="extxyz")
    lossy = read_force_constants(ase.io.read(tmp_path / "ase.extxyz", 1))
    assert not np.array_equal(lossy, read_force_constants(fc_cells[1]))
    np.testing.assert_allclose(lossy, read_force_constants(fc_cells[1]), atol=1e-8)
    assert len(read_force_constant_labels(tmp_path / "ase.extxyz")) == 2  # 8-decimal files still read


def test_hessian_stage_output_round_trips(tmp_path, zhou):
    """The HESSIAN stage's labelled cells (its chunk task) written with write_structures read back bit for bit."""
    from mtpjax.generate.config import HessianConfig
    from mtpjax.generate.hessian import bulk_cells, hessian_task

    stage = bulk_cells("Mg", {"a": 3.2, "c_over_a": 1.62, "omega0": 23.0}, HessianConfig(sizes=(1,), copies=2), seed=3)
    out = hessian_task({"oracle": zhou, "structures": stage, "dmin": 1.5, "delta": 1e-3})
    write_structures(out, tmp_path / "HESSIAN.extxyz")
    got = read_force_constant_labels(tmp_path / "HESSIAN.extxyz")
    assert [a.info["id"] for a in got] == ["HESSIAN/hcp-n1-c0", "HESSIAN/hcp-n1-c1"]
    for a, b in zip(out, got):
        assert np.array_equal(read_force_constants(a), read_force_constants(b))


def _write_bad(path, good, H, k=1):
    """``good`` cells with the hessian array of cell ``k`` replaced by ``H`` (any shape), written exactly."""
    bad = [a.copy() for a in good]
    bad[k].arrays["hessian"] = H
    write_structures(bad, path)
    return path


def test_bad_labels_name_the_file_and_structure(tmp_path, fc_cells):
    H = read_force_constants(fc_cells[1])  # structure 2, 4 atoms
    cases = {
        "shape": (H.reshape(4, 36)[:, :30].copy(), r"shape \(4, 30\), expected \(4, 36\)"),
        "asym": (None, r"not symmetric: \|H\[0, 5\] - H\[5, 0\]\| = 0\.1"),
        "nan": (None, r"1 non-finite entries \(first: H\[2, 3\] = nan\)"),
    }
    asym = H.copy()
    asym[0, 5] += 0.1
    nan = H.copy()
    nan[2, 3] = np.nan
    cases["asym"] = (asym.reshape(4, 36), cases["asym"][1])
    cases["nan"] = (nan.reshape(4, 36), cases["nan"][1])
    for name, (arr, msg) in cases.items():
        path = _write_bad(tmp_path / f"{name}.extxyz", fc_cells, arr)
        with pytest.raises(FormatError, match=msg) as e:
            read_force_constant_labels(path)
        assert e.value.path == str(path) and "structure 2 (T/11)" in str(e.value)
        assert e.value.line == 6  # the comment line of frame 2 (frame 1: 2 atoms, lines 1-4)
    # a tiny asymmetry (central differences, 8 decimals) is accepted
    tiny = H.copy()
    tiny[0, 5] += 1e-9
    assert check_force_constants(attach_force_constants(fc_cells[1].copy(), tiny)) is not None
    # a truncated row: the reader's own error, with the file and line
    text = (tmp_path / "shape.extxyz").read_text().splitlines()
    text[9] = " ".join(text[9].split()[:-3])  # the last atom of frame 2
    (tmp_path / "cut.extxyz").write_text("\n".join(text) + "\n")
    with pytest.raises(FormatError, match=r"cut\.extxyz, line 10"):
        read_force_constant_labels(tmp_path / "cut.extxyz")
    # no labels at all, or no file
    plain = [a.copy() for a in fc_cells]
    for a in plain:
        del a.arrays["hessian"]
    write_structures(plain, tmp_path / "plain.extxyz")
    with pytest.raises(MtpjaxError, match=r"plain\.extxyz: no structure carries force constants.*'hessian'"):
        read_force_constant_labels(tmp_path / "plain.extxyz")
    with pytest.raises(MtpjaxError, match=r"missing\.extxyz: no such file"):
        read_force_constant_labels(tmp_path / "missing.extxyz")


def test_exclude_drops_the_held_out_structures(tmp_path, fc_cells):
    """mtpjax run passes its test split as ``exclude``: those cells' force constants are not fitted."""
    from mtpjax.data import load_records

    path = tmp_path / "fc.extxyz"
    write_structures(fc_cells, path)
    records = load_records(path, log=None)
    got = read_force_constant_labels(path, exclude=records[1:])
    assert [a.info["id"] for a in got] == ["T/10"]
    with pytest.raises(MtpjaxError, match="2 that do are excluded"):
        read_force_constant_labels(path, exclude=records)


# ------------------------------------------------------------------------------------- fits from files


LEVEL, CUTOFF, STEPS, WEIGHT = 6, 4.5, 3, 0.05


@pytest.fixture(scope="module")
def fit_files(tmp_path_factory, zhou, fc_cells):
    d = tmp_path_factory.mktemp("fcfit")
    write_structures(label(zhou, cells(4, 0)), d / "train.extxyz")
    write_structures(fc_cells, d / "fc.extxyz")
    return d


@pytest.fixture(scope="module")
def library_fit(fit_files):
    """The in-library path on the same data: records packed, MLIP's start, fit_models with ForceConstantLM on the
    force-constant cells as ASE's own reader gives them (not through mtpjax's reader or train_potential)."""
    from mtpjax.basis import generate_basis
    from mtpjax.data import load_records, pack_records
    from mtpjax.fit import FitConfig, LossConfig, default_rmin, fit_models, initial_mtp, stack_models, unstack_models
    from mtpjax.fit.loss import ForceConstantLM
    from mtpjax.fit.residuals import force_constant_data

    records = load_records(fit_files / "train.extxyz", log=None)
    batches, _ = pack_records(records, CUTOFF, max_batch_atoms=100000)
    m0 = initial_mtp(generate_basis(LEVEL), 1, default_rmin(batches, CUTOFF), CUTOFF, batches, seed=0)
    cfg = FitConfig(max_steps=STEPS, loss=LossConfig(force_constant_weight=WEIGHT))
    fcs = force_constant_data(ase.io.read(fit_files / "fc.extxyz", ":"), CUTOFF)
    r = fit_models(stack_models([m0]), batches, cfg, method=ForceConstantLM(cfg, fcs), log=lambda *a: None)
    return unstack_models(r.models)[0], r.histories[0]


def _same_model(a, b):
    for name in ("radial_coeffs", "species_coeffs", "moment_coeffs"):
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12 * max(1.0, np.abs(y).max()), err_msg=name)


def test_mtpjax_fit_with_force_constants_equals_the_library_path(tmp_path, fit_files, library_fit):
    from mtpjax.cli import main
    from mtpjax.model import load_mtp

    out = tmp_path / "p.almtp"
    argv = ["fit", str(fit_files / "train.extxyz"), "--level", str(LEVEL), "--cutoff", str(CUTOFF), "-o", str(out),
            "--max-steps", str(STEPS), "--force-constant-weight", str(WEIGHT), "--force-constants",
            str(fit_files / "fc.extxyz"), "-q"]
    assert main(argv) == 0
    ref, history = library_fit
    _same_model(load_mtp(out.with_suffix(".mtpjax")), ref)  # the same parameters ...
    workdir = tmp_path / "p.fit"
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    got = json.loads(lines[0])["history"]
    assert len(got) == STEPS  # (a fit that moves: not converged at its start)
    np.testing.assert_allclose([v for _, v in got], [v for _, v in history], rtol=1e-9)  # ... and loss, step by step
    res = json.loads((workdir / "result.json").read_text())
    assert res["force_constants"]["structures"] == 2 and res["force_constants"]["weight"] == WEIGHT
    assert 0 < res["force_constants"]["rmse"] < 10.0  # eV/Å²


def test_weight_without_labels_is_refused(tmp_path, fit_files, capsys):
    from mtpjax.cli import main
    from mtpjax.data import load_records
    from mtpjax.fit import FitConfig, LossConfig, train_potential

    base = ["fit", str(fit_files / "train.extxyz"), "--level", "2", "--cutoff", str(CUTOFF), "-o", str(tmp_path / "q.almtp"),
            "--max-steps", "1", "-q"]
    assert main(base + ["--force-constant-weight", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "force_constant_weight = 0.1 > 0 but no force-constant labels" in err and "--force-constants" in err
    assert main(base + ["--force-constant-weight", "0.1", "--force-constants", str(fit_files / "train.extxyz")]) == 2
    assert "train.extxyz: no structure carries force constants" in capsys.readouterr().err
    assert not (tmp_path / "q.fit").exists() and not (tmp_path / "q.almtp").exists()  # nothing written
    records = load_records(fit_files / "train.extxyz", log=None)
    with pytest.raises(MtpjaxError, match="not adam"):
        train_potential(records, [], level=2, cutoff=CUTOFF, cfg=FitConfig(method="adam", loss=LossConfig(force_constant_weight=1.0)),
                        workdir=tmp_path / "w", output=tmp_path / "w.almtp", force_constants=[fit_files / "fc.extxyz"])
    with pytest.raises(MtpjaxError, match=r"force_constants\[0\]( \(.*\))?: the structure carries no force constants"):
        train_potential(records, [], level=2, cutoff=CUTOFF, cfg=FitConfig(loss=LossConfig(force_constant_weight=1.0)),
                        workdir=tmp_path / "w", output=tmp_path / "w.almtp",
                        force_constants=ase.io.read(fit_files / "train.extxyz", ":"))


def test_fit_config_file_names_force_constant_files(tmp_path):
    """``force_constants`` in the [fit] table of ``mtpjax fit --config``: paths relative to the file."""
    from mtpjax.cli import parse_args

    cfg = tmp_path / "fit.toml"
    cfg.write_text('[fit]\ntrain = ["train.extxyz"]\nforce_constants = ["data/HESSIAN.extxyz"]\nlevel = 6\ncutoff = 5.0\n'
                   'output = "p.almtp"\nforce_constant_weight = 0.05\n')
    opts = parse_args(["fit", "--config", str(cfg)]).opts
    assert [os.path.normpath(p) for p in opts.force_constants] == [str(tmp_path / "data" / "HESSIAN.extxyz")]
    assert opts.fit.loss.force_constant_weight == 0.05
    opts = parse_args(["fit", "--config", str(cfg), "--force-constants", "x.extxyz", "y.extxyz"]).opts
    assert opts.force_constants == ("x.extxyz", "y.extxyz")  # the command line wins


@pytest.mark.slow
def test_lbfgs_fit_from_files_ends_on_the_linear_solve_of_the_loss_with_the_term(tmp_path, fit_files):
    """With L-BFGS, train_potential's last exact linear solve is on the loss with the force-constant term: there the
    gradient of that loss in the species and moment coefficients (autodiff of mtpjax.fit.loss.loss) vanishes, where
    the plain solve (energies, forces, virials only) leaves it far from zero. A resume with other labels is refused."""
    import jax
    import jax.numpy as jnp

    from mtpjax.data import load_records, pack_records
    from mtpjax.fit import FitConfig, LossConfig, count_structures, linear_solve, loss, train_potential
    from mtpjax.fit.jacobian import flatten, n_parameters, unflatten
    from mtpjax.fit.residuals import force_constant_data
    from mtpjax.model import load_mtp

    records = load_records(fit_files / "train.extxyz", log=None)
    cfg = FitConfig(method="lbfgs", max_steps=5, linear_solve_at=(0,), loss=LossConfig(force_constant_weight=WEIGHT))
    kw = dict(level=LEVEL, cutoff=CUTOFF, cfg=cfg, workdir=tmp_path / "w", output=tmp_path / "p.mtpjax", log=lambda m: None)
    res = train_potential(records, [], force_constants=[fit_files / "fc.extxyz"], **kw)
    assert res["force_constants"]["structures"] == 2
    mtp = load_mtp(tmp_path / "p.mtpjax")
    batches = [jax.tree.map(jnp.asarray, lb) for lb in pack_records(records, CUTOFF, max_batch_atoms=100000)[0]]
    K = count_structures(batches)
    fcs = force_constant_data(ase.io.read(fit_files / "fc.extxyz", ":"), CUTOFF)
    n_r = n_parameters(mtp)[0]

    term = LossConfig(force_constant_weight=WEIGHT, fast_gradient=False)
    grad = jax.jit(jax.grad(lambda t, m: loss(unflatten(m, t), batches, term, K, force_constants=fcs)))

    def linear_gradient(m):
        return float(np.abs(np.asarray(grad(flatten(m), m))[n_r:]).max())

    ours, plain = linear_gradient(mtp), linear_gradient(linear_solve(mtp, batches, cfg.loss, K))
    print(f'largest linear gradient: {ours:.3g} (ours), {plain:.3g} (plain solve)')
    assert plain > 0 and ours < 1e-3 * plain, (ours, plain)
    other = [a.copy() for a in ase.io.read(fit_files / "fc.extxyz", ":")]
    other[0].arrays["hessian"] = other[0].arrays["hessian"] * 1.01
    with pytest.raises(MtpjaxError, match="force_constants"):
        train_potential(records, [], force_constants=other, resume=True, **kw)
