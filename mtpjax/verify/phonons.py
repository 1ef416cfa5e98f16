"""Phonons of hcp, fcc and bcc (paper Figs. 8 and 9): force constants, band structures, densities of states.

For each structure (default for an hcp ground state: hcp and bcc at each potential's own equilibrium lattice, and
bcc compressed to 12 Å³/atom; for fcc and bcc ground states: :data:`STRUCTURES_OF`) and each of the two
potentials:

1. the lattice is relaxed (a, and c/a for hcp; at fixed volume only c/a) by :func:`mtpjax.relax.equilibrium`
   (FIRE on cell and positions to 1e-5 GPa, batched for JAX potentials, ASE's FIRE for ASE oracles);
2. force constants Φ (eV/Å²) come from ±δ central differences of the forces (δ = 1e-5 Å, see
   :func:`default_delta`), one displaced atom of the primitive cell at a time along x, y, z, on a supercell at
   least ``min_width_factor`` × the cutoff wide in every direction (perpendicular widths; default 2 × the larger
   of the two cutoffs). All displaced supercells are evaluated as one packed batch
   (:class:`mtpjax.evaluate.Evaluator`);
3. the same rows of Φ are computed exactly, as the autodiff Hessian d²E/dx_i dx_j (forward over reverse) on the same
   supercell, and compared (``fd_vs_hessian_max``, eV/Å²; JAX potentials only);
4. phonopy turns Φ (compact form: rows of the primitive atoms) into frequencies (THz) along the standard path
   (seekpath, through phonopy's helper) and a density of states on a Γ-centred mesh.

Metrics (per structure): the RMSE of the MTP's force constants against the oracle's (eV/Å²; over the atom pairs
within the larger cutoff, so independent of the supercell size), the frequency RMSE on
the path (THz; same reduced q-points for both), max and min frequencies (THz; imaginary modes are negative and
flagged below ``-imaginary_tol``), the acoustic sum rule residual max_i,a,b |Σ_j Φ_ij^ab| (eV/Å²), timings (s).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MtpjaxError
from ..io.files import atomic_open
from ..potential import Potential
from ..relax import equilibrium, hex_parameters
from ..units import EV_PER_A3_TO_GPA

#: Default structures: hcp and bcc at equilibrium, bcc at 12 Å³/atom ("KIND" or "KIND@V", V in Å³/atom).
STRUCTURES = ("hcp", "bcc", "bcc@12")
#: Default structures per ground state (hcp: :data:`STRUCTURES`, the paper's Mg set): the ground state first.
STRUCTURES_OF = {"hcp": STRUCTURES, "fcc": ("fcc", "bcc"), "bcc": ("bcc", "fcc")}
#: Lattices with phonons.
KINDS = ("hcp", "fcc", "bcc")
#: Frequencies below -IMAGINARY_TOL THz count as imaginary (numerical noise near Γ stays above).
IMAGINARY_TOL = 0.05
#: Largest accepted |Φ_FD − Φ_Hessian| (eV/Å²) before a check note is raised (splines of tabulated EAMs reach 1e-4).
FD_CHECK_TOL = 1e-3
#: Finite-difference step (Å) for ASE oracles (DFT forces are noisy: phonopy's default).
ASE_DELTA = 1e-2
#: bcc primitive cell in units of the conventional one (phonopy's "I").
BCC_PRIMITIVE = np.array([[-0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5]])
#: fcc primitive cell in units of the conventional one (phonopy's "F").
FCC_PRIMITIVE = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])


@dataclass
class StructureSpec:
    """A phonon structure: ``kind`` hcp, fcc or bcc; ``volume`` in Å³/atom, or None for the relaxed lattice."""

    kind: str
    volume: float | None = None

    @classmethod
    def parse(cls, s) -> "StructureSpec":
        if isinstance(s, StructureSpec):
            return s
        kind, _, vol = str(s).partition("@")
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise MtpjaxError(f"phonons: unknown structure {s!r}; use hcp, fcc, bcc, or KIND@V with V in Å³/atom (e.g. bcc@12)")
        try:
            volume = float(vol) if vol else None
        except ValueError:
            raise MtpjaxError(f"phonons: unknown structure {s!r}: bad volume (Å³/atom expected, e.g. bcc@12)") from None
        if volume is not None and not volume > 0:
            raise MtpjaxError(f"phonons: volume must be > 0 in {s!r}")
        return cls(kind, volume)

    @property
    def name(self) -> str:
        return self.kind if self.volume is None else f"{self.kind}@{self.volume:g}"

    @property
    def label(self) -> str:
        """Human-readable name for tables and plots."""
        return f"{self.kind} (equilibrium)" if self.volume is None else f"{self.kind} at {self.volume:g} Å³/atom"

    @property
    def slug(self) -> str:
        """File-name-safe name."""
        return self.name.replace("@", "_V").replace(".", "p")


# ----------------------------------------------------------------------------------------------------------------
# energies and forces of any potential (JAX potentials batched; ASE oracles one by one)


class Calc:
    """Energies (eV), forces (eV/Å) and virials (eV) of one element's structures with a JAX potential (batched,
    :class:`mtpjax.evaluate.Evaluator`) or an :class:`mtpjax.oracles.ASEOracle` (one by one)."""

    def __init__(self, potential, element: str, batch_atoms: int = 4096):
        self.potential = potential
        self.element = element
        self.is_jax = isinstance(potential, Potential)
        species = getattr(potential, "species", None)
        if species and element not in species:
            raise MtpjaxError(f"{_name(potential)} has no element {element} (it knows {list(species)})")
        self.type = list(species).index(element) if species else 0
        if self.is_jax:
            from ..evaluate import Evaluator

            self.evaluator = Evaluator(potential, max_batch_atoms=batch_atoms)
        else:
            from ..oracles import get_calculator

            self.calc = get_calculator(potential)

    def many(self, cells_positions, names=None):
        """[(energy eV, forces (N, 3) eV/Å, virial (3, 3) eV)] for a list of (cell (3, 3), positions (N, 3))."""
        names = names or [f"{self.element} structure {k}" for k in range(len(cells_positions))]
        if self.is_jax:
            jobs = [(x, c, True, np.full(len(x), self.type), n) for (c, x), n in zip(cells_positions, names)]
            return [(r.energy, r.forces, r.virial) for r in self.evaluator.many(jobs)]
        from ase import Atoms

        out = []
        for c, x in cells_positions:
            a = Atoms([self.element] * len(x), positions=x, cell=c, pbc=True)
            a.calc = self.calc
            s = a.get_stress(voigt=False)
            out.append((a.get_potential_energy(), a.get_forces(), -s * a.get_volume()))
        return out


def _name(potential) -> str:
    return str(getattr(potential, "name", type(potential).__name__))


# ----------------------------------------------------------------------------------------------------------------
# lattices


def unit_cell(kind: str, a: float, c: float | None = None):
    """(cell (3, 3) Å, positions (n, 3) Å): hcp primitive cell (2 atoms, c along z), conventional bcc (2 atoms) or
    conventional fcc (4 atoms)."""
    if kind == "hcp":
        cell = np.array([[a, 0.0, 0.0], [-a / 2, a * np.sqrt(3) / 2, 0.0], [0.0, 0.0, c]])
        frac = np.array([[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
        return cell, frac @ cell
    if kind == "bcc":
        return np.eye(3) * a, np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]) * a
    if kind == "fcc":
        return np.eye(3) * a, np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]) * a
    raise MtpjaxError(f"unknown lattice {kind!r} (hcp, fcc or bcc)")


def relax_lattice(calc: Calc, kind: str, volume: float | None = None) -> dict:
    """The lattice of ``kind`` (hcp or bcc) relaxed with ``calc``'s potential by :func:`mtpjax.relax.equilibrium`: a
    (and c/a for hcp) at zero stress, or only c/a at a fixed ``volume`` (Å³/atom). Returns a (Å), c (Å, hcp),
    c_over_a, volume (Å³/atom), energy (eV/atom), pressure (GPa), steps (FIRE)."""
    pot = calc.potential if calc.is_jax else calc.calc
    r = equilibrium(pot, [kind], calc.element, volume=volume, cell="shape" if volume else "full")[kind]
    if not r.ok or r.atoms is None:
        raise MtpjaxError(f"phonons: the {kind} lattice of {_name(calc.potential)} did not relax: {r.reason}: {r.message}")
    v = r.atoms.get_volume() / len(r.atoms)
    if kind == "hcp":
        hp = hex_parameters(r.atoms)
        a, c = hp["a"], hp["a"] * hp["c_over_a"]
    else:
        a, c = ((4.0 if kind == "fcc" else 2.0) * v) ** (1.0 / 3.0), None
    return {"a": float(a), "c": None if c is None else float(c), "c_over_a": None if c is None else float(c / a),
            "volume": float(v), "energy": float(r.energy_per_atom),
            "pressure": float(-np.mean(r.stress[:3]) * EV_PER_A3_TO_GPA), "steps": int(r.steps)}


# ----------------------------------------------------------------------------------------------------------------
# supercells and force constants


def widths(cell) -> np.ndarray:
    """Perpendicular widths (Å) of a cell: the distances between its opposite faces."""
    cell = np.asarray(cell, dtype=float)
    vol = abs(np.linalg.det(cell))
    return np.array([vol / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)])


def supercell_multiples(cell, min_width: float) -> np.ndarray:
    """Smallest diagonal multiples (3,) of ``cell`` whose perpendicular widths all reach ``min_width`` (Å)."""
    return np.maximum(1, np.ceil(min_width / widths(cell) - 1e-9)).astype(int)


def make_phonopy(kind: str, a: float, c: float | None, element: str, multiples):
    """A :class:`phonopy.Phonopy` for the lattice (hcp primitive or bcc conventional unit cell with the bcc primitive
    matrix), supercell ``diag(multiples)``, ``element``'s standard mass; frequencies in THz (eV, Å, amu)."""
    from ase.data import atomic_masses, atomic_numbers
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    cell, pos = unit_cell(kind, a, c)
    mass = float(atomic_masses[atomic_numbers[element]]) if element in atomic_numbers else 1.0
    unit = PhonopyAtoms(symbols=[element] * len(pos) if element in atomic_numbers else None,
                        numbers=None if element in atomic_numbers else [1] * len(pos),
                        cell=cell, positions=pos, masses=[mass] * len(pos))
    prim = {"bcc": BCC_PRIMITIVE, "fcc": FCC_PRIMITIVE}.get(kind)
    return Phonopy(unit, supercell_matrix=np.diag(multiples), primitive_matrix=prim)


