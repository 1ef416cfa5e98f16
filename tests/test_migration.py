"""Vacancy migration (mtpjax.migration): the JAX string method against ASE's climbing-image NEB, mtpjax's EAM against
ASE's own EAM calculator, LJ argon against the reference of ../shared/README.md, forward against backward."""
from pathlib import Path

import numpy as np
import pytest

from mtpjax import migration as M
from mtpjax.oracles.eam_tabulated import TabulatedEAM
from mtpjax.oracles.lj import LennardJones

EAM_FILE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "potentials" / "Mg_mm.eam.fs"
EPS = 0.01032  # eV: argon's epsilon (../shared/README.md)
#: fcc LJ (2.5 sigma, unshifted) lattice parameter (Å) relaxed by relaxed_bulk (fixed here: tests stay quick).
A_LJ = 5.268628752
#: hcp lattice of the Sun EAM (Å) relaxed by relaxed_bulk.
A_MG, C_MG = 3.184214159, 5.184427524

needs_eam = pytest.mark.skipif(not EAM_FILE.exists(), reason="the Sun 2006 Mg EAM file is not in ../shared")


def eam_pair():
    from ase.calculators.eam import EAM

    return TabulatedEAM.from_file(EAM_FILE), (lambda: EAM(potential=str(EAM_FILE)))


@pytest.fixture(scope="module")
def lj_small():
    """LJ fcc 2x2x2 cubic minus one (31 atoms), relaxed end points."""
    lj = LennardJones()
    perfect = M.supercell("Ar", "fcc", A_LJ, None, 2)
    i, f, k = M.relaxed_hop(lj, perfect)
    return lj, i, f


def test_hop_structures():
    """The hcp basal hop stays in its plane at distance a, the non-basal one leaves it at sqrt(a²/3 + c²/4); the fcc
    hop has length a/sqrt(2); one atom fewer; the same atom order in both states."""
    a, c = 3.2, 5.2
    perfect = M.supercell("Mg", "hcp", a, c, (3, 3, 2))
    for hop, length, dz in (("basal", a, 0.0), ("nonbasal", np.sqrt(a * a / 3 + c * c / 4), c / 2)):
        i, f, k = M.vacancy_hop(perfect, 0, hop)
        d = f.positions[k] - i.positions[k]
        assert len(i) == len(f) == len(perfect) - 1
        assert np.linalg.norm(d) == pytest.approx(length, abs=1e-9)
        assert abs(d[2]) == pytest.approx(dz, abs=1e-9)
        others = np.delete(np.arange(len(i)), k)
        assert np.allclose(i.positions[others], f.positions[others])
    i, f, k = M.vacancy_hop(M.supercell("Ar", "fcc", 5.0, None, 2))
    assert np.linalg.norm(f.positions[k] - i.positions[k]) == pytest.approx(5.0 / np.sqrt(2), abs=1e-9)
    with pytest.raises(M.MigrationError):
        M.nearest_neighbour(perfect, 0, "sideways")


def test_string_equals_ase_ci_neb_lj(lj_small):
    """The JAX climbing string on LJ fcc (31 atoms, 5 images) gives ASE's CI-NEB barrier within 2e-5 eV (2e-3 eps),
    and equal forward and backward barriers (the end points are equivalent), both ~6.46 eps in this small cell."""
    lj, i, f = lj_small
    neb = M.neb_barrier(lj, i, f, n_images=5)
    string = M.string_barrier(lj, i, f, n_images=5)
    assert string.barrier == pytest.approx(neb.barrier, abs=2e-5)
    assert neb.barrier == pytest.approx(neb.reverse_barrier, abs=1e-6)
    assert string.barrier == pytest.approx(string.reverse_barrier, abs=1e-6)
    assert 6.0 < neb.barrier / EPS < 7.0
    # the same top image (the string's images sit at equal arc length, NEB's not exactly: only the top is compared)
    assert np.argmax(string.energies) == np.argmax(neb.energies) == 3


def test_string_backwards(lj_small):
    """The string from the final to the initial state gives the same barrier (symmetry of the hop)."""
    lj, i, f = lj_small
    fwd = M.string_barrier(lj, i, f, n_images=3)
    back = M.string_barrier(lj, f, i, n_images=3)
    assert back.barrier == pytest.approx(fwd.barrier, abs=1e-5)
    assert np.allclose(back.energies[::-1], fwd.energies, atol=1e-5)


