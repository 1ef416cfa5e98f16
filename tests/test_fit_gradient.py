"""The fast loss gradient (mtpjax.fit.gradient) against plain autodiff of the loss and finite differences."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk

from conftest import random_mtp
from mtpjax import fit as F
from mtpjax.fit import gradient as FG
from mtpjax.data import Record, pack_for_devices, pack_records


def _records(n_species: int, seed: int = 0):
    """Rattled cells (4 to 24 atoms, more than one gradient chunk on CPU) with random labels, some missing."""
    rng = np.random.default_rng(seed)
    cells = [bulk("Mg", "hcp", a=3.2, c=5.2).repeat((2, 2, 3)), bulk("Mg", "bcc", a=3.6).repeat((2, 1, 1)),
             bulk("Mg", "fcc", a=4.5).repeat((1, 1, 2)), bulk("Mg", "hcp", a=3.1, c=5.0).repeat((2, 1, 1))]
    out = []
    for k, a in enumerate(cells):
        a.positions += rng.normal(scale=0.15, size=a.positions.shape)
        n = len(a)
        types = rng.integers(0, n_species, n)
        out.append(Record(f"s{k}", a.positions, a.cell.array, np.array([True] * 3), types,
                          energy=None if k == 2 else -1.5 * n + rng.normal(),
                          forces=None if k == 1 else rng.normal(scale=0.5, size=(n, 3)),
                          virial=None if k == 3 else rng.normal(size=(3, 3)),
                          weight=1.0 + 0.5 * k, subset="X"))
    return out


def _theta(m):
    return (m.radial_coeffs, m.species_coeffs, m.moment_coeffs)


def _gradients(mtp, batches, cfg, n):
    import dataclasses

    fast_cfg, plain_cfg = cfg, dataclasses.replace(cfg, fast_gradient=False)
    f = jax.jit(jax.value_and_grad(lambda t: F.loss(F.with_trainable(mtp, t), batches, fast_cfg, n)))
    p = jax.jit(jax.value_and_grad(lambda t: F.loss(F.with_trainable(mtp, t), batches, plain_cfg, n)))
    return f(_theta(mtp)), p(_theta(mtp))


@pytest.mark.parametrize("level, n_species, powers, chunk", [(8, 1, (1.0, 0.0), None), (8, 1, (1.0, 0.0), 12),
                                                             (12, 2, (2.0, 1.0), 8)])
def test_fast_gradient_equals_autodiff(level, n_species, powers, chunk, monkeypatch):
    """Labels partly missing, per-structure weights, MLIP's and other normalisations; one chunk of atoms or several
    (with padding)."""
    if chunk:
        monkeypatch.setattr(FG, "gradient_chunk", lambda *a: chunk)
    mtp = random_mtp(level, n_species=n_species, rcut=5.0, seed=4)
    records = _records(n_species)
    batches, _ = pack_records(records, mtp.cutoff)
    batches = [jax.tree.map(jnp.asarray, lb) for lb in batches]
    cfg = F.LossConfig(energy_power=powers[0], force_power=powers[1])
    (vf, gf), (vp, gp) = _gradients(mtp, batches, cfg, len(records))
    assert float(vf) == pytest.approx(float(vp), rel=1e-13)
    for a, b, name in zip(gf, gp, ("radial", "species", "moment")):
        scale = float(jnp.max(jnp.abs(b)))
        assert scale > 0, name
        assert float(jnp.max(jnp.abs(a - b))) < 1e-10 * scale, name


def test_fast_gradient_against_finite_differences():
    mtp = random_mtp(8, rcut=5.0, seed=2)
    records = _records(1, seed=1)
    batches, _ = pack_records(records, mtp.cutoff)
    batches = [jax.tree.map(jnp.asarray, lb) for lb in batches]
    cfg = F.LossConfig()
    fn = jax.jit(lambda t: F.loss(F.with_trainable(mtp, t), batches, cfg, len(records)))
    g = jax.jit(jax.grad(lambda t: F.loss(F.with_trainable(mtp, t), batches, cfg, len(records))))(_theta(mtp))
    theta = _theta(mtp)
    rng = np.random.default_rng(0)
    for leaf in range(3):
        for _ in range(3):
            idx = tuple(int(rng.integers(0, s)) for s in theta[leaf].shape)
            h = 1e-5 * max(1.0, abs(float(theta[leaf][idx])))

            def shifted(d):
                return tuple(x.at[idx].add(d) if k == leaf else x for k, x in enumerate(theta))

            fd = (float(fn(shifted(h))) - float(fn(shifted(-h)))) / (2 * h)
            assert float(g[leaf][idx]) == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_fast_gradient_on_device_stacked_batches():
    """The vmapped (one group per device) loss has the same fast gradient as the plain one."""
    mtp = random_mtp(8, rcut=5.0, seed=5)
    records = _records(1, seed=2)
    stacked, _ = pack_for_devices(records, mtp.cutoff, 2)
    batches = [jax.tree.map(jnp.asarray, stacked)]
    (vf, gf), (vp, gp) = _gradients(mtp, batches, F.LossConfig(), len(records))
    assert float(vf) == pytest.approx(float(vp), rel=1e-13)
    for a, b in zip(gf, gp):
        assert float(jnp.max(jnp.abs(a - b))) < 1e-10 * float(jnp.max(jnp.abs(b)))