def finite_difference_fc(calc: Calc, supercell_cell, positions, rows, delta: float = 1e-5) -> np.ndarray:
    """Force-constant rows Φ[r, j, a, b] = -(F_jb(x_ra + δ) - F_jb(x_ra - δ)) / 2δ (eV/Å²), shape (len(rows), N, 3, 3):
    6 displaced supercells per row atom, all evaluated in one packed batch."""
    jobs, names = [], []
    for r in rows:
        for a in range(3):
            for sgn in (1, -1):
                x = np.array(positions, dtype=float)
                x[r, a] += sgn * delta
                jobs.append((supercell_cell, x))
                names.append(f"{calc.element} supercell: atom {r} displaced {'+-'[sgn < 0]}{'xyz'[a]}")
    forces = np.array([f for _, f, _ in calc.many(jobs, names)])  # (len(rows) * 6, N, 3)
    forces = forces.reshape(len(rows), 3, 2, len(positions), 3)
    return -np.transpose(forces[:, :, 0] - forces[:, :, 1], (0, 2, 1, 3)) / (2 * delta)


def exact_fc(potential, supercell_cell, positions, rows, type_: int = 0, skin: float = 0.3) -> np.ndarray:
    """The same rows of the exact Hessian d²E/dx_ra dx_jb (eV/Å², shape (len(rows), N, 3, 3)) by autodiff (forward over
    reverse) on the same supercell; a JAX potential only. ``skin`` (Å) widens the neighbour list."""
    import jax
    import jax.numpy as jnp

    from ..neighbors import neighbour_list
    from ..potential import energy

    x0 = np.asarray(positions, dtype=float)
    n = len(x0)
    nbrs = neighbour_list(x0, supercell_cell, True, potential.cutoff + skin, n_atoms_pad=n, name="phonon supercell")
    nbrs = jax.tree.map(jnp.asarray, nbrs)
    cell = jnp.asarray(supercell_cell, dtype=jnp.float64)
    types = jnp.full(n, type_, dtype=jnp.int32)
    X = jnp.asarray(x0)

    def grad_at(u, r):
        e = lambda x: energy(potential, x, cell, types, nbrs, use_custom_vjp=False)  # noqa: E731
        return jax.grad(e)(X.at[r].add(u))

    row = jax.jit(lambda r: jax.jacfwd(grad_at)(jnp.zeros(3), r))  # (N, 3 [b], 3 [a])
    return np.stack([np.transpose(np.asarray(row(int(r))), (2, 0, 1)) for r in rows]).transpose(0, 2, 1, 3)


