"""Force constants (issue 16, item 1): the oracle's Hessian labels (mtpjax.oracles.hessian) against central finite
differences of its forces, their symmetry and acoustic sum rule, their extxyz storage; the loss term
(LossConfig.force_constant_weight) against a plain autodiff implementation and finite differences, its normal
equations against its gradient; a tiny fit with the term on against weight 0; the HESSIAN generate stage."""
from __future__ import annotations

import ase.io
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk

from conftest import random_mtp
from mtpjax.fit import jacobian as FJ
from mtpjax.fit.loss import force_constant_normal_equations, loss
from mtpjax.fit.residuals import LossConfig, force_constant_data, force_constant_rmse
from mtpjax.oracles import get_calculator, make_potential
from mtpjax.oracles.hessian import (
    acoustic_sum_violation,
    attach_force_constants,
    finite_difference_force_constants,
    force_constants,
    read_force_constants,
)
from mtpjax.potential import energy


@pytest.fixture(scope="module")
def zhou():
    return make_potential("zhou:Mg")


def rattled_hcp(seed: int, repeat=(1, 1, 1), rattle: float = 0.05):
    a = bulk("Mg", "hcp", a=3.21, c=5.21).repeat(repeat)
    a.rattle(rattle, seed=seed)
    return a


@pytest.fixture(scope="module")
def labelled(zhou):
    a = rattled_hcp(1, (2, 1, 1))
    return a, force_constants(zhou, a)


def test_label_equals_finite_differences_of_the_oracle_forces(zhou, labelled):
    a, H = labelled
    assert H.shape == (12, 12)
    H_fd = finite_difference_force_constants(get_calculator(zhou), a, delta=1e-3)
    scale = np.abs(H).max()
    assert scale > 1.0  # eV/Å²: a real, non-trivial Hessian
    # central differences: error O(delta^2) ~ 1e-6 of the scale here; a wrong sign, factor or transpose is O(1)
    np.testing.assert_allclose(H, H_fd, atol=1e-4 * scale)
    # the ASE-calculator path of force_constants is the same finite differences
    np.testing.assert_allclose(force_constants(get_calculator(zhou), a), H_fd, atol=1e-12)


def test_label_symmetric_and_obeys_the_acoustic_sum_rule(labelled):
    _, H = labelled
    np.testing.assert_allclose(H, H.T, atol=1e-10)
    assert acoustic_sum_violation(H) < 1e-10
    assert np.abs(H.reshape(4, 3, 4, 3).sum(axis=0)).max() < 1e-10  # over the other index too
    # the rule is not trivially satisfied by any matrix: a random one breaks it
    assert acoustic_sum_violation(np.random.default_rng(0).normal(size=H.shape)) > 0.1


def test_label_round_trips_through_extxyz(tmp_path, labelled):
    a, H = labelled
    b = attach_force_constants(a.copy(), H)
    assert b.arrays["hessian"].shape == (4, 36)
    ase.io.write(tmp_path / "h.extxyz", [b], format="extxyz")
    c = ase.io.read(tmp_path / "h.extxyz")
    np.testing.assert_allclose(read_force_constants(c), H, atol=1e-8)  # ASE's 8 decimals
    assert read_force_constants(a) is None or np.allclose(read_force_constants(a), H)


# ---------------------------------------------------------------------------------------------- the loss term


@pytest.fixture(scope="module")
def fc_case(zhou):
    """A level-6 MTP with random coefficients, and a rattled 2-atom hcp cell with the oracle's force constants and
    weight 1.5."""
    a = rattled_hcp(2)
    attach_force_constants(a, force_constants(zhou, a))
    a.info["weight"] = 1.5
    mtp = random_mtp(6, rcut=5.0, rmin=2.0, seed=1)
    return mtp, a, force_constant_data([a], 5.0)


def plain_term(mtp, positions, cell, species, nbrs, H_ref, weight, w_fc):
    """The force-constant term written out independently: jax.hessian of the energy."""
    n = positions.shape[0]
    e = lambda x: energy(mtp, x.reshape(n, 3), cell, species, nbrs, use_custom_vjp=False)  # noqa: E731
    Hm = jax.hessian(e)(positions.reshape(-1))
    return w_fc * weight / n * jnp.sum((Hm - H_ref) ** 2)