def test_reparametrise_equal_arc_length():
    """Images of a non-uniform straight path come out equally spaced; the climber and the end points stay."""
    import jax.numpy as jnp

    t = np.array([0.0, 0.05, 0.1, 0.7, 0.8, 1.0])
    X = jnp.asarray(t[:, None, None] * np.ones((1, 2, 3)))
    out = np.asarray(M.reparametrise(X, jnp.asarray(-1)))
    assert np.allclose(out[:, 0, 0], np.linspace(0, 1, 6), atol=1e-12)
    out = np.asarray(M.reparametrise(X, jnp.asarray(3)))
    assert np.allclose(out[:, 0, 0], [0, 0.7 / 3, 1.4 / 3, 0.7, 0.85, 1.0], atol=1e-12)


@needs_eam
@pytest.mark.parametrize("hop", M.HCP_HOPS)
def test_eam_hop_vs_ase_eam_small(hop):
    """Sun 2006 EAM, hcp 2x2x2 (15 atoms), one climbing image: mtpjax's TabulatedEAM (end points, CI-NEB) against
    ASE's own EAM calculator (independent code: forces at the end points, CI-NEB to 5e-3 eV/Å), within 1 meV; forward = backward. (The JAX string
    on the EAM: the slow test.)"""
    pot, ase_eam = eam_pair()
    perfect = M.supercell("Mg", "hcp", A_MG, C_MG, 2)
    i, f, _ = M.relaxed_hop(pot, perfect, 0, hop)
    for end in (i, f):  # mtpjax's end points are minima of ASE's EAM too
        end = end.copy()
        end.calc = ase_eam()
        assert np.abs(end.get_forces()).max() < 2e-3
    ref = M.neb_barrier(ase_eam, i, f, n_images=1, fmax=5e-3)  # ASE's EAM is slow (~0.1 s a call here)
    neb = M.neb_barrier(pot, i, f, n_images=1)
    assert neb.barrier == pytest.approx(ref.barrier, abs=1e-3)
    assert ref.barrier == pytest.approx(ref.reverse_barrier, abs=1e-4)
    assert neb.barrier == pytest.approx(neb.reverse_barrier, abs=1e-4)


@needs_eam
@pytest.mark.slow
def test_eam_basal_nonbasal_vs_ase_eam():
    """As the quick test on the potential's relaxed lattice (relaxed_bulk) in a 3x3x2 cell (35 atoms), 3 images:
    barriers within 1 meV of ASE's EAM (measured: 0.6111 eV basal, 0.6207 eV non-basal, equal to 1e-12 eV)."""
    pot, ase_eam = eam_pair()
    a, c = M.lattice_parameters(M.relaxed_bulk(pot, "Mg", "hcp", 3.19, 5.2), "hcp")
    assert (a, c) == pytest.approx((A_MG, C_MG), abs=1e-5)
    perfect = M.supercell("Mg", "hcp", a, c, (3, 3, 2))
    for hop in M.HCP_HOPS:
        ref = M.neb_barrier(ase_eam, *M.relaxed_hop(ase_eam, perfect, 0, hop)[:2], n_images=3)
        i, f, _ = M.relaxed_hop(pot, perfect, 0, hop)
        assert M.neb_barrier(pot, i, f, n_images=3).barrier == pytest.approx(ref.barrier, abs=1e-3)
        assert M.string_barrier(pot, i, f, n_images=3).barrier == pytest.approx(ref.barrier, abs=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("shift, reference", [(False, 6.34), (True, 5.90)])
def test_lj_argon_reference(shift, reference):
    """LJ argon, 2.5 sigma cutoff (unshifted / shifted), fcc 4x4x4 cubic minus one (255 atoms) on the potential's
    relaxed lattice, 9-image CI-NEB (7 intermediate images): the barrier of ../shared/README.md within 0.05 eps; the
    JAX string within 1e-4 eV of ASE's CI-NEB."""
    lj = LennardJones(shift=shift)
    case = M.HopCase("fcc Ar", "fcc", "Ar", (4, 4, 4), a=A_LJ)
    i, f, _, _ = M.hop_end_points(lj, case)
    assert len(i) == 255
    neb = M.neb_barrier(lj, i, f, n_images=7)
    assert neb.barrier / EPS == pytest.approx(reference, abs=0.05)
    assert M.string_barrier(lj, i, f, n_images=7).barrier == pytest.approx(neb.barrier, abs=1e-4)