def default_delta() -> float:
    """Finite-difference step (Å): 1e-5 in float64, 1e-2 in float32.

    Small because tabulated EAM splines are only C²: their third derivative jumps at every knot of the table
    (every 7.5e-4 Å for Mg_mm.eam.fs), so a central difference over ±δ differs from the exact Hessian by
    O(δ × jump) whenever a pair distance lies within δ of a knot: for Mg_mm.eam.fs up to 5e-3 eV/Å² at δ = 1e-3,
    6e-5 at 1e-4 and 1e-9 at 1e-5 (bcc at equilibrium). Round-off at 1e-5 stays ~1e-10 eV/Å².
    """
    import jax

    return 1e-5 if jax.config.jax_enable_x64 else 1e-2


def min_image_distances(cell, positions, rows) -> np.ndarray:
    """Minimum-image distances (Å), shape (len(rows), N), from each row atom to every atom of a periodic cell."""
    cell = np.asarray(cell, dtype=float)
    frac = np.asarray(positions, dtype=float) @ np.linalg.inv(cell)
    d = frac[None, :, :] - frac[list(rows)][:, None, :]
    d -= np.round(d)
    images = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T
    r = (d[:, :, None, :] + images[None, None]) @ cell
    return np.linalg.norm(r, axis=-1).min(axis=-1)


