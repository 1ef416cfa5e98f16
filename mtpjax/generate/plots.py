"""Figures of a generated training set: space-group statistics (the paper's Fig. 1) and neighbour-distance
histograms with the hcp shells and candidate cutoffs (Fig. 3). Distances in Å."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plotting import subplots

#: Crystal systems by international space-group number (inclusive ranges).
CRYSTAL_SYSTEMS = (("triclinic", 1, 2), ("monoclinic", 3, 15), ("orthorhombic", 16, 74), ("tetragonal", 75, 142),
                   ("trigonal", 143, 167), ("hexagonal", 168, 194), ("cubic", 195, 230))

#: The cutoffs drawn by default (Å): the paper's candidates for Mg.
DEFAULT_CUTOFFS = (5.2, 6.5, 8.2)


def crystal_system(space_group: int) -> str:
    """The crystal system of an international space-group number (1-230)."""
    for name, lo, hi in CRYSTAL_SYSTEMS:
        if lo <= space_group <= hi:
            return name
    raise ValueError(f"space group {space_group} is not in 1-230")


def plot_space_groups(structures, path) -> dict:
    """Fig. 1: how often each crystal system and space group occurs, as requested of pyxtal and as detected by
    spglib (``info['spacegroup_requested']``, ``info['spacegroup']``). Returns the crystal-system counts."""
    names = [n for n, _, _ in CRYSTAL_SYSTEMS]
    counts = {}
    fig, (ax1, ax2) = subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 2]})
    for key, label, offset in (("spacegroup_requested", "requested", -0.2), ("spacegroup", "detected (spglib)", 0.2)):
        sg = np.array([int(a.info[key]) for a in structures if key in a.info])
        if not sg.size:
            continue
        c = [sum(crystal_system(int(s)) == n for s in sg) for n in names]
        counts[label] = dict(zip(names, c))
        ax1.bar(np.arange(len(names)) + offset, c, width=0.4, label=label)
        ax2.hist(sg, bins=np.arange(0.5, 231.5), histtype="step", label=label)
    ax1.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax1.set_ylabel("structures")
    ax1.legend()
    ax2.set_xlabel("space group")
    ax2.set_ylabel("structures")
    ax2.set_yscale("log")
    ax2.legend()
    fig.suptitle(f"RANDSPG: {len(structures)} structures")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return counts


def neighbour_distances(structures, r_max: float) -> tuple[np.ndarray, int]:
    """All pair distances below ``r_max`` (Å; periodic images included, each pair counted from both atoms) and
    the number of atoms."""
    from ..neighbors import pairs

    out, n = [], 0
    for a in structures:
        i, j, shift = pairs(a.positions, a.cell.array, a.pbc, r_max)
        d = a.positions[j] - a.positions[i] + shift @ a.cell.array
        out.append(np.linalg.norm(d, axis=1))
        n += len(a)
    return (np.concatenate(out) if out else np.zeros(0)), n


def hcp_shells(a: float, c: float, r_max: float) -> np.ndarray:
    """Distinct neighbour-shell distances (Å) of hcp with lattice parameters a, c below ``r_max``."""
    from ase.build import bulk

    d, _ = neighbour_distances([bulk("X", "hcp", a=a, c=c)], r_max)
    return np.unique(np.round(d, 3))


def plot_distance_histograms(subsets: dict, path, a: float, c: float, cutoffs=DEFAULT_CUTOFFS, r_max=None) -> None:
    """Fig. 3: neighbour-distance histograms (pairs per atom per Å) of each subset (name -> structures), with the
    shells of hcp (a, c in Å) and the candidate ``cutoffs`` drawn in."""
    r_max = r_max or max(cutoffs) + 1.0
    bins = np.linspace(0.0, r_max, 201)
    fig, ax = subplots(figsize=(8, 4.5))
    for name, structures in subsets.items():
        d, n = neighbour_distances(structures, r_max)
        if n:
            h, _ = np.histogram(d, bins=bins)
            ax.step(bins[:-1], h / n / np.diff(bins), where="post", label=f"{name} ({len(structures)} structures)")
    for k, r in enumerate(hcp_shells(a, c, r_max)):
        ax.axvline(r, color="grey", lw=0.8, ls=":", label="hcp shells" if k == 0 else None)
    for r in cutoffs:
        ax.axvline(r, color="k", lw=1.2, ls="--")
        ax.text(r, ax.get_ylim()[1] * 0.95, f" {r:g} Å", rotation=90, va="top", ha="right", fontsize=8)
    ax.set_xlabel("neighbour distance (Å)")
    ax.set_ylabel("pairs per atom per Å")
    ax.set_xlim(0, r_max)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_dataset(folder, cutoffs=DEFAULT_CUTOFFS) -> list[Path]:
    """Both figures for a folder written by ``mtpjax generate`` (its RANDSPG/INTMIN extxyz files and manifest):
    ``fig1_space_groups.png`` and ``fig3_distances.png``. Returns the files written."""
    import ase.io

    from ..io.files import read_json

    folder = Path(folder)
    ref = read_json(folder / "manifest.json", "manifest")["reference"]
    read = lambda name: ase.io.read(folder / f"{name}.extxyz", index=":") if (folder / f"{name}.extxyz").exists() else []  # noqa: E731
    randspg, intmin = read("RANDSPG"), read("INTMIN")
    written = []
    if randspg:
        plot_space_groups(randspg, folder / "fig1_space_groups.png")
        written.append(folder / "fig1_space_groups.png")
    sets = {k: v for k, v in (("RANDSPG", randspg), ("INTMIN", intmin)) if v}
    if sets:
        plot_distance_histograms(sets, folder / "fig3_distances.png", ref["a"], ref["c"], cutoffs)
        written.append(folder / "fig3_distances.png")
    return written
