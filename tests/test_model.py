"""The MTP model against independent references: MLIP's golden outputs, finite differences,
invariances, extensivity, and plain autodiff for the hand-written VJPs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk
from jax.test_util import check_grads

from conftest import GOLDEN, need, random_mtp
from mtpjax.contraction import basic_moments, scalar_basis
from mtpjax.evaluate import Evaluator
from mtpjax.io import read_cfg
from mtpjax.model import PAIR_CHUNK, PAIR_CHUNK_BYTES, PAIR_CHUNK_SMALL_BYTES, default_chunks, energy, energy_forces_virial, load_mtp
from mtpjax.neighbors import neighbour_list


def padded_inputs(atoms, cutoff, types=None, n_atoms_pad=None, n_nb=None):
    """Model inputs (jnp) for an ASE Atoms: positions, cell, species, neighbours."""
    nl = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff, n_atoms_pad=n_atoms_pad, n_nb=n_nb)
    n, n_pad = len(atoms), nl.index.shape[0]
    pos = np.zeros((n_pad, 3))
    pos[:n] = atoms.positions
    sp = np.full(n_pad, -1)
    sp[:n] = np.zeros(n, int) if types is None else types
    return jnp.asarray(pos), jnp.asarray(atoms.cell.array), jnp.asarray(sp), jax.tree.map(jnp.asarray, nl)


def rattled_hcp(reps=(2, 2, 2), rattle=0.1, strain=0.03, seed=0):
    a = bulk("Mg", "hcp", a=3.19, c=5.18).repeat(reps)
    rng = np.random.default_rng(seed)
    F = np.eye(3) + rng.uniform(-strain, strain, (3, 3))
    a.set_cell(a.cell.array @ F, scale_atoms=True)
    a.positions += rng.normal(scale=rattle, size=a.positions.shape)
    return a


# --------------------------------------------------------------------------------------------------
# MLIP's own outputs


@pytest.mark.parametrize("name", ["pub_l08_s1_rc5", "pub_l16_s1_rc6p5"])
@pytest.mark.parametrize("custom", [True, False], ids=["custom_vjp", "autodiff"])
def test_golden_mlip_parity(name, custom):
    """Every golden configuration: energy to 1e-9 eV, forces and PlusStress to MLIP's printed digits."""
    mtp = load_mtp(need(GOLDEN / f"{name}.almtp"))
    inputs = read_cfg(need(GOLDEN / f"{name}_in.cfg"))
    outputs = read_cfg(GOLDEN / f"{name}_out.cfg")
    results = Evaluator(mtp, use_custom_vjp=custom).many([(c.positions, c.cell, True, c.types) for c in inputs])
    assert len(results) == len(outputs) == 10
    for k, (r, cout) in enumerate(zip(results, outputs)):
        assert abs(r.energy - cout.energy) < 1e-9, (k, r.energy, cout.energy)
        assert np.abs(r.forces - cout.forces).max() <= 0.5e-6 + 1e-9, k
        assert np.abs(r.plus_stress - cout.plus_stress).max() <= 0.5e-5 + 1e-9, k
    # a test that can fail: a perturbed coefficient breaks parity
    bad = mtp.__class__(**{**mtp.__dict__, "moment_coeffs": mtp.moment_coeffs.at[-1].multiply(1.001)})
    r0 = Evaluator(bad, use_custom_vjp=custom).many([(inputs[0].positions, inputs[0].cell, True, inputs[0].types)])[0]
    assert abs(r0.energy - outputs[0].energy) > 1e-9


# --------------------------------------------------------------------------------------------------
# finite differences


def _energy_host(ev, positions, cell, types):
    return ev(positions, cell, True, types).energy