def acoustic_sum_rule(fc) -> float:
    """max over rows, a, b of |Σ_j Φ[r, j, a, b]| (eV/Å²): zero for translation-invariant force constants."""
    return float(np.abs(np.asarray(fc).sum(axis=1)).max())


# ----------------------------------------------------------------------------------------------------------------
# one potential, one structure


@dataclass
class PhononResult:
    """Phonons of one potential on one structure: relaxed lattice, compact force constants (n_prim, N, 3, 3) eV/Å²,
    minimum-image distances (n_prim, N) Å of their atom pairs,
    band frequencies (n_q, n_bands) THz on ``distances`` (1/Å), DOS (THz, states/THz), checks and timings (s)."""

    lattice: dict
    multiples: list
    fc: np.ndarray
    pair_distances: np.ndarray
    band_frequencies: np.ndarray
    distances: np.ndarray
    segments: list
    labels: list
    mesh_frequencies: np.ndarray
    dos_frequencies: np.ndarray
    dos: np.ndarray
    checks: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    @property
    def min_frequency(self) -> float:
        return float(min(self.band_frequencies.min(), self.mesh_frequencies.min()))

    @property
    def max_frequency(self) -> float:
        return float(max(self.band_frequencies.max(), self.mesh_frequencies.max()))


def band_path(kind: str, npoints: int):
    """Standard path (seekpath via phonopy) for the lattice's primitive cell: (list of q-point arrays in reduced
    coordinates, labels, path connections)."""
    from phonopy.phonon.band_structure import get_band_qpoints_by_seekpath

    ph = make_phonopy(kind, 3.0, 3.0 * 1.63 if kind == "hcp" else None, "Mg", [1, 1, 1])
    return get_band_qpoints_by_seekpath(ph.primitive, npoints)


