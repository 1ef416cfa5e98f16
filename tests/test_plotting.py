"""Figures are drawn without pyplot: making them neither switches the user's matplotlib backend (a notebook's inline
plots) nor leaves pyplot figures open."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mtpjax"


@pytest.fixture
def foreign_backend():
    """A non-Agg backend, as a notebook would have; afterwards it must still be set and no pyplot figure open."""
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    plt.close("all")
    matplotlib.use("svg")
    try:
        yield
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == []
    finally:
        matplotlib.use(before)


def written(*paths):
    for p in paths:
        assert Path(p).is_file() and Path(p).stat().st_size > 1000, p


def test_subplots_is_a_standalone_figure(foreign_backend, tmp_path):
    from matplotlib.figure import Figure

    from mtpjax.plotting import subplots

    fig, axes = subplots(2, 3, figsize=(6, 4), sharex=True, squeeze=False)
    assert isinstance(fig, Figure) and axes.shape == (2, 3)
    assert tuple(fig.get_size_inches()) == (6, 4)
    fig, ax = subplots()
    ax.plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "a.png", dpi=50)
    written(tmp_path / "a.png")


def test_dataset_and_sweep_figures(foreign_backend, tmp_path):
    from ase.build import bulk

    from mtpjax.generate.plots import plot_distance_histograms, plot_space_groups
    from mtpjax.sweep import plot_sweep

    structures = []
    for s, sg in (("fcc", 225), ("hcp", 194)):
        a = bulk("Mg", s, a=3.2 if s == "hcp" else 4.5, **({"c": 5.2} if s == "hcp" else {}))
        a.info.update(spacegroup=sg, spacegroup_requested=sg)
        structures.append(a)
    plot_space_groups(structures, tmp_path / "f1.png")
    plot_distance_histograms({"A": structures}, tmp_path / "f3.png", 3.2, 5.2, cutoffs=(5.0,), r_max=6.0)
    rows = [{"subset": subset, "level": level, "cutoff": cutoff, "seed": 0, "train_energy_meV": 1.0 + level / cutoff,
             "train_forces": 0.1 * level / cutoff}
            for subset in ("A", "A+B") for level in (6, 8) for cutoff in (5.0, 6.5)]
    plot_sweep(rows, tmp_path)
    written(tmp_path / "f1.png", tmp_path / "f3.png", tmp_path / "rmse_vs_level.png", tmp_path / "rmse_vs_cutoff.png")


def test_verify_figures(foreign_backend, tmp_path):
    from mtpjax.verify import elastic, eos, phonons, planar, strain, vacancy
    from mtpjax.verify.prototypes import PHASES

    rng = np.random.default_rng(0)
    s = np.linspace(-0.1, 0.1, 5)
    strain_table = {(p, c): (s ** 2 + 0.01 * rng.normal(size=5), s ** 2) for p in PHASES for c in strain.COMPONENTS}
    eos_table = {(0.1, p): (np.linspace(20, 26, 5), 0.01 * k + (np.linspace(-1, 1, 5) ** 2), 0.01 * k + np.linspace(-1, 1, 5) ** 2)
                 for k, p in enumerate(PHASES)}
    pm = {"C11": 60.0, "C12": 25.0, "C13": 20.0, "C33": 62.0, "C44": 18.0, "C66": 17.0, "dE_fcc_hcp_meV": 10.0,
          "dE_dhcp_hcp_meV": 5.0, "dE_bcc_hcp_meV": 30.0}
    po = {k: 1.1 * v for k, v in pm.items()}
    vm = {"hcp": {"Ef_eV": 0.8, "max_displacement_A": 0.1}, "fcc": {"Ef_eV": 0.9, "max_displacement_A": None}}
    vo = {"hcp": {"Ef_eV": 0.85, "max_displacement_A": 0.12}, "fcc": {"Ef_eV": 0.95, "max_displacement_A": 0.1}}
    t = [0.0, 0.25, 0.5, 0.75, 1.0]
    planar_m = {"surface_J_m2": {"0001": 0.5, "10-10": None}, "gsf": {"10-10": {"t_over_period": t, "gamma_J_m2": [0, 0.1, None, 0.1, 0]}},
                "decohesion": {"s_A": [0, 1, 2], "energy_J_m2": [0, 0.5, 0.6]}, "gb": {"all_J_m2": [0.3, None]}}
    planar_o = {"surface_J_m2": {"0001": 0.55, "10-10": 0.6}, "gsf": {"10-10": {"t_over_period": t, "gamma_J_m2": [0, 0.12, 0.2, 0.12, 0]}},
                "decohesion": {"s_A": [0, 1, 2], "energy_J_m2": [0, 0.55, 0.65]}, "gb": {"all_J_m2": [0.32, 0.4]}}
    x = np.linspace(0, 1, 6)
    bands = [SimpleNamespace(distances=x, segments=[3, 3], band_frequencies=np.outer(x, [1.0, 2.0]) + d,
                             dos_frequencies=np.linspace(0, 3, 4), dos=np.array([0, 1, 2, 0.5])) for d in (0.0, 0.1)]

    strain._figure(tmp_path, strain_table, s)
    eos_figs = eos._figures(tmp_path, (0.1,), eos_table, 23.0)
    elastic._figure(pm, po, tmp_path / "elastic.png")
    vacancy._figure(["hcp", "fcc"], vm, vo, tmp_path / "vacancy.png")
    planar_figs = planar._figures(tmp_path, planar_m, planar_o, {"surfaces": ("0001", "10-10"), "gsf_directions": ("10-10",), "gb": True})
    phonons.plot_bands(bands[0], bands[1], "Mg hcp", tmp_path / "bands.png", tick_names=["Γ", "M", "K"])
    phonons.plot_fc_parity({"hcp": (rng.normal(size=(2, 3, 3)), rng.normal(size=(2, 3, 3)))}, tmp_path / "fc.png")
    assert [p.name for p in eos_figs] == ["eos_10.png", "eos_diff_10.png"]
    assert [p.name for p in planar_figs] == ["surfaces.png", "gsf.png", "decohesion.png", "gb_sigma7.png"]
    written(tmp_path / "strain.png", *eos_figs, tmp_path / "elastic.png", tmp_path / "vacancy.png", *planar_figs,
            tmp_path / "bands.png", tmp_path / "fc.png")


def test_no_module_switches_the_backend():
    """No module may call ``matplotlib.use`` or import pyplot (both take over a notebook's backend)."""
    bad = re.compile(r"matplotlib\.use\(|import matplotlib\.pyplot|from matplotlib import pyplot")
    offenders = [f"{f.relative_to(PACKAGE.parent)}:{k}" for f in sorted(PACKAGE.rglob("*.py"))
                 for k, line in enumerate(f.read_text().splitlines(), 1) if bad.search(line)]
    assert offenders == []