@pytest.mark.parametrize("n_species", [1, 2])
def test_forces_are_finite_differences(n_species):
    mtp = random_mtp(8, n_species=n_species, rcut=5.0, seed=3)
    ev = Evaluator(mtp)
    at = rattled_hcp((2, 2, 1), seed=1)
    types = np.random.default_rng(0).integers(0, n_species, len(at))
    r = ev(at.positions, at.cell.array, True, types)
    h = 1e-5
    fd = np.zeros_like(r.forces)
    for i in range(len(at)):
        for a in range(3):
            p = at.positions.copy()
            p[i, a] += h
            ep = _energy_host(ev, p, at.cell.array, types)
            p[i, a] -= 2 * h
            em = _energy_host(ev, p, at.cell.array, types)
            fd[i, a] = -(ep - em) / (2 * h)
    assert np.abs(r.forces).max() > 1e-2  # a real test: forces are not all ~0
    np.testing.assert_allclose(r.forces, fd, atol=1e-6)


def test_virial_is_finite_difference_of_strain():
    mtp = random_mtp(16, rcut=6.5, seed=5)
    ev = Evaluator(mtp)
    at = rattled_hcp((1, 1, 1), rattle=0.15, strain=0.05, seed=2)  # 2 atoms: many periodic images
    r = ev(at.positions, at.cell.array, True, [0, 0])
    h = 1e-6
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            E = []
            for s in (+1, -1):
                F = np.eye(3)
                F[a, b] += s * h
                E.append(_energy_host(ev, at.positions @ F, at.cell.array @ F, [0, 0]))
            fd[b, a] = -(E[0] - E[1]) / (2 * h)  # virial = -dE/dF^T
    assert np.abs(r.virial).max() > 1e-2
    np.testing.assert_allclose(r.virial, fd, atol=1e-6 * max(1, np.abs(fd).max()))
    np.testing.assert_allclose(r.virial, r.virial.T, atol=1e-9)  # rotational invariance => symmetric


# --------------------------------------------------------------------------------------------------
# symmetry and extensivity


def _random_rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_invariance_rotation_translation_permutation():
    mtp = random_mtp(16, n_species=2, rcut=5.5, seed=11)
    ev = Evaluator(mtp)
    at = rattled_hcp((2, 2, 2), seed=4)
    rng = np.random.default_rng(1)
    types = rng.integers(0, 2, len(at))
    r0 = ev(at.positions, at.cell.array, True, types)
    Q = _random_rotation(7)
    r_rot = ev(at.positions @ Q.T, at.cell.array @ Q.T, True, types)
    assert abs(r_rot.energy - r0.energy) < 1e-9 * max(1, abs(r0.energy))
    np.testing.assert_allclose(r_rot.forces, r0.forces @ Q.T, atol=1e-9)
    np.testing.assert_allclose(r_rot.virial, Q @ r0.virial @ Q.T, atol=1e-8)
    r_tr = ev(at.positions + np.array([0.37, -1.2, 2.9]), at.cell.array, True, types)
    assert abs(r_tr.energy - r0.energy) < 1e-9 * max(1, abs(r0.energy))
    perm = rng.permutation(len(at))
    r_perm = ev(at.positions[perm], at.cell.array, True, types[perm])
    assert abs(r_perm.energy - r0.energy) < 1e-9 * max(1, abs(r0.energy))
    np.testing.assert_allclose(r_perm.forces, r0.forces[perm], atol=1e-9)
    # swapping the species labels does change the energy (the test can fail)
    r_swap = ev(at.positions, at.cell.array, True, 1 - types)
    assert abs(r_swap.energy - r0.energy) > 1e-6


def test_extensive_supercell():
    mtp = random_mtp(12, rcut=5.0, seed=2)
    ev = Evaluator(mtp)
    at = rattled_hcp((1, 1, 1), rattle=0.1, seed=3)
    big = at.repeat((2, 2, 2))
    e1 = ev(at.positions, at.cell.array, True, np.zeros(len(at))).energy
    r8 = ev(big.positions, big.cell.array, True, np.zeros(len(big)))
    assert abs(r8.energy - 8 * e1) < 1e-9 * abs(8 * e1)
    np.testing.assert_allclose(r8.site_energies.sum(), r8.energy, rtol=1e-12)