def phonons(calc: Calc, spec: StructureSpec, lattice: dict, multiples, path, mesh, delta: float = 1e-5,
            check_hessian: bool = True) -> PhononResult:
    """Force constants, band structure along ``path`` (from :func:`band_path`) and DOS on ``mesh`` of one potential
    at ``lattice`` (from :func:`relax_lattice`) with supercell ``diag(multiples)``."""
    timings = {}
    ph = make_phonopy(spec.kind, lattice["a"], lattice["c"], calc.element, multiples)
    sc = ph.supercell
    rows = list(ph.primitive.p2s_map)
    t = time.perf_counter()
    fc = finite_difference_fc(calc, sc.cell, sc.positions, rows, delta)
    timings["finite_differences"] = time.perf_counter() - t
    checks = {"supercell_atoms": len(sc), "supercell_widths": widths(sc.cell).tolist(), "delta": delta,
              "displaced_supercells": 6 * len(rows), "asr_fd": acoustic_sum_rule(fc)}
    if check_hessian and calc.is_jax:
        t = time.perf_counter()
        ex = exact_fc(calc.potential, sc.cell, sc.positions, rows, calc.type)
        timings["hessian"] = time.perf_counter() - t
        checks["fd_vs_hessian_max"] = float(np.abs(fc - ex).max())
        checks["asr_hessian"] = acoustic_sum_rule(ex)
    t = time.perf_counter()
    ph.force_constants = fc
    bands, labels, connections = path
    ph.run_band_structure(bands, path_connections=connections, labels=labels)
    bs = {"frequencies": ph.band_structure.frequencies, "distances": ph.band_structure.distances}
    ph.run_mesh(mesh, is_gamma_center=True)
    mesh_freq = ph.mesh.frequencies
    ph.run_total_dos()
    dos = {"frequency_points": ph.total_dos.frequency_points, "total_dos": ph.total_dos.dos}
    timings["phonopy"] = time.perf_counter() - t
    return PhononResult(
        lattice=lattice, multiples=[int(m) for m in multiples], fc=fc,
        pair_distances=min_image_distances(sc.cell, sc.positions, rows),
        band_frequencies=np.concatenate(bs["frequencies"]), distances=np.concatenate(bs["distances"]),
        segments=[len(d) for d in bs["distances"]], labels=list(labels), mesh_frequencies=np.asarray(mesh_freq),
        dos_frequencies=np.asarray(dos["frequency_points"]), dos=np.asarray(dos["total_dos"]), checks=checks,
        timings=timings)


# ----------------------------------------------------------------------------------------------------------------
# figures


def tick_labels(labels, connections) -> list:
    """One label per segment boundary (n_segments + 1) from phonopy's labels and path connections: a break in the path
    joins the two labels as "A|L"."""
    labels, out, k = list(labels), [], 0
    out.append(labels[0] if labels else "")
    k = 1
    for conn in connections:
        end = labels[k] if k < len(labels) else ""
        k += 1
        if not conn and k < len(labels):
            end = f"{end}|{labels[k]}"
            k += 1
        out.append(end)
    return out