def test_loss_term_gradient_against_plain_autodiff_and_finite_differences(fc_case):
    """The least-squares path (residuals and their Jacobian by forward mode, J^T r = half the gradient) against
    reverse-mode autodiff of a plain implementation, and against central differences of the term."""
    mtp, _, fcs = fc_case
    fc = fcs[0]
    cfg = LossConfig(force_constant_weight=0.3)
    theta = FJ.flatten(mtp)
    p = lambda t: plain_term(FJ.unflatten(mtp, t), fc.positions, fc.cell, fc.species, fc.nbrs, fc.hessian, 1.5, 0.3)  # noqa: E731
    v_ref, g_ref = jax.jit(jax.value_and_grad(p))(theta)
    g_ref = np.asarray(g_ref)
    Hn, gn, L = force_constant_normal_equations(mtp, fcs, cfg)
    assert float(v_ref) > 0 and np.abs(g_ref).max() > 0
    np.testing.assert_allclose(L, float(v_ref), rtol=1e-12)
    np.testing.assert_allclose(2.0 * gn, g_ref, rtol=1e-8, atol=1e-10 * np.abs(g_ref).max())
    assert np.all(np.linalg.eigvalsh(Hn) > -1e-8 * np.abs(Hn).max())  # J^T J
    rng = np.random.default_rng(0)
    for k in [0, 7, len(theta) - 1, int(rng.integers(len(theta)))]:  # radial, ..., moment coefficients
        h = 1e-5 * max(1.0, abs(float(theta[k])))
        e = jnp.zeros_like(theta).at[k].set(h)
        up = force_constant_normal_equations(FJ.unflatten(mtp, theta + e), fcs, cfg)[2]
        down = force_constant_normal_equations(FJ.unflatten(mtp, theta - e), fcs, cfg)[2]
        fd = (up - down) / (2 * h)
        assert abs(fd - g_ref[k]) <= 1e-6 * np.abs(g_ref).max() + 1e-6 * abs(fd), (k, fd, g_ref[k])


def test_loss_adds_the_term_only_when_weighted(zhou, fc_case):
    """loss(..., force_constants=...) is MLIP's loss plus the term / K; weight 0 (the default) changes nothing."""
    from mtpjax.data import pack_records, records_from_atoms
    from mtpjax.oracles import label

    mtp, a, fcs = fc_case
    batches, _ = pack_records(records_from_atoms(label(zhou, [a])), 5.0)
    batches = [jax.tree.map(jnp.asarray, lb) for lb in batches]
    cfg0 = LossConfig()
    assert cfg0.force_constant_weight == 0.0
    f = jax.jit(lambda m, fcs, cfg: loss(m, batches, cfg, 2, force_constants=fcs), static_argnums=2)
    base = float(f(mtp, [], cfg0))
    assert float(f(mtp, fcs, cfg0)) == base
    cfg = LossConfig(force_constant_weight=0.3)
    term = force_constant_normal_equations(mtp, fcs, cfg)[2]
    assert term > 0
    np.testing.assert_allclose(float(f(mtp, fcs, cfg)) - base, term / 2, rtol=1e-9)
    H, g, L = force_constant_normal_equations(mtp, fcs, cfg0)
    assert L == 0.0 and not H.any() and not g.any()


def _rattled_cells(n, seed0):
    """n 4-atom hcp Mg cells (a within ±2 % of 3.21 Å), rattled by 0.08 Å, seeded from seed0."""
    out = []
    for k in range(n):
        a = bulk("Mg", "hcp", a=3.21 * (1 + np.random.default_rng(seed0 + k).uniform(-0.02, 0.02)), c=5.21)
        a = a.repeat((2, 1, 1))
        a.rattle(0.08, seed=seed0 + k)
        out.append(a)
    return out