def test_tiny_cell_many_images_and_isolated_atoms():
    """A 1-atom bcc cell at an 8.2 Å cutoff (hundreds of images) equals the same crystal as a 2x2x2 supercell;
    an isolated atom gets exactly its species energy and zero force."""
    mtp = random_mtp(8, rcut=8.2, seed=9)
    ev = Evaluator(mtp)
    prim = bulk("Mg", "bcc", a=3.6)
    nl = neighbour_list(prim.positions, prim.cell.array, True, 8.2)
    assert nl.mask.sum() > 100
    e1 = ev(prim.positions, prim.cell.array, True, [0]).energy
    big = prim.repeat((2, 2, 2))
    e8 = ev(big.positions, big.cell.array, True, np.zeros(8)).energy
    assert abs(e8 - 8 * e1) < 1e-9 * abs(e8)
    # dimer far from a third atom, no periodicity
    pos = np.array([[0.0, 0, 0], [2.9, 0.3, 0.1], [30.0, 0, 0]])
    r = ev(pos, None, False, [0, 0, 0])
    assert r.site_energies[2] == pytest.approx(float(mtp.species_coeffs[0]), abs=1e-14)
    assert np.all(r.forces[2] == 0)
    np.testing.assert_allclose(r.forces[0], -r.forces[1], atol=1e-12)


# --------------------------------------------------------------------------------------------------
# the hand-written VJPs against plain autodiff and finite differences


@pytest.mark.parametrize("level", [8, pytest.param(16, marks=pytest.mark.slow)])
def test_custom_vjp_kernels_check_grads(level):
    mtp = random_mtp(level, seed=1)
    plan = mtp.plan
    rng = np.random.default_rng(0)
    basic = jnp.asarray(rng.normal(size=(plan.n_basic, 3)))
    check_grads(lambda b: scalar_basis(plan, b, True), (basic,), order=2, modes=["rev"], atol=1e-5, rtol=1e-5)
    u = rng.normal(size=(3, 3, 5))
    u = jnp.asarray(u / np.linalg.norm(u, axis=0))
    f = jnp.asarray(rng.normal(size=(plan.n_radial, 3, 5)))
    check_grads(lambda a, b: basic_moments(plan, a, b, True), (f, u), order=2, modes=["rev"], atol=1e-5, rtol=1e-5)
    gb = jnp.asarray(rng.normal(size=(plan.n_basic, 3)))
    w1 = jax.vjp(lambda a, b: basic_moments(plan, a, b, True), f, u)[1](gb)
    w2 = jax.vjp(lambda a, b: basic_moments(plan, a, b, False), f, u)[1](gb)
    for x1, x2 in zip(w1, w2):
        np.testing.assert_allclose(x1, x2, rtol=1e-12, atol=1e-12)
    g = jnp.asarray(rng.normal(size=(plan.n_scalars, 3)))
    v1 = jax.vjp(lambda b: scalar_basis(plan, b, True), basic)[1](g)[0]
    v2 = jax.vjp(lambda b: scalar_basis(plan, b, False), basic)[1](g)[0]
    np.testing.assert_allclose(v1, v2, rtol=1e-12, atol=1e-12)


def test_parameter_gradients_first_and_second_order():
    """dE/dθ and d(sum F²)/dθ (reverse over reverse, as a force-matching loss needs) agree between the custom
    VJP and plain autodiff, and with a finite difference."""
    mtp = random_mtp(10, n_species=2, rcut=5.0, seed=4)
    at = rattled_hcp((2, 1, 1), seed=6)
    args = padded_inputs(at, mtp.cutoff, np.array([0, 1, 1, 0]))

    def force_loss(m, custom):
        _, f, v = energy_forces_virial(m, *args, use_custom_vjp=custom)
        return jnp.sum(f**2) + 1e-2 * jnp.sum(v**2)

    for fn in (lambda m, c: energy(m, *args, use_custom_vjp=c), force_loss):
        grad = jax.jit(jax.grad(fn), static_argnums=1)
        g1, g2 = grad(mtp, True), grad(mtp, False)
        for leaf1, leaf2 in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
            np.testing.assert_allclose(leaf1, leaf2, rtol=1e-9, atol=1e-10)
    g = jax.jit(jax.grad(force_loss), static_argnums=1)(mtp, True).radial_coeffs
    h = 1e-6
    idx = (1, 0, 1, 3)
    plus = mtp.__class__(**{**mtp.__dict__, "radial_coeffs": mtp.radial_coeffs.at[idx].add(h)})
    minus = mtp.__class__(**{**mtp.__dict__, "radial_coeffs": mtp.radial_coeffs.at[idx].add(-h)})
    loss = jax.jit(force_loss, static_argnums=1)
    fd = (loss(plus, True) - loss(minus, True)) / (2 * h)
    assert abs(g[idx]) > 1e-3
    assert float(g[idx]) == pytest.approx(float(fd), rel=1e-5)