def plot_bands(result_mtp: PhononResult, result_oracle: PhononResult, title: str, path: Path, tick_names=None,
               names=("MTP", "oracle")) -> Path:
    """Band structure (THz) along the path with both potentials, DOS beside it (Fig. 8); writes a PNG."""
    from matplotlib.lines import Line2D

    from ..plotting import subplots

    fig, (ax, ad) = subplots(1, 2, figsize=(8, 4), sharey=True, gridspec_kw={"width_ratios": [3, 1], "wspace": 0.1})
    x = result_oracle.distances
    styles = [(result_oracle, dict(color="k", lw=1.2)), (result_mtp, dict(color="C3", lw=1.0, ls="--"))]
    for res, style in styles:
        o = 0
        for n in res.segments:
            ax.plot(x[o:o + n], res.band_frequencies[o:o + n], **style)
            o += n
        ad.plot(res.dos, res.dos_frequencies, **style)
    ends = np.cumsum(result_oracle.segments)
    ticks = [x[0]] + [x[e - 1] for e in ends]
    ax.set_xticks(ticks)
    ax.set_xticklabels(tick_names if tick_names is not None and len(tick_names) == len(ticks) else [""] * len(ticks))
    for t in ticks:
        ax.axvline(t, color="0.7", lw=0.5)
    ax.axhline(0, color="0.7", lw=0.5)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylabel("frequency (THz)")
    ax.set_title(title)
    ax.legend([Line2D([], [], **styles[1][1]), Line2D([], [], **styles[0][1])], list(names), loc="lower right", fontsize=8)
    ad.set_xlabel("DOS (1/THz)")
    ad.set_xlim(left=0)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_fc_parity(pairs: dict, path: Path) -> Path:
    """Parity plots of the force constants Φ_ij^ab, MTP vs oracle (eV/Å², Fig. 9), one panel per structure; writes a
    PNG. Entries zero in both (beyond the cutoff) are left out."""
    from ..plotting import subplots

    n = max(len(pairs), 1)
    fig, axes = subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False)
    for k, (ax, (label, (fm, fo))) in enumerate(zip(axes[0], pairs.items())):
        fm, fo = np.ravel(fm), np.ravel(fo)
        keep = (np.abs(fo) > 1e-8) | (np.abs(fm) > 1e-8)
        rmse = np.sqrt(np.mean((fm - fo) ** 2))
        ax.scatter(fo[keep], fm[keep], s=5, alpha=0.6, color=f"C{k}")
        lo = min(fo[keep].min(), fm[keep].min()) if keep.any() else -1.0
        hi = max(fo[keep].max(), fm[keep].max()) if keep.any() else 1.0
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8)
        ax.set_title(f"{label}\nRMSE {rmse:.3g} eV/Å²", fontsize=9)
        ax.set_xlabel("oracle Φ (eV/Å²)")
        if k == 0:
            ax.set_ylabel("MTP Φ (eV/Å²)")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


# ----------------------------------------------------------------------------------------------------------------
# the test


def compare(mtp: PhononResult, oracle: PhononResult, imaginary_tol: float = IMAGINARY_TOL, fc_range: float | None = None) -> dict:
    """Metrics of the MTP against the oracle on one structure (eV/Å², THz).

    ``fc_rmse`` is over the entries Φ_ij^ab whose atoms lie within ``fc_range`` Å (minimum image; default: all), so
    that it does not shrink as the supercell grows; ``fc_rmse_all`` is over every entry of the compact matrix.
    """
    d = mtp.fc - oracle.fc
    near = np.ones(d.shape[:2], bool) if fc_range is None else oracle.pair_distances <= fc_range
    return {
        "fc_rmse": float(np.sqrt(np.mean(d[near] ** 2))),
        "fc_rmse_all": float(np.sqrt(np.mean(d**2))),
        "fc_max_abs_error": float(np.abs(d).max()),
        "fc_rms_oracle": float(np.sqrt(np.mean(oracle.fc[near] ** 2))),
        "fc_rms_mtp": float(np.sqrt(np.mean(mtp.fc[near] ** 2))),
        "fc_range": fc_range, "fc_pairs": int(near.sum()),
        "frequency_rmse": float(np.sqrt(np.mean((mtp.band_frequencies - oracle.band_frequencies) ** 2))),
        "frequency_max_abs_error": float(np.abs(mtp.band_frequencies - oracle.band_frequencies).max()),
        "min_frequency_mtp": mtp.min_frequency, "min_frequency_oracle": oracle.min_frequency,
        "max_frequency_mtp": mtp.max_frequency, "max_frequency_oracle": oracle.max_frequency,
        "imaginary_mtp": mtp.min_frequency < -imaginary_tol, "imaginary_oracle": oracle.min_frequency < -imaginary_tol,
    }