def _fit_case(zhou):
    """The two fit tests' data: energies, forces and virials of 8 rattled hcp cells (packed at 5 Å), the force
    constants of 2 further cells to fit and of 2 held-out cells, and a level-6 starting MTP."""
    from mtpjax.basis import generate_basis
    from mtpjax.data import pack_records, records_from_atoms
    from mtpjax.fit import initial_mtp
    from mtpjax.oracles import label

    batches, _ = pack_records(records_from_atoms(label(zhou, _rattled_cells(8, 0))), 5.0)
    fc_train, fc_test = _rattled_cells(2, 100), _rattled_cells(2, 200)
    for a in fc_train + fc_test:
        attach_force_constants(a, force_constants(zhou, a))
    m0 = initial_mtp(generate_basis(6), 1, 2.3, 5.0, batches, seed=0)
    return batches, force_constant_data(fc_train, 5.0), force_constant_data(fc_test, 5.0), m0


@pytest.mark.slow
def test_tiny_fit_with_force_constants_lowers_held_out_force_constant_error(zhou):
    """Levenberg–Marquardt (ForceConstantLM) on energies, forces and virials of 8 rattled hcp cells, with the force
    constants of 2 further cells at weight 0 and 0.05: the force-constant RMSE on 2 held-out cells falls."""
    from mtpjax.fit import FitConfig, fit_models, stack_models, unstack_models
    from mtpjax.fit.loss import ForceConstantLM

    batches, tr, te, m0 = _fit_case(zhou)
    rmse = {}
    for w in (0.0, 0.05):
        cfg = FitConfig(max_steps=15, loss=LossConfig(force_constant_weight=w))
        r = fit_models(stack_models([m0]), batches, cfg, method=ForceConstantLM(cfg, tr), log=lambda *a: None)
        rmse[w] = force_constant_rmse(unstack_models(r.models)[0], te)
    assert rmse[0.05] < 0.7 * rmse[0.0], rmse
    # weight 0: ForceConstantLM is the default Levenberg–Marquardt, step for step
    cfg0 = FitConfig(max_steps=3)
    a = unstack_models(fit_models(stack_models([m0]), batches, cfg0, method=ForceConstantLM(cfg0, tr), log=lambda *a: None).models)[0]
    b = unstack_models(fit_models(stack_models([m0]), batches, cfg0, log=lambda *a: None).models)[0]
    np.testing.assert_allclose(np.asarray(a.radial_coeffs), np.asarray(b.radial_coeffs), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(np.asarray(a.moment_coeffs), np.asarray(b.moment_coeffs), rtol=1e-6, atol=1e-10)


@pytest.mark.slow
def test_lbfgs_fit_with_force_constants_lowers_held_out_force_constant_error(zhou):
    """The gradient optimisers (ForceConstantGradient through force_constant_method): L-BFGS, 40 steps, as the LM test."""
    from mtpjax.fit import FitConfig, fit_models, stack_models, unstack_models
    from mtpjax.fit.force_constants import ForceConstantGradient, force_constant_method

    batches, tr, te, m0 = _fit_case(zhou)
    rmse = {}
    for w in (0.0, 0.05):
        cfg = FitConfig(method="lbfgs", max_steps=40, loss=LossConfig(force_constant_weight=w))
        method = force_constant_method(cfg, tr)
        assert isinstance(method, ForceConstantGradient) and method.active == (w > 0)
        r = fit_models(stack_models([m0]), batches, cfg, method=method, log=lambda *a: None)
        rmse[w] = force_constant_rmse(unstack_models(r.models)[0], te)
    assert rmse[0.05] < 0.7 * rmse[0.0], rmse  # measured: 0.062 -> 0.031 eV/Å²


@pytest.mark.slow
def test_loss_gradient_path_with_force_constants(fc_case, zhou):
    """jax.grad of loss(..., force_constants=...) (reverse mode through the fast gradient and the exact Hessian) adds
    2 J^T r / K of the normal equations to the gradient without the term."""
    from mtpjax.data import pack_records, records_from_atoms
    from mtpjax.oracles import label

    mtp, a, fcs = fc_case
    batches, _ = pack_records(records_from_atoms(label(zhou, [a])), 5.0)
    batches = [jax.tree.map(jnp.asarray, lb) for lb in batches]
    cfg = LossConfig(force_constant_weight=0.3)
    theta = FJ.flatten(mtp)
    grad = jax.jit(jax.grad(lambda t, fcs: loss(FJ.unflatten(mtp, t), batches, cfg, 2, force_constants=fcs)))
    diff = np.asarray(grad(theta, fcs)) - np.asarray(grad(theta, []))
    gn = force_constant_normal_equations(mtp, fcs, cfg)[1]
    np.testing.assert_allclose(diff, 2.0 * gn / 2, rtol=1e-7, atol=1e-9 * np.abs(gn).max())


# ---------------------------------------------------------------------------------------------- the generate stage


def test_hessian_stage_cells_and_labels(zhou):
    """The stage's cells (seeded, rattled n x n x n supercells of the reference lattice) and its chunk task."""
    from mtpjax.generate.config import HessianConfig
    from mtpjax.generate.hessian import bulk_cells, hessian_task

    ref = {"a": 3.2, "c_over_a": 1.62, "omega0": 23.0}
    cfg = HessianConfig(sizes=(1, 2), copies=2, rattle=0.03)
    cells = bulk_cells("Mg", ref, cfg, seed=5)
    assert [len(a) for a in cells] == [2, 2, 16, 16]
    assert [a.info["id"] for a in cells][:2] == ["HESSIAN/hcp-n1-c0", "HESSIAN/hcp-n1-c1"]
    assert abs(cells[2].get_volume() / 16 - 3.2**3 * 1.62 * np.sqrt(3) / 4) < 1e-9  # the reference volume
    again = bulk_cells("Mg", ref, cfg, seed=5)
    assert all(np.array_equal(x.positions, y.positions) for x, y in zip(cells, again))  # seeded
    assert not np.array_equal(cells[0].positions, cells[1].positions)  # copies differ
    fcc = bulk_cells("Mg", ref, HessianConfig(lattice="fcc", sizes=(1,), copies=1, rattle=0.0), seed=5)[0]
    assert abs(fcc.get_volume() - 23.0) < 1e-9
    out = hessian_task({"oracle": zhou, "structures": cells[:2], "dmin": 1.5, "delta": 1e-3})
    for a, b in zip(out, cells[:2]):
        np.testing.assert_allclose(read_force_constants(a), force_constants(zhou, b), atol=1e-12)
    squeezed = cells[0].copy()
    squeezed.positions[1] = squeezed.positions[0] + [0.5, 0, 0]
    assert hessian_task({"oracle": zhou, "structures": [squeezed], "dmin": 1.5, "delta": 1e-3})[0].reason == "invalid_structure"


@pytest.mark.slow
def test_generate_hessian_stage_writes_labelled_cells(tmp_path, zhou):
    from mtpjax.generate import pipeline
    from mtpjax.generate.config import SUBSETS, GenerateConfig, config_from_dict
    from mtpjax.errors import ConfigError

    assert "HESSIAN" not in GenerateConfig().subsets and "HESSIAN" not in SUBSETS
    tiny = {"element": "Mg", "seed": 3, "oracle": {"type": "zhou"}, "subsets": ["HESSIAN"],
            "hessian": {"sizes": [1], "copies": 2, "rattle": 0.03}}
    with pytest.raises(ConfigError, match="hessian.lattice"):
        config_from_dict({**tiny, "hessian": {"lattice": "diamond"}})
    m = pipeline.run(config_from_dict(tiny), tmp_path, progress=False)
    s = m["subsets"]["HESSIAN"]
    assert s["structures"] == 2 and s["atoms"] == 4 and s["force_constants"].startswith("jax")
    assert s["max_acoustic_sum_violation"] < 1e-8
    got = ase.io.read(tmp_path / "HESSIAN.extxyz", ":")
    assert [a.info["id"] for a in got] == ["HESSIAN/hcp-n1-c0", "HESSIAN/hcp-n1-c1"]
    for a in got:
        H = read_force_constants(a)
        assert H.shape == (6, 6) and a.calc is not None  # also labelled with energy, forces, stress
        # the stored label is the oracle's Hessian of the stored cell (rounded by extxyz's 8 decimals), and the
        # cell is the oracle's own relaxed hcp, rattled
        np.testing.assert_allclose(H, force_constants(zhou, a), atol=1e-7)
        assert abs(a.cell.cellpar()[0] - m["reference"]["a"]) < 1e-6
    assert "HESSIAN" in (tmp_path / "summary.md").read_text()
