"""Figures of a training set: crystal systems and space groups (Fig. 1), neighbour distances with hcp shells (Fig. 3)."""
from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from mtpjax.generate.plots import crystal_system, hcp_shells, neighbour_distances, plot_distance_histograms, plot_space_groups


def test_crystal_systems_cover_all_space_groups():
    assert [crystal_system(s) for s in (1, 2, 3, 15, 16, 74, 75, 142, 143, 167, 168, 194, 195, 230)] == [
        "triclinic", "triclinic", "monoclinic", "monoclinic", "orthorhombic", "orthorhombic", "tetragonal", "tetragonal",
        "trigonal", "trigonal", "hexagonal", "hexagonal", "cubic", "cubic"]
    with pytest.raises(ValueError):
        crystal_system(231)


def test_hcp_shells_and_distances():
    a = 3.2
    shells = hcp_shells(a, a * np.sqrt(8 / 3), 5.6)
    # ideal hcp: 12 neighbours at a, 6 at a*sqrt(2), 2 at a*sqrt(8/3), 18 at a*sqrt(3)
    np.testing.assert_allclose(shells, [a, a * np.sqrt(2), a * np.sqrt(8 / 3), a * np.sqrt(3)], atol=2e-3)
    d, n = neighbour_distances([bulk("Mg", "fcc", a=4.5)], 4.0)  # 1-atom cell: 12 neighbours at a/sqrt(2) via images
    assert n == 1 and len(d) == 12
    np.testing.assert_allclose(d, 4.5 / np.sqrt(2))


def test_figures_are_written(tmp_path):
    structures = []
    for k, (s, sg) in enumerate((("fcc", 225), ("bcc", 229), ("hcp", 194), ("sc", 221))):
        a = bulk("Mg", s, a=3.2 if s != "fcc" else 4.5, **({"c": 5.2} if s == "hcp" else {}))
        a.info.update(spacegroup=sg, spacegroup_requested=sg if k else 1)
        structures.append(a)
    counts = plot_space_groups(structures, tmp_path / "f1.png")
    assert counts["detected (spglib)"]["cubic"] == 3 and counts["requested"]["triclinic"] == 1
    plot_distance_histograms({"A": structures}, tmp_path / "f3.png", 3.2, 5.2, cutoffs=(5.0, 6.5))
    assert (tmp_path / "f1.png").stat().st_size > 5000 and (tmp_path / "f3.png").stat().st_size > 5000