def test_jit_vmap_over_padded_batch():
    mtp = random_mtp(8, rcut=5.0, seed=8)
    structs = [rattled_hcp((2, 1, 1), seed=s) for s in range(2)] + [bulk("Mg", "fcc", a=4.5).repeat((1, 1, 2))]
    batch = [padded_inputs(a, mtp.cutoff, n_atoms_pad=8, n_nb=64) for a in structs]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *batch)
    e, f, v = jax.jit(jax.vmap(energy_forces_virial, in_axes=(None, 0, 0, 0, 0)))(mtp, *stacked)
    single = jax.jit(energy_forces_virial)
    for k, a in enumerate(structs):
        e1, f1, v1 = single(mtp, *padded_inputs(a, mtp.cutoff, n_atoms_pad=8, n_nb=32))
        assert float(e[k]) == pytest.approx(float(e1), rel=1e-12)
        np.testing.assert_allclose(f[k][: len(a)], f1[: len(a)], atol=1e-11)
        np.testing.assert_allclose(v[k], v1, atol=1e-10)


def test_level24_compiles_quickly():
    """Compiling level 24 (864 basis functions) takes seconds, not minutes: measured in this process's CPU time (about
    10 s on a 2-core CPU), which other work on a shared machine does not stretch as it does wall time (a loaded
    machine took 35 s of wall time)."""
    mtp = random_mtp(24, rcut=5.0, seed=0)
    at = rattled_hcp((2, 2, 2), seed=0)
    args = padded_inputs(at, mtp.cutoff)
    t0 = time.process_time()
    jax.jit(energy_forces_virial).lower(mtp, *args).compile()
    assert time.process_time() - t0 < 30.0


def test_chunkings_agree():
    """The pair and contraction stages may be chunked differently; every choice gives the same numbers."""
    mtp = random_mtp(12, n_species=2, rcut=5.5, seed=12)
    at = rattled_hcp((3, 2, 2), seed=9)  # 24 atoms
    types = np.random.default_rng(2).integers(0, 2, len(at))
    args = padded_inputs(at, mtp.cutoff, types)
    ref = jax.jit(partial(energy_forces_virial, chunk=args[0].shape[0]))(mtp, *args)
    for chunk in [None, 4, (4, 12), (8, 16)]:
        out = jax.jit(partial(energy_forces_virial, chunk=chunk))(mtp, *args)
        assert float(out[0]) == pytest.approx(float(ref[0]), rel=1e-13)
        np.testing.assert_allclose(out[1], ref[1], atol=1e-12)
        np.testing.assert_allclose(out[2], ref[2], atol=1e-11)
    with pytest.raises(ValueError, match="multiple"):
        energy_forces_virial(mtp, *args, chunk=(8, 12))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU rule")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("level", [8, 16, 24])
