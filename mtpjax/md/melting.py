"""Melting of a crystal with :func:`mtpjax.md.run_md`: a structural order parameter, heating curves and pressure
scans at constant (T, p), and the two-phase (solid–liquid coexistence) melting temperature. See ``docs/md.md``
("Melting and Fig. 13") and ``scripts/fig13_melting.py``.

The order parameter (per atom, and its mean per system) is Lechner and Dellago's averaged Steinhardt bond order
(W. Lechner, C. Dellago, J. Chem. Phys. 129, 114707 (2008)) of degree 6 over the 12 nearest neighbours:

    q_6m(i) = (1/12) sum_{j in N(i)} Y_6m(r_ij / |r_ij|),
    qbar_6m(i) = (q_6m(i) + sum_{j in N(i)} q_6m(j)) / 13,
    qbar_6(i) = sqrt(4 pi / 13 sum_m |qbar_6m(i)|^2)                        (dimensionless)

N(i): the 12 nearest neighbours of i (periodic images included). A perfect crystal has qbar_6 = q_6: 0.484 for
ideal hcp, 0.5745 for fcc; thermal vibrations lower it (hcp Mg at 800–900 K: about 0.40–0.42 on average), a liquid has
about 0.12–0.16 (Mg, 1200–1400 K). An atom is *solid* when qbar_6 >= :data:`SOLID_THRESHOLD` (0.30; on hcp Mg with the
Sun 2006 EAM every atom of the crystal equilibrated at 914 K is solid by it, and every atom of the melt brought back to
914 K liquid: ``scripts/fig13_melting.py``, ``docs/benchmarks/melting.md``).

Everything else goes through :func:`mtpjax.md.run_md` (MTK NPT at the target pressure; the hcp a and c relax apart):
the full cell by default, or only its three lengths (``npt_couple="aniso"``, LAMMPS's ``fix npt ... aniso``), which
keeps an orthogonal cell orthogonal so that a crystal in it cannot shear into another supercell: then a and c are the
cell's lengths per repeat (``cell_repeat``). Units: Å, eV, K, GPa, fs, as everywhere in :mod:`mtpjax.md`.

- :func:`order_parameter`: per-atom qbar_6; :func:`solid_mask`, :func:`solid_fraction`; :func:`hcp_lattice_parameters`
  (a, c from bond vectors, whatever the supercell's shape);
- :func:`heating_curve`: NPT at each temperature in turn, each continuing from the previous final frame; per
  temperature the second-half means of E_pot/atom, V/atom, a, c (from bond vectors, and from the cell lengths of an
  orthogonal cell, :func:`cell_lattice_parameters`), and the order parameter; :func:`detect_melting`;
- :func:`pressure_scan`: NPT at one temperature and several pressures: E(p), V(p), a(p), c(p);
- :func:`orthogonal_hcp`, :func:`two_phase_cell`, :func:`prepare_two_phase`, :func:`two_phase_run`,
  :func:`coexistence_melting_point`: the two-phase method.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import MtpjaxError
from .run import run_md

#: Per-atom qbar_6 at and above which an atom counts as solid (dimensionless).
SOLID_THRESHOLD = 0.30
#: Neighbours per atom in the bond-order average (the first shell of hcp and fcc).
N_NEIGHBOURS = 12
#: Search radius (Å) for the 12 nearest neighbours; it grows by itself when an atom has fewer within it.
SEARCH_RADIUS = 4.6


class MeltingError(MtpjaxError):
    """A melting analysis could not be done (bad input, no bracket, ...)."""


# ----------------------------------------------------------------------------------------------- order parameter


def _ylm6(unit: np.ndarray) -> np.ndarray:
    """Spherical harmonics Y_6m, m = -6..6, of unit vectors (P, 3): (P, 13) complex."""
    from scipy.special import sph_harm_y

    theta = np.arccos(np.clip(unit[:, 2], -1.0, 1.0))
    phi = np.arctan2(unit[:, 1], unit[:, 0])
    m = np.arange(-6, 7)
    return sph_harm_y(6, m[None, :], theta[:, None], phi[:, None])


def nearest_neighbours(atoms, k: int = N_NEIGHBOURS, radius: float = SEARCH_RADIUS):
    """``(index (N, k), vectors (N, k, 3) Å)``: each atom's k nearest neighbours (periodic images included), closest
    first."""
    from ..neighbors import pairs

    n = len(atoms)
    if n == 0:
        raise MeltingError("no atoms")
    pos, cell = np.asarray(atoms.positions, float), np.asarray(atoms.cell.array, float)
    r = float(radius)
    for _ in range(8):
        i, j, shift = pairs(pos, cell, np.asarray(atoms.pbc), r)
        counts = np.bincount(i, minlength=n)
        if counts.min() >= k:
            break
        r *= 1.25
    else:
        raise MeltingError(f"an atom has fewer than {k} neighbours within {r:.3g} Å")
    vec = pos[j] - pos[i] + shift @ cell
    d = np.linalg.norm(vec, axis=1)
    order = np.lexsort((d, i))
    i, j, vec = i[order], j[order], vec[order]
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    take = (start[:, None] + np.arange(k)[None, :]).ravel()
    return j[take].reshape(n, k), vec[take].reshape(n, k, 3)


def order_parameter(atoms, k: int = N_NEIGHBOURS) -> np.ndarray:
    """Per-atom averaged Steinhardt bond order qbar_6 (dimensionless, (N,)) over the ``k`` nearest neighbours (see the
    module docstring). Perfect hcp: 0.484; fcc: 0.5745; liquid: about 0.12–0.16."""
    idx, vec = nearest_neighbours(atoms, k)
    n = len(atoms)
    unit = (vec / np.linalg.norm(vec, axis=-1, keepdims=True)).reshape(-1, 3)
    q = _ylm6(unit).reshape(n, k, 13).mean(axis=1)  # q_6m(i)
    qbar = (q + q[idx].sum(axis=1)) / (k + 1)
    return np.sqrt(4 * math.pi / 13 * np.sum(np.abs(qbar) ** 2, axis=1))


def solid_mask(atoms, threshold: float = SOLID_THRESHOLD) -> np.ndarray:
    """Per-atom solid (True) / liquid (False): qbar_6 >= ``threshold``."""
    return order_parameter(atoms) >= threshold


def solid_fraction(atoms, threshold: float = SOLID_THRESHOLD) -> float:
    """Fraction of the atoms classified solid (:func:`solid_mask`)."""
    return float(np.mean(solid_mask(atoms, threshold)))


def hcp_lattice_parameters(atoms) -> tuple[float, float]:
    """hcp a and c (Å) from the bond vectors of each atom's 12 nearest neighbours, whatever the supercell's shape and
    the crystal's orientation (a full-cell barostat may turn a small supercell into another one of the same lattice,
    or reorient the crystal in it: the cell lengths then no longer give a and c).

    The c axis: of the candidate axes (the normals of every pair of the first atom's bonds), the one for which each
    atom's 6 bonds most nearly perpendicular to it are the most nearly so, refined as the normal (smallest eigenvector
    of the second moment) of those in-plane bonds, 3 times. c = 2 × the mean |component along c| of the 6 other
    (out-of-plane) bonds of each atom. The in-plane bonds, binned into the six 60° sectors of the lattice's
    directions (found from the mean of exp(6 i phi)), give a = the mean length of each sector's *mean* vector. Both are
    means of position differences, so thermal vibrations do not bias them (mean bond lengths would come out too long).
    One crystal orientation is assumed; meaningless for a liquid."""
    _, vec = nearest_neighbours(atoms)

    def split(ch):
        z = np.abs(vec @ ch)
        rank = np.argsort(z, axis=1)
        return (np.take_along_axis(vec, rank[:, :6, None], axis=1).reshape(-1, 3),
                np.take_along_axis(vec, rank[:, 6:, None], axis=1).reshape(-1, 3))

    b = vec[0]
    cand = np.cross(b[:, None, :], b[None, :, :]).reshape(-1, 3)
    norm = np.linalg.norm(cand, axis=1)
    cand = cand[norm > 1e-6 * norm.max()] / norm[norm > 1e-6 * norm.max(), None]
    score = [float(np.sum(np.sort((vec @ ch) ** 2, axis=1)[:, :6])) for ch in cand]
    ch = cand[int(np.argmin(score))]
    for _ in range(3):
        vin, vout = split(ch)
        ch = np.linalg.eigh(vin.T @ vin)[1][:, 0]
    vin, vout = split(ch)
    e1 = vin[0] - np.dot(vin[0], ch) * ch
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(ch, e1)
    phi = np.arctan2(vin @ e2, vin @ e1)
    phi0 = np.angle(np.mean(np.exp(6j * phi))) / 6
    sector = np.round((phi - phi0) / (np.pi / 3)).astype(int) % 6
    a = float(np.mean([np.linalg.norm(vin[sector == k].mean(axis=0)) for k in range(6) if np.any(sector == k)]))
    c = 2.0 * float(np.mean(np.abs(vout @ ch)))
    return a, c


#: Largest relative difference of the two in-plane estimates of a (Lx / nx and Ly / (√3 ny)) of an orthohexagonal cell
#: that still counts as one hexagonal crystal (a 128-atom cell's 5 ps means differ by up to ~0.5 % from fluctuations).
HEXAGONAL_TOLERANCE = 0.02


def cell_lattice_parameters(lengths, repeat, angles=None, tolerance_deg: float = 1e-6,
                            hexagonal_tolerance: float = HEXAGONAL_TOLERANCE):
    """hcp ``(a from Lx, a from Ly, c)`` (Å) of an orthohexagonal supercell (:func:`orthogonal_hcp`, ``repeat`` =
    (nx, ny, nz) 4-atom cells of a × √3a × c): Lx / nx, Ly / (√3 ny), Lz / nz. ``lengths`` (..., 3) Å, means taken over
    the leading axes. NaN when the lengths are no longer a and c: ``angles`` (..., 3, degrees) not all within
    ``tolerance_deg`` of 90°, or the two estimates of a more than ``hexagonal_tolerance`` apart (relative; the basal
    plane no longer hexagonal: the crystal changed its arrangement in the cell, as a superheated one may)."""
    nan = (float("nan"),) * 3
    lengths = np.reshape(np.asarray(lengths, float), (-1, 3))
    if angles is not None and not np.all(np.abs(np.asarray(angles, float) - 90.0) <= tolerance_deg):
        return nan
    nx, ny, nz = (float(n) for n in repeat)
    mean = lengths.mean(axis=0)
    a_x, a_y, c = float(mean[0] / nx), float(mean[1] / (math.sqrt(3) * ny)), float(mean[2] / nz)
    return (a_x, a_y, c) if abs(a_x / a_y - 1) <= hexagonal_tolerance else nan


def hcp_consistent(a: float, c: float, volume: float, tolerance: float = 0.01) -> bool:
    """Whether hcp with these a and c (Å) has ``volume`` (Å³/atom, sqrt(3)/4 a² c) within ``tolerance`` (relative):
    False when the crystal is no longer one hcp single crystal (reoriented in part, twinned, melted), where
    :func:`hcp_lattice_parameters` means nothing."""
    return bool(np.isfinite(a) and np.isfinite(c) and abs(math.sqrt(3) / 4 * a * a * c / volume - 1) <= tolerance)


# ------------------------------------------------------------------------------------------------ NPT runs


@dataclass
class StateRow:
    """Means over the second half of one NPT run: ``temperature`` K (target), ``pressure`` GPa (target),
    ``T_mean`` K, ``p_mean`` GPa, ``energy`` eV/atom (E_pot), ``energy_std`` eV/atom (standard error of the mean from
    4 blocks), ``volume`` Å³/atom, ``a``, ``c`` Å (hcp, :func:`hcp_lattice_parameters` of the frames; NaN where less
    than half of the atoms are solid or where a and c do not give the volume, :func:`hcp_consistent`), ``q6`` (mean qbar_6 of the frames), ``solid`` (solid fraction of the frames), ``steps``, ``wall_s``;
    for an orthohexagonal supercell (``cell_repeat`` of :func:`heating_curve`) ``a_cell`` (Lx / nx), ``a_cell_y``
    (Ly / (√3 ny)) and ``c_cell`` (Lz / nz) Å from the logged cell lengths (:func:`cell_lattice_parameters`; NaN where
    less than half of the atoms are solid, where the cell is not orthogonal, or without ``cell_repeat``)."""

    temperature: float
    pressure: float
    T_mean: float
    p_mean: float
    energy: float
    energy_std: float
    volume: float
    a: float
    c: float
    q6: float
    solid: float
    steps: int
    wall_s: float
    a_cell: float = float("nan")
    a_cell_y: float = float("nan")
    c_cell: float = float("nan")

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _block_error(x: np.ndarray, blocks: int = 4) -> float:
    if len(x) < 2 * blocks:
        return float(np.std(x) / math.sqrt(max(len(x), 1)))
    means = [b.mean() for b in np.array_split(x, blocks)]
    return float(np.std(means, ddof=1) / math.sqrt(blocks))


def _npt(potential, atoms, *, temperature, pressure, steps, timestep, frames, seed, progress, momenta, species,
         ensemble="npt_mtk", **md):
    """One run_md call; returns (result, frames of the second half, all frames)."""
    log_every = md.pop("log_every", 10)
    every = max(log_every, (steps // 2 // max(frames, 1)) // log_every * log_every)
    imgs = []  # run_md appends the frames in memory
    res = run_md(potential, atoms, ensemble=ensemble, steps=steps, timestep=timestep, temperature=temperature,
                 pressure=pressure, seed=seed, log_every=log_every, trajectory=imgs, trajectory_every=every,
                 momenta=momenta, species=species, progress=progress, **md)
    half = [f for f in imgs if f.info.get("step", 0) > steps // 2] or imgs[-1:]
    return res, half, imgs


def _row(res, frames, temperature, pressure, cell_repeat=None) -> StateRow:
    n = len(res.atoms)
    steps = res.column("step")
    second = steps > steps[-1] / 2
    if second.sum() < 2:
        second = np.ones_like(steps, bool)
    col = lambda name: res.column(name)[second]  # noqa: E731
    e = col("potential_energy_eV") / n
    q = [order_parameter(f) for f in frames]
    solid = float(np.mean([np.mean(x >= SOLID_THRESHOLD) for x in q]))
    a, c = np.mean([hcp_lattice_parameters(f) for f in frames], axis=0) if solid >= 0.5 else (np.nan, np.nan)
    if not hcp_consistent(a, c, float(col("volume_A3").mean() / n)):
        a, c = np.nan, np.nan
    cell = (np.nan, np.nan, np.nan)
    if cell_repeat is not None and solid >= 0.5:
        cell = cell_lattice_parameters(np.stack([col(k) for k in ("a_A", "b_A", "c_A")], axis=1), cell_repeat,
                                       np.stack([col(k) for k in ("alpha_deg", "beta_deg", "gamma_deg")], axis=1))
    return StateRow(temperature=float(temperature), pressure=float(pressure), T_mean=float(col("temperature_K").mean()),
                    p_mean=float(col("pressure_GPa").mean()), energy=float(e.mean()), energy_std=_block_error(e),
                    volume=float(col("volume_A3").mean() / n), a=float(a), c=float(c), q6=float(np.mean([x.mean() for x in q])),
                    solid=solid, steps=int(res.steps), wall_s=float(res.wall_s), a_cell=cell[0], a_cell_y=cell[1],
                    c_cell=cell[2])


def _scaled_momenta(atoms, t_old, t_new):
    p = atoms.get_momenta()
    return None if not np.any(p) else p * math.sqrt(t_new / max(t_old, 1e-6))


def heating_curve(potential, atoms, temperatures, *, steps_per_T: int = 2000, timestep: float = 2.0,
                  pressure: float = 0.0, frames: int = 10, seed: int = 0, species=None,
                  progress: bool = False, callback=None, cell_repeat=None, **md) -> list[StateRow]:
    """NPT (MTK, ``pressure`` GPa) of ``atoms`` at each of ``temperatures`` (K) in turn, ``steps_per_T``
    steps of ``timestep`` fs each, every run continuing from the previous final frame (positions, cell, and momenta
    rescaled to the new temperature). Returns one :class:`StateRow` per temperature (second-half means; ``a``, ``c`` and
    the order parameter from ``frames`` frames of the second half). A run that becomes unstable raises
    :class:`mtpjax.md.MDInstability`. ``callback(row)`` after each temperature; ``md``: more
    :func:`run_md` settings (``thermostat_time``, ``barostat_time``, ``skin``, ``npt_couple``, ...).

    ``cell_repeat`` (nx, ny, nz): ``atoms`` is an orthohexagonal hcp supercell (:func:`orthogonal_hcp`) of that many
    4-atom cells; each row then also has a and c from the cell lengths (``a_cell``, ``a_cell_y``, ``c_cell``). With
    ``npt_couple="aniso"`` the cell stays orthogonal and these are hcp's a and c for as long as the crystal lives
    (a full-cell barostat may shear it into another supercell)."""
    rows, cur, t_prev = [], atoms.copy(), None
    for k, T in enumerate(temperatures):
        mom = None if t_prev is None else _scaled_momenta(cur, t_prev, T)
        res, half, _ = _npt(potential, cur, temperature=T, pressure=pressure, steps=steps_per_T, timestep=timestep,
                            frames=frames, seed=seed + k, progress=progress, momenta=mom, species=species, **md)
        rows.append(_row(res, half, T, pressure, cell_repeat))
        if callback:
            callback(rows[-1])
        cur, t_prev = res.atoms, T
    return rows


def detect_melting(rows, *, solid_below: float = 0.5, min_jump: float = 0.02):
    """The first row (of a heating curve, temperatures increasing) where the crystal melted: its solid fraction fell
    below ``solid_below`` *and* the energy jumped. The jump: E_pot/atom of the first fully liquid row (solid fraction
    < 0.1, from that row on) above the last clearly solid row's (solid fraction >= 0.8, before it), less the solid's
    own rise (the median slope dE/dT of the solid rows up to there); it must exceed ``min_jump`` eV/atom (it is about
    the latent heat, hcp Mg's is about 0.09 eV/atom). Returns ``(index, T_before, T_melted, jump eV/atom)`` or None
    when nothing melted."""
    T = np.array([r.temperature for r in rows], float)
    e = np.array([r.energy for r in rows], float)
    s = np.array([r.solid for r in rows], float)
    below = np.nonzero(s < solid_below)[0]
    if len(below) == 0 or below[0] == 0:
        return None
    i = int(below[0])
    solid = np.nonzero(s[:i] >= 0.8)[0]
    if len(solid) == 0:
        return None
    j = int(solid[-1])
    liquid = np.nonzero(s[i:] < 0.1)[0]
    k = i + int(liquid[0]) if len(liquid) else i
    slope = float(np.median(np.diff(e[: j + 1]) / np.diff(T[: j + 1]))) if j > 0 else 0.0
    jump = float(e[k] - e[j] - slope * (T[k] - T[j]))
    return (i, float(T[i - 1]), float(T[i]), jump) if jump > min_jump else None


def pressure_scan(potential, atoms, pressures, *, temperature: float = 300.0, steps: int = 2000, timestep: float = 2.0,
                  frames: int = 4, seed: int = 0, species=None, progress: bool = False,
                  callback=None, cell_repeat=None, **md) -> list[StateRow]:
    """NPT at ``temperature`` K and each of ``pressures`` (GPa) in turn (each run continuing from the previous final
    frame, so order them monotonically): E_pot/atom, V/atom, a, c per pressure (:class:`StateRow`).
    ``cell_repeat`` and ``md`` (``npt_couple``, ...) as in :func:`heating_curve`: with an orthohexagonal cell and
    ``npt_couple="aniso"`` the rows also have a and c from the cell lengths."""
    rows, cur = [], atoms.copy()
    for k, p in enumerate(pressures):
        res, half, _ = _npt(potential, cur, temperature=temperature, pressure=float(p), steps=steps, timestep=timestep,
                            frames=frames, seed=seed + k, progress=progress, momenta=None if k == 0 else cur.get_momenta(),
                            species=species, **md)
        rows.append(_row(res, half, temperature, p, cell_repeat))
        if callback:
            callback(rows[-1])
        cur = res.atoms
    return rows


# ------------------------------------------------------------------------------------------------ two-phase method


def orthogonal_hcp(symbol: str, a: float, c: float, repeat=(1, 1, 1)):
    """hcp in its orthorhombic 4-atom cell (a, sqrt(3) a, c; Å), repeated: x along [2-1-10], z along [0001]."""
    from ase import Atoms

    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 5 / 6, 0.5], [0, 1 / 3, 0.5]])
    cell = np.diag([a, math.sqrt(3) * a, c])
    return Atoms(symbol * 4, scaled_positions=frac, cell=cell, pbc=True).repeat(tuple(repeat))


def two_phase_cell(solid, liquid, *, axis: int = 2, fraction: float = 0.5, min_distance: float = 2.3):
    """The coexistence start: the atoms of ``solid`` whose fractional coordinate along ``axis`` (wrapped to [0, 1)) is
    below ``fraction``, and those of ``liquid`` at or above it, in ``solid``'s cell; liquid atoms closer than
    ``min_distance`` Å to a solid atom (across both interfaces) are dropped. Both must have the same number of atoms
    and the same cell (a copy of the crystal melted at fixed cell). Positions and momenta come from their sources; the
    returned atoms carry ``arrays['phase']`` (1 solid, 0 liquid at the start)."""
    from ase import Atoms

    from ..neighbors import pairs

    if len(solid) != len(liquid) or not np.allclose(solid.cell.array, liquid.cell.array, atol=1e-6):
        raise MeltingError("two_phase_cell: the solid and the liquid need the same atoms count and the same cell")
    s_frac = solid.get_scaled_positions(wrap=True)[:, axis]
    l_frac = liquid.get_scaled_positions(wrap=True)[:, axis]
    s_keep, l_keep = np.nonzero(s_frac < fraction)[0], np.nonzero(l_frac >= fraction)[0]
    pos = np.concatenate([solid.get_positions(wrap=True)[s_keep], liquid.get_positions(wrap=True)[l_keep]])
    mom = np.concatenate([solid.get_momenta()[s_keep], liquid.get_momenta()[l_keep]])
    ns = len(s_keep)
    # liquid atoms too close to a solid atom
    i, j, shift = pairs(pos, solid.cell.array, np.array([True] * 3), float(min_distance))
    bad = np.unique(np.concatenate([j[(i < ns) & (j >= ns)], i[(i >= ns) & (j < ns)]]))
    keep = np.setdiff1d(np.arange(len(pos)), bad)
    out = Atoms(np.array(solid.get_chemical_symbols())[np.concatenate([s_keep, l_keep])][keep].tolist(),
                positions=pos[keep], cell=solid.cell.array, pbc=True)
    out.set_momenta(mom[keep])
    out.arrays["phase"] = (keep < ns).astype(np.int64)
    return out


def prepare_two_phase(potential, crystal, *, temperature: float, melt_temperature: float | None = None,
                      equil_steps: int = 2000, melt_steps: int = 3000, quench_steps: int = 500, timestep: float = 2.0,
                      axis: int = 2, species=None, seed: int = 0, progress: bool = False, **md):
    """A solid–liquid coexistence start at ``temperature`` K and p = 0: ``crystal`` equilibrated by NPT
    (``equil_steps``), a copy of it melted at that fixed cell by Langevin NVT at ``melt_temperature`` (default
    1.6 × ``temperature``; ``melt_steps``) and brought back to ``temperature`` (``quench_steps``), then
    :func:`two_phase_cell` (solid below the middle of ``axis``, liquid above). Returns ``(atoms, info)`` with the
    solid fractions of the two sources in ``info`` (the melt must be liquid, the crystal solid, else MeltingError)."""
    melt_temperature = 1.6 * temperature if melt_temperature is None else melt_temperature
    sol = run_md(potential, crystal, ensemble="npt_mtk", steps=equil_steps, timestep=timestep, temperature=temperature,
                 pressure=0.0, seed=seed, species=species, progress=progress, **md).atoms
    hot = run_md(potential, sol, ensemble="nvt_langevin", steps=melt_steps, timestep=timestep, temperature=melt_temperature,
                 seed=seed + 1, species=species, progress=progress, momenta=_scaled_momenta(sol, temperature, melt_temperature),
                 **md).atoms
    liq = run_md(potential, hot, ensemble="nvt_langevin", steps=quench_steps, timestep=timestep, temperature=temperature,
                 seed=seed + 2, species=species, progress=progress, momenta=_scaled_momenta(hot, melt_temperature, temperature),
                 **md).atoms
    info = {"solid_fraction_crystal": solid_fraction(sol), "solid_fraction_melt": solid_fraction(liq),
            "cell_A": np.asarray(sol.cell.lengths()).tolist()}
    if info["solid_fraction_crystal"] < 0.9:
        raise MeltingError(f"the crystal equilibrated at {temperature} K is not solid (solid fraction "
                           f"{info['solid_fraction_crystal']:.2f}): start the coexistence run at a lower temperature")
    if info["solid_fraction_melt"] > 0.1:
        raise MeltingError(f"the melt at {melt_temperature} K is not liquid (solid fraction {info['solid_fraction_melt']:.2f}): "
                           "raise melt_temperature or melt_steps")
    return two_phase_cell(sol, liq, axis=axis), info


@dataclass
class CoexistenceRun:
    """One two-phase NPT run at ``temperature`` K: ``time_ps`` and ``solid`` (solid fraction) per frame,
    ``energy`` (E_pot eV/atom per frame), the fitted rates ``solid_rate`` (1/ps) and ``energy_rate`` (eV/atom/ps) over
    the run after the first ``skip_ps``, the ``outcome`` (``froze``: the solid grew, ``melted``: it shrank, judged by
    the solid-fraction rate), ``wall_s``."""

    temperature: float
    time_ps: list = field(default_factory=list)
    solid: list = field(default_factory=list)
    energy: list = field(default_factory=list)
    solid_rate: float = 0.0
    energy_rate: float = 0.0
    outcome: str = ""
    wall_s: float = 0.0
    atoms: object = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "atoms"}


def two_phase_run(potential, start, temperature: float, *, steps: int = 10000, timestep: float = 2.0,
                  start_temperature: float | None = None, frame_every: int = 250, skip_ps: float = 2.0,
                  pressure: float = 0.0, species=None, seed: int = 0, progress: bool = False, **md) -> CoexistenceRun:
    """NPT (full cell, ``pressure`` GPa) of a coexistence start at ``temperature`` K for ``steps`` steps, the solid
    fraction measured every ``frame_every`` steps; rates fitted (least squares) after ``skip_ps`` ps. Momenta of
    ``start`` are rescaled from ``start_temperature`` (default: no rescaling)."""
    mom = start.get_momenta()
    if start_temperature:
        mom = mom * math.sqrt(temperature / start_temperature)
    log_every = md.pop("log_every", 10)
    every = max(log_every, frame_every // log_every * log_every)
    imgs = []  # run_md appends the frames in memory
    res = run_md(potential, start, ensemble="npt_mtk", steps=steps, timestep=timestep, temperature=temperature,
                 pressure=pressure, seed=seed, log_every=log_every, trajectory=imgs, trajectory_every=every,
                 momenta=mom, species=species, progress=progress, **md)
    n = len(start)
    out = CoexistenceRun(temperature=float(temperature), wall_s=float(res.wall_s), atoms=res.atoms)
    for f in imgs:
        out.time_ps.append(f.info["step"] * timestep / 1000)
        out.solid.append(solid_fraction(f))
        out.energy.append(f.get_potential_energy() / n)
    t, s, e = map(np.asarray, (out.time_ps, out.solid, out.energy))
    use = t >= min(skip_ps, t[-1] / 2)
    if use.sum() >= 2:
        out.solid_rate = float(np.polyfit(t[use], s[use], 1)[0])
        out.energy_rate = float(np.polyfit(t[use], e[use], 1)[0])
    out.outcome = "froze" if out.solid_rate > 0 else "melted"
    return out


def coexistence_melting_point(runs) -> dict:
    """The melting temperature from two-phase runs (:class:`CoexistenceRun`): ``bracket`` (highest temperature whose
    solid grew, lowest whose solid shrank; K), ``estimate`` (K): where the solid-fraction rate, interpolated
    linearly between the two runs of the bracket, crosses zero; ``fit`` (K): where a straight line through the rates of
    all runs crosses zero (NaN when it does not fall with T). ``consistent``: every run below the bracket froze
    and every run above it melted. MeltingError when the runs do not bracket a crossing."""
    runs = sorted(runs, key=lambda r: r.temperature)
    froze = [r for r in runs if r.solid_rate > 0]
    melted = [r for r in runs if r.solid_rate <= 0]
    if not froze or not melted:
        raise MeltingError("the two-phase runs do not bracket the melting point: "
                           + ", ".join(f"{r.temperature:g} K {r.outcome}" for r in runs))
    lo, hi = max(froze, key=lambda r: r.temperature), min(melted, key=lambda r: r.temperature)
    consistent = lo.temperature < hi.temperature
    T = np.array([r.temperature for r in runs])
    k = np.polyfit(T, [r.solid_rate for r in runs], 1)
    fit = float(-k[1] / k[0]) if k[0] < 0 else float("nan")
    if consistent:
        estimate = lo.temperature + lo.solid_rate / (lo.solid_rate - hi.solid_rate) * (hi.temperature - lo.temperature)
    else:  # not monotone (noise near Tm): the straight line through all runs
        estimate = fit
    return {"bracket": (float(lo.temperature), float(hi.temperature)), "estimate": float(estimate), "fit": fit,
            "consistent": bool(consistent)}


__all__ = ["SOLID_THRESHOLD", "MeltingError", "StateRow", "CoexistenceRun", "order_parameter", "nearest_neighbours",
           "solid_mask", "solid_fraction", "hcp_lattice_parameters", "cell_lattice_parameters", "HEXAGONAL_TOLERANCE", "hcp_consistent", "heating_curve", "detect_melting", "pressure_scan", "orthogonal_hcp",
           "two_phase_cell", "prepare_two_phase", "two_phase_run", "coexistence_melting_point"]