def run(potential, oracle, outdir: Path, *, element: str | None = None, structures=None, quick: bool = False,
        min_width_factor: float | None = None, delta: float | None = None, npoints: int | None = None, mesh=None,
        check_hessian: bool = True, geometry: str = "own", imaginary_tol: float = IMAGINARY_TOL,
        batch_atoms: int = 4096, ground_state: str | None = None) -> dict:
    """Phonons of ``potential`` (the MTP) against ``oracle`` on ``structures``; figures into ``outdir``.

    ``geometry``: "own" (each potential at its own relaxed lattice; default) or "oracle" (both at the oracle's).
    ``delta`` (Å): default :func:`default_delta` for JAX potentials, :data:`ASE_DELTA` for ASE oracles.
    ``structures``: default :data:`STRUCTURES_OF` of ``ground_state`` (hcp, fcc, bcc as the suite detects it; None:
    hcp's :data:`STRUCTURES`).
    ``quick``: supercells ≥ 1.5 × the cutoff (not 2 ×), 15 points per path segment, an 8³ mesh. Returns the suite's
    dict: metrics (per structure), figures, rows (eV/Å², THz), failures.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if geometry not in ("own", "oracle"):
        raise MtpjaxError(f"phonons: geometry must be 'own' or 'oracle', got {geometry!r}")
    element = element or _element(potential, oracle)
    factor = min_width_factor if min_width_factor is not None else (1.5 if quick else 2.0)
    npoints = npoints or (15 if quick else 51)
    mesh = mesh if mesh is not None else ([8, 8, 8] if quick else [20, 20, 20])
    cutoff = max(float(c) for c in (getattr(potential, "cutoff", None), getattr(oracle, "cutoff", None)) if c is not None)
    calcs = {"oracle": Calc(oracle, element, batch_atoms)}
    calcs["mtp"] = calcs["oracle"] if potential is oracle else Calc(potential, element, batch_atoms)
    deltas = {k: delta or (default_delta() if c.is_jax else ASE_DELTA) for k, c in calcs.items()}
    metrics, rows, figures, failures, fc_pairs = {}, [], [], [], {}
    if structures is None:
        structures = STRUCTURES_OF.get(ground_state or "hcp", STRUCTURES)
    specs = [StructureSpec.parse(s) for s in structures]
    for spec in specs:
        try:
            t0 = time.perf_counter()
            lat = {}
            lat["oracle"] = relax_lattice(calcs["oracle"], spec.kind, spec.volume)
            same = potential is oracle
            lat["mtp"] = lat["oracle"] if geometry == "oracle" or same else relax_lattice(calcs["mtp"], spec.kind, spec.volume)
            t_relax = time.perf_counter() - t0
            # one supercell shape for both, wide enough for the smaller of the two lattices
            mult = np.max([supercell_multiples(unit_cell(spec.kind, lat[k]["a"], lat[k]["c"])[0], factor * cutoff)
                           for k in ("mtp", "oracle")], axis=0)
            path = band_path(spec.kind, npoints)
            res = {"oracle": phonons(calcs["oracle"], spec, lat["oracle"], mult, path, mesh, deltas["oracle"], check_hessian)}
            res["mtp"] = res["oracle"] if same else phonons(calcs["mtp"], spec, lat["mtp"], mult, path, mesh, deltas["mtp"],
                                                            check_hessian)
            m = compare(res["mtp"], res["oracle"], imaginary_tol, fc_range=cutoff)
            m["lattice"] = {k: lat[k] for k in ("mtp", "oracle")}
            m["supercell"] = {"multiples": [int(x) for x in mult], "atoms": res["oracle"].checks["supercell_atoms"],
                              "widths": res["oracle"].checks["supercell_widths"], "min_width": factor * cutoff}
            m["checks"] = {k: {c: v for c, v in res[k].checks.items() if c not in ("supercell_atoms", "supercell_widths")}
                           for k in res}
            m["timings"] = {"relax": t_relax, **{f"{k}_{s}": v for k in res for s, v in res[k].timings.items()},
                            "total": time.perf_counter() - t0}
            metrics[spec.name] = m
            fc_pairs[spec.label] = (res["mtp"].fc, res["oracle"].fc)
            figures.append(plot_bands(res["mtp"], res["oracle"], f"{element} {spec.label}", outdir / f"phonons_{spec.slug}.png",
                                      tick_labels(path[1], path[2])))
            with atomic_open(outdir / f"phonons_{spec.slug}.npz", "wb") as fh:
                np.savez_compressed(fh, **{f"{k}_{a}": getattr(res[k], a) for k in res
                                           for a in ("fc", "band_frequencies", "distances", "dos_frequencies", "dos")})
            rows += _rows(spec, m, imaginary_tol)
            for k in ("mtp", "oracle"):
                bad = m["checks"][k].get("fd_vs_hessian_max")
                if bad is not None and bad > FD_CHECK_TOL:
                    failures.append({"structure": spec.name, "reason": f"finite-difference force constants of the {k} differ "
                                     f"from its autodiff Hessian by {bad:.3g} eV/Å² (> {FD_CHECK_TOL:g})", "severity": "check"})
            for k in ("mtp", "oracle"):
                if m[f"imaginary_{k}"]:
                    failures.append({"structure": spec.name, "reason": f"imaginary modes with the {k}: min frequency "
                                     f"{m[f'min_frequency_{k}']:.3f} THz", "severity": "note"})
        except Exception as err:  # noqa: BLE001 (one structure failing must not stop the others)
            failures.append({"structure": spec.name, "reason": f"{type(err).__name__}: {err}"})
    if fc_pairs:
        figures.append(plot_fc_parity(fc_pairs, outdir / "phonons_force_constants.png"))
    return {"metrics": metrics, "figures": [str(f) for f in figures], "rows": rows, "failures": failures}


def _rows(spec: StructureSpec, m: dict, imaginary_tol: float = IMAGINARY_TOL) -> list:
    """Table rows of one structure (eV/Å², THz). Min frequencies above -imaginary_tol (numerical noise of the acoustic
    modes at Γ) are shown as 0; no relative error for them."""
    n = spec.name

    def row(q, unit, mtp, orc, err, relative=True):
        r = {"test": "phonons", "quantity": f"{n}: {q}", "unit": unit, "mtp": mtp, "oracle": orc, "error": err}
        return r if relative else {**r, "relative": False}

    lo = {k: (m[f"min_frequency_{k}"] if m[f"min_frequency_{k}"] < -imaginary_tol else 0.0) for k in ("mtp", "oracle")}
    return [
        row("force constants RMSE", "eV/Å²", m["fc_rms_mtp"], m["fc_rms_oracle"], m["fc_rmse"]),
        row("frequency RMSE on path", "THz", None, None, m["frequency_rmse"]),
        row("max frequency", "THz", m["max_frequency_mtp"], m["max_frequency_oracle"], m["max_frequency_mtp"] - m["max_frequency_oracle"]),
        row("min frequency (< 0: imaginary)", "THz", lo["mtp"], lo["oracle"], lo["mtp"] - lo["oracle"], relative=False),
    ]


def _element(potential, oracle) -> str:
    for p in (potential, oracle):
        sp = getattr(p, "species", None)
        if sp and len(sp) == 1:
            return sp[0]
    raise MtpjaxError("phonons: cannot tell which element to use; pass element=")