def test_default_chunks_rule(level, threads, monkeypatch):
    """The CPU chunk rule (docs/benchmarks/chunks.md): multiples of 4 atoms, the contraction chunk a multiple of the
    pair chunk, no chunk beyond the (rounded-up) atoms; with several threads the pair working set within the small
    budget whenever 4 atoms fit in it, else within the large one unless only 4 atoms are left; with one thread
    within 512 KiB; the cases measured to matter."""
    import mtpjax.model as model

    monkeypatch.setattr(model, "cpu_threads", lambda: threads)
    plan = random_mtp(level, rcut=5.0, seed=0).plan
    bytes_per_pair_atom = 32 * len(plan.monomials)
    cap = model.SERIAL_CHUNK if threads == 1 else PAIR_CHUNK
    for n in (1, 2, 7, 24, 100, 432, 4056):
        for n_nb in (1, 18, 21, 56, 64, 106, 224):
            c_pairs, c_atoms = default_chunks(plan, n, n_nb)
            assert c_pairs % 4 == 0 and c_atoms % c_pairs == 0, (n, n_nb)
            assert c_pairs <= min(cap, -(-n // 4) * 4) and c_atoms <= max(64, c_pairs)
            ws = bytes_per_pair_atom * n_nb
            if threads == 1:
                budget = model.SERIAL_CHUNK_BYTES
            else:
                budget = PAIR_CHUNK_SMALL_BYTES if 4 * ws <= PAIR_CHUNK_SMALL_BYTES else PAIR_CHUNK_BYTES
            assert c_pairs * ws <= budget or c_pairs == 4, (n, n_nb, c_pairs)
            assert default_chunks(plan, n, n_nb, pair_chunk=12)[0] == min(12, n)
    if level == 16:  # level 16 at 6.5 Å: 56 slots on the exact list, 64 in MD
        # two threads: 4-atom chunks were 1.2-1.5x slower; one thread: they are the fastest
        assert default_chunks(plan, 432, 56)[0] == default_chunks(plan, 432, 64)[0] == (24 if threads > 1 else 4)
        assert default_chunks(plan, 432, 18)[0] == 8  # level 16 at 5 Å: small chunks stay fastest


def test_cpu_threads_reads_xla_flags(monkeypatch):
    from mtpjax.model import cpu_threads

    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    assert cpu_threads() == 1
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert cpu_threads() == len(os.sched_getaffinity(0))
    if shutil.which("taskset"):  # a process pinned to one core sees one thread, whatever the machine has
        out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c",
                              "from mtpjax.model import cpu_threads; print(cpu_threads())"],
                             capture_output=True, text=True, check=True, env={**os.environ, "XLA_FLAGS": ""})
        assert out.stdout.split()[-1] == "1"


@pytest.mark.parametrize("level", [8, 16])
def test_sparse_basis_derivatives_equal_autodiff(level):
    """basis_derivatives (propagated through the moments' static sparsity) against dense forward-mode Jacobian and
    Hessian of the plain contraction, atom by atom."""
    from conftest import random_mtp
    from mtpjax.contraction import all_moments, basis_derivatives

    plan = random_mtp(level, rcut=5.0, rmin=1.5, seed=0).plan
    rng = np.random.default_rng(level)
    n_atoms = 3
    M = jnp.asarray(rng.normal(size=(plan.n_basic, n_atoms)))
    xi = jnp.asarray(rng.normal(size=(plan.n_scalars, n_atoms)))
    B, Gt, g, K = jax.jit(lambda m, x: basis_derivatives(plan, m, x))(M, xi)
    for i in range(n_atoms):
        basis = lambda m: all_moments(plan, m[:, None])[plan.mapping][:, 0]  # noqa: E731
        G_ref = jax.jacfwd(basis)(M[:, i])
        H_ref = jax.hessian(lambda m: xi[:, i] @ basis(m))(M[:, i])
        np.testing.assert_allclose(B[:, i], basis(M[:, i]), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(Gt[:, :, i].T, G_ref, rtol=0, atol=1e-12 * float(jnp.abs(G_ref).max()))
        np.testing.assert_allclose(g[:, i], xi[:, i] @ G_ref, rtol=0, atol=1e-12 * float(jnp.abs(G_ref).max()) * plan.n_scalars)
        np.testing.assert_allclose(K[:, :, i], H_ref, rtol=0, atol=1e-11 * float(jnp.abs(H_ref).max()))
        assert float(jnp.abs(H_ref).max()) > 0
