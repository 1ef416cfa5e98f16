"""The EAM oracles' full-list custom VJP (mtpjax.oracles.eam.full_list_energy_fn), which the MD integrators use for
the forces, against plain autodiff of mtpjax.potential.energy and against finite differences."""
from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

import mtpjax  # noqa: F401  (float64 before jax)
from conftest import SHARED, need

import jax
import jax.numpy as jnp

from mtpjax.md import energy_fn
from mtpjax.oracles import TabulatedEAM, ZhouEAM
from mtpjax.oracles.eam import full_list_energy_fn
from mtpjax.potential import energy


def triclinic(atoms, seed=1):
    """A rattled, sheared copy (a general triclinic cell, narrower than twice the cutoffs: many images per pair)."""
    a = atoms.copy()
    a.set_cell(a.cell.array @ np.array([[1.0, 0.05, -0.03], [0.02, 1.0, 0.04], [-0.05, 0.03, 1.02]]), scale_atoms=True)
    a.rattle(0.08, seed=seed)
    return a


CASES = {
    "tabulated Mg (eam.fs)": lambda: (TabulatedEAM.from_file(need(SHARED / "data/potentials/Mg_mm.eam.fs")),
                                      triclinic(bulk("Mg", "hcp", a=3.21, c=5.21).repeat((2, 1, 1))), None),
    "Zhou Al-Mg alloy": lambda: (ZhouEAM(["Al", "Mg"]), triclinic(bulk("Al", "fcc", a=4.05, cubic=True)),
                                 np.array([0, 1, 0, 1])),
}


@pytest.mark.parametrize("case", CASES)
def test_full_list_energy_matches_autodiff_and_finite_differences(case):
    """On the MD's own Verlet list (pairs beyond the cutoff within the skin, padding slots, many images), the energy
    equals the plain one, its position and cell gradients equal plain autodiff's to 1e-10, and central differences
    of the energy (1e-5 Å) give the forces to 1e-7 eV/Å."""
    pot, atoms, types = CASES[case]()
    types = np.zeros(len(atoms), int) if types is None else types
    _, nfn = energy_fn(pot, types)
    R, cell = jnp.asarray(atoms.positions), jnp.asarray(atoms.cell.array)
    nbrs = nfn.allocate(R, cell=cell)
    assert not bool(jnp.all(nbrs.neighbours.mask))  # padding slots present
    T = jnp.asarray(types)
    fast = full_list_energy_fn(pot)
    e1, (g1, c1) = jax.jit(jax.value_and_grad(fast, (0, 1)))(R, cell, T, nbrs.neighbours)
    e0, (g0, c0) = jax.value_and_grad(lambda R, c: energy(pot, R, c, T, nbrs.neighbours), (0, 1))(R, cell)
    assert abs(float(e1 - e0)) < 1e-10
    np.testing.assert_allclose(g1, g0, atol=1e-10)
    np.testing.assert_allclose(c1, c0, atol=1e-10)
    h = 1e-5
    e = jax.jit(lambda R: fast(R, cell, T, nbrs.neighbours))
    for i, k in [(0, 0), (1, 2), (len(atoms) - 1, 1)]:
        d = jnp.zeros_like(R).at[i, k].set(h)
        assert abs((float(e(R + d)) - float(e(R - d))) / (2 * h) - float(g1[i, k])) < 1e-7


def test_md_energy_fn_uses_it_only_when_asked_and_first_order_only():
    """energy_fn(full_list_forces=True) gives the same forces as the default; its energy is reverse-mode only
    (forward mode raises), so the default energy_fn stays fully differentiable (forward mode works there)."""
    pot = ZhouEAM("Mg")
    atoms = triclinic(bulk("Mg", "hcp", a=3.21, c=5.21))
    R, cell = jnp.asarray(atoms.positions), jnp.asarray(atoms.cell.array)
    plain, nfn = energy_fn(pot, atoms)
    fast, _ = energy_fn(pot, atoms, full_list_forces=True)
    nbrs = nfn.allocate(R, cell=cell)
    np.testing.assert_allclose(jax.jit(jax.grad(fast))(R, nbrs), jax.jit(jax.grad(plain))(R, nbrs), atol=1e-10)
    tangent = jnp.ones_like(R)
    assert np.isfinite(float(jax.jit(lambda x: jax.jvp(lambda y: plain(y, nbrs), (x,), (tangent,))[1])(R)))
    with pytest.raises(TypeError):
        jax.jvp(lambda x: fast(x, nbrs), (R,), (tangent,))
