"""The MD driver: steps under jit in chunks, the neighbour list re-allocated outside jit on overflow, a thermodynamic
log (CSV), a trajectory (extended XYZ or ASE .traj), a progress bar, and a stop with a clear message when the run
becomes unstable.

A chunk is ``log_every`` steps in one ``jax.lax.fori_loop`` (each step: the integrator, then the neighbour list's
jit-side update, which rebuilds it through the host builder when it could go stale). After a chunk:

- the list overflowed (an atom gained more neighbours than the capacity) -> re-allocate it from the chunk's first
  frame with room for the most neighbours seen, and run the chunk again (the same random numbers: a Langevin run does
  not depend on when this happens);
- with an active set (``active_set``), the extrapolation grade γ (:mod:`mtpjax.active.simulation`) is computed inside
  the jitted loop every ``grade_every`` steps; the chunk's largest γ goes into the log (column ``grade``), the frame
  with it is written to ``extrapolative`` when γ > ``gamma_select``, and γ > ``gamma_break`` stops the run with an
  :class:`MDExtrapolation` (the last good frame kept, as below);
- the frame is measured (energy, temperature, pressure and stress with the kinetic term, cell, the closest pair) and
  checked: a NaN, a temperature above ``max_temperature`` or two atoms closer than ``min_distance`` stop the run with an
  :class:`MDInstability` naming the steps and the reason. The last good frame (the previous chunk's) is written to
  the trajectory and carried by the exception (``err.atoms``), and the log keeps every good row.

Files are replaced atomically (:mod:`mtpjax.io.files`): the trajectory is written to a temporary file that becomes
the destination when the run ends, normally or not; the CSV log is rewritten whole every ``LOG_FLUSH_S`` seconds.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import MtpjaxError
from ..io.files import atomic_path, atomic_write
from ..units import EV_PER_A3_TO_GPA
from .energy import min_distance, potential_types, stress, volume
from .integrators import make_integrator, masses_of, temperature_of

#: Seconds between rewrites of the CSV log during a run (it is written at the end in any case).
LOG_FLUSH_S = 10.0
#: Re-allocations of the neighbour list tried for one chunk before giving up.
MAX_REALLOCATIONS = 8
#: Trajectory formats by suffix.
TRAJECTORY_FORMATS = {".xyz": "extxyz", ".extxyz": "extxyz", ".traj": "traj"}

#: The columns of the thermodynamic log, with units.
LOG_COLUMNS = ("step", "time_fs", "potential_energy_eV", "kinetic_energy_eV", "total_energy_eV", "conserved_eV",
               "temperature_K", "pressure_GPa", "volume_A3", "stress_xx_GPa", "stress_yy_GPa", "stress_zz_GPa",
               "stress_yz_GPa", "stress_xz_GPa", "stress_xy_GPa", "a_A", "b_A", "c_A", "alpha_deg", "beta_deg",
               "gamma_deg", "min_distance_A", "neighbour_builds", "grade")


class MDInstability(MtpjaxError):
    """An MD run stopped because it became unstable. ``atoms``: the last good frame; ``step``: its step;
    ``result``: the :class:`MDResult` up to that frame."""

    def __init__(self, message: str, atoms=None, step: int = 0, result=None):
        super().__init__(message)
        self.atoms, self.step, self.result = atoms, step, result


class MDExtrapolation(MDInstability):
    """An MD run stopped because the extrapolation grade exceeded ``gamma_break``. ``atoms``: the last good frame;
    ``extrapolated``: the frame with the grade (``info['grade']``)."""

    def __init__(self, message: str, atoms=None, step: int = 0, result=None, extrapolated=None):
        super().__init__(message, atoms, step, result)
        self.extrapolated = extrapolated


@dataclass
class MDResult:
    """``atoms``: the final frame (positions, cell, momenta, energy/forces/stress); ``log``: the rows of the
    thermodynamic log (:data:`LOG_COLUMNS`); ``steps``: steps done; ``reallocations``: neighbour-list re-allocations
    after an overflow; ``max_grade``: the largest extrapolation grade seen (NaN without an active set);
    ``extrapolative``: how many frames were written out with γ > gamma_select; ``builds``: Verlet-list builds (on
    the device), ``host_builds``: candidate-list builds on the host (:mod:`mtpjax.md.energy`); ``wall_s``: seconds
    of the run (compilation included); ``capacity``: final neighbour slots."""

    atoms: object
    log: list = field(default_factory=list)
    steps: int = 0
    reallocations: int = 0
    builds: int = 0
    host_builds: int = 0
    max_grade: float = float("nan")
    extrapolative: int = 0
    wall_s: float = 0.0
    capacity: int = 0

    def column(self, name: str) -> np.ndarray:
        """One column of the log as an array."""
        return np.array([row[name] for row in self.log], dtype=float)


def _csv(rows) -> str:
    lines = [",".join(LOG_COLUMNS)]
    for r in rows:
        lines.append(",".join(str(int(r[c])) if c in ("step", "neighbour_builds") else f"{float(r[c]):.10g}" for c in LOG_COLUMNS))
    return "\n".join(lines) + "\n"


def write_log(path, rows) -> Path:
    """The thermodynamic log as CSV (:data:`LOG_COLUMNS`), written atomically."""
    return atomic_write(path, _csv(rows))


def trajectory_format(path) -> str:
    """extxyz or traj, by the suffix of ``path``; MtpjaxError otherwise."""
    fmt = TRAJECTORY_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise MtpjaxError(f"trajectory {path}: the format follows the suffix, one of {', '.join(TRAJECTORY_FORMATS)}")
    return fmt


class _Trajectory:
    """Frames appended to a temporary file that replaces ``path`` when closed (:func:`mtpjax.io.files.atomic_path`),
    or, when ``path`` is a list, to that list in memory (no file)."""

    def __init__(self, path, stack: contextlib.ExitStack):
        self.steps = []
        self.frames = path if isinstance(path, list) else None
        if self.frames is not None:
            return
        self.format = trajectory_format(path)
        self.tmp = stack.enter_context(atomic_path(path))
        self.writer = None
        if self.format == "traj":
            from ase.io.trajectory import Trajectory

            self.writer = Trajectory(str(self.tmp), "w")
            stack.callback(self.writer.close)

    def write(self, atoms, step: int):
        if self.steps and self.steps[-1] == step:
            return
        self.steps.append(step)
        if self.frames is not None:
            self.frames.append(atoms)
        elif self.writer is not None:
            self.writer.write(atoms)
        else:
            import ase.io

            ase.io.write(str(self.tmp), atoms, format="extxyz", append=True)


def _frame(symbols_atoms, R, P, cell, e, f, virial, step: int, time_fs: float, types):
    """An ``ase.Atoms`` of a frame: positions, cell, momenta, and a calculator with energy, forces and the static
    stress (eV/Å³)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    a = symbols_atoms.copy()
    a.calc = None
    a.positions = np.asarray(R)
    a.set_cell(np.asarray(cell), scale_atoms=False)
    a.set_momenta(np.asarray(P))
    a.info.update(step=int(step), time_fs=float(time_fs))
    if "mlip_type" not in a.arrays:
        a.arrays["mlip_type"] = np.asarray(types, dtype=np.int64)
    vol = abs(np.linalg.det(np.asarray(cell)))
    s = -np.asarray(virial) / vol
    a.calc = SinglePointCalculator(a, energy=float(e), free_energy=float(e), forces=np.asarray(f),
                                   stress=np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]]))
    return a


def run_md(potential, atoms, *, ensemble: str = "nvt_langevin", steps: int = 1000, timestep: float = 1.0,
           temperature: float = 300.0, pressure: float = 0.0, thermostat_time: float = 100.0, barostat_time: float = 1000.0,
           initial_temperature: float | None = None, seed: int = 0, log_every: int = 10, trajectory=None,
           trajectory_every: int = 100, log=None, skin: float | None = None, capacity_multiplier: float | None = None,
           capacity: int | None = None, max_temperature: float | None = None, min_distance_floor: float = 0.5,
           species=None, momenta=None, progress: bool = False, npt_cell_dof: int = 6, callback=None, active_set=None,
           grade_every: int = 10, gamma_select: float | None = None, gamma_break: float | None = None, extrapolative=None,
           **kw) -> MDResult:
    """Run MD of ``atoms`` (an ``ase.Atoms``, periodic in all directions) with any JAX ``potential``.

    ``ensemble``: nve, nvt_nose_hoover, nvt_langevin or npt_mtk (:mod:`mtpjax.md.integrators`); ``timestep``,
    ``thermostat_time``, ``barostat_time`` in fs; ``temperature``, ``initial_temperature`` (the Maxwell–Boltzmann
    draw; default ``temperature``), ``max_temperature`` (default 10 × max(temperature, 300 K)) in K; ``pressure`` in
    GPa; ``skin``, ``min_distance_floor`` in Å. ``momenta`` (N, 3) in ASE's units (amu·Å per ASE time
    unit, as ``atoms.get_momenta()``) replace the draw. ``log``: a CSV path; ``trajectory``: an .extxyz/.xyz/.traj path,
    or a list that the frames are appended to in memory; a frame every ``trajectory_every`` steps (a multiple of
    ``log_every``) and the last one. ``capacity``: initial
    neighbour slots per atom (default: from the structure and ``capacity_multiplier``). ``callback(row)`` is called
    with each log row. ``active_set``: an :class:`mtpjax.active.ActiveSet` of the (MTP) potential, or the path of the
    potential file it is stored with (:func:`mtpjax.active.load_active_set`): the grade γ every ``grade_every`` steps
    (a divisor of ``log_every``) inside the jitted loop; each chunk's largest γ is logged, its frame appended to
    ``extrapolative`` (an .extxyz/.xyz/.traj path or a list) when γ > ``gamma_select`` (default
    :data:`mtpjax.active.simulation.GAMMA_SELECT`), and the run stops at γ > ``gamma_break`` (default
    :data:`~mtpjax.active.simulation.GAMMA_BREAK`).
    Returns an :class:`MDResult`; raises :class:`MDInstability` (an MtpjaxError) when the run becomes unstable, and
    :class:`MDExtrapolation` (one) when it extrapolates past ``gamma_break``.
    """
    if not np.asarray(atoms.pbc).all():
        raise MtpjaxError("mtpjax.md runs cells periodic in all three directions (pbc = True, True, True)")
    if steps < 0 or log_every < 1 or trajectory_every < 1:
        raise MtpjaxError("steps must be >= 0, log_every and trajectory_every >= 1")
    if trajectory is not None and trajectory_every % log_every:
        raise MtpjaxError(f"trajectory_every ({trajectory_every}) must be a multiple of log_every ({log_every})")
    if trajectory is not None and not isinstance(trajectory, list):
        trajectory_format(trajectory)
    max_temperature = 10.0 * max(temperature, 300.0) if max_temperature is None else float(max_temperature)
    grader, gamma_select, gamma_break = _grader(potential, active_set, grade_every, gamma_select, gamma_break)
    if grader is not None and log_every % grade_every:
        raise MtpjaxError(f"grade_every ({grade_every}) must divide log_every ({log_every})")
    if extrapolative is not None and not isinstance(extrapolative, list):
        trajectory_format(extrapolative)
    integ, neighbor_fn = make_integrator(potential, atoms, ensemble, timestep=timestep, temperature=temperature,
                                         pressure=pressure, thermostat_time=thermostat_time, barostat_time=barostat_time,
                                         init_temperature=initial_temperature, species=species, skin=skin,
                                         capacity_multiplier=capacity_multiplier, npt_cell_dof=npt_cell_dof, **kw)
    types = potential_types(potential, atoms, species)
    mass = jnp.asarray(masses_of(atoms))
    R0 = jnp.asarray(atoms.positions, jnp.float64)
    cell0 = jnp.asarray(atoms.cell.array, jnp.float64)
    nbrs = neighbor_fn.allocate(R0, cell=cell0, capacity=capacity)
    state = integ.init(jax.random.PRNGKey(seed), R0, cell0, mass, nbrs,
                       momenta=None if momenta is None else jnp.asarray(momenta))

    types_j = jnp.asarray(types, jnp.int32)

    def advance(state, nbrs, n: int):
        """n steps; (state, list, (largest grade, its step in the chunk, positions, cell, momenta))."""
        def body(k, carry):
            s, nb, worst = carry
            s = integ.step(s, nb)
            cell = integ.cell(s, nb)
            nb = neighbor_fn.update(s.position, nb, cell=cell)
            if grader is not None:
                g = jax.lax.cond((k + 1) % grade_every == 0,
                                 lambda: grader(s.position, cell, types_j, nb.neighbours).astype(s.position.dtype),
                                 lambda: jnp.asarray(-jnp.inf, s.position.dtype))
                worst = jax.lax.cond(g > worst[0], lambda: (g, k + 1, s.position, cell, s.momentum), lambda: worst)
            return s, nb, worst

        worst = (jnp.asarray(-jnp.inf, state.position.dtype), jnp.asarray(0), state.position, integ.cell(state, nbrs),
                 state.momentum)
        return jax.lax.fori_loop(0, n, body, (state, nbrs, worst))

    advance = jax.jit(advance, static_argnums=2)

    @jax.jit
    def measure(state, nbrs):
        cell = integ.cell(state, nbrs)
        e, f, w = integ.efs_fn(state.position, nbrs, cell)
        sig = stress(w, cell, state.momentum, state.mass)
        kin = 0.5 * jnp.sum(state.momentum**2 / jnp.reshape(state.mass, (-1, 1)))
        finite = jnp.isfinite(e) & jnp.all(jnp.isfinite(state.position)) & jnp.all(jnp.isfinite(state.momentum)) \
            & jnp.all(jnp.isfinite(cell)) & jnp.all(jnp.isfinite(f))
        return {"energy": e, "forces": f, "virial": w, "stress": sig, "kinetic": kin, "cell": cell, "volume": volume(cell),
                "temperature": temperature_of(state.momentum, state.mass), "conserved": integ.conserved(state, nbrs),
                "min_distance": min_distance(state.position, nbrs, cell), "finite": finite}

    t0 = time.perf_counter()
    result = MDResult(atoms=None)
    rows = result.log
    last_flush = [time.perf_counter()]

    def row_of(m, step):
        cellpar = _cellpar(np.asarray(m["cell"]))
        s = np.asarray(m["stress"]) * EV_PER_A3_TO_GPA
        e, k = float(m["energy"]), float(m["kinetic"])
        return {"step": step, "time_fs": step * timestep, "potential_energy_eV": e, "kinetic_energy_eV": k,
                "total_energy_eV": e + k, "conserved_eV": float(m["conserved"]) if ensemble != "nve" else e + k,
                "temperature_K": float(m["temperature"]), "pressure_GPa": -float(np.trace(s)) / 3, "volume_A3": float(m["volume"]),
                "stress_xx_GPa": s[0, 0], "stress_yy_GPa": s[1, 1], "stress_zz_GPa": s[2, 2], "stress_yz_GPa": s[1, 2],
                "stress_xz_GPa": s[0, 2], "stress_xy_GPa": s[0, 1], "a_A": cellpar[0], "b_A": cellpar[1], "c_A": cellpar[2],
                "alpha_deg": cellpar[3], "beta_deg": cellpar[4], "gamma_deg": cellpar[5],
                "min_distance_A": float(m["min_distance"]), "neighbour_builds": result.builds, "grade": float("nan")}

    def frame_of(state, m, step):
        return _frame(atoms, state.position, state.momentum, m["cell"], m["energy"], m["forces"], m["virial"], step,
                      step * timestep, types)

    def problem(m) -> str | None:
        if not bool(m["finite"]):
            return ("a non-finite (NaN or inf) position, momentum, energy or force (or atoms moved farther in one step "
                    "than the neighbour list's skin allows: lower the time step or raise the skin)")
        if float(m["temperature"]) > max_temperature:
            return f"the temperature {float(m['temperature']):.4g} K exceeds max_temperature = {max_temperature:g} K"
        if float(m["min_distance"]) < min_distance_floor:
            return f"two atoms are {float(m['min_distance']):.3g} Å apart, closer than min_distance = {min_distance_floor:g} Å"
        return None

    def flush(force=False):
        if log is not None and (force or time.perf_counter() - last_flush[0] > LOG_FLUSH_S):
            write_log(log, rows)
            last_flush[0] = time.perf_counter()

    from tqdm import tqdm

    pending = None
    with contextlib.ExitStack() as stack:
        traj = _Trajectory(trajectory, stack) if trajectory is not None else None
        extra = _Trajectory(extrapolative, stack) if extrapolative is not None and grader is not None else None
        bar = stack.enter_context(tqdm(total=steps, desc=f"md {ensemble}", unit="step", disable=not progress, leave=False))
        m = measure(state, nbrs)
        bad = problem(m)
        if bad:
            raise MtpjaxError(f"the initial structure is unusable for MD: {bad}")
        good_state, good_m, step = state, m, 0
        rows.append(row_of(m, 0))
        if grader is not None:
            rows[-1]["grade"] = result.max_grade = float(jax.jit(grader)(state.position, m["cell"], types_j, nbrs.neighbours))
        if callback:
            callback(rows[-1])
        if traj is not None:
            traj.write(frame_of(state, m, 0), 0)
        try:
            while step < steps:
                n = min(log_every, steps - step)
                for attempt in range(MAX_REALLOCATIONS + 1):
                    new_state, new_nbrs, worst = advance(state, nbrs, n)
                    if not bool(new_nbrs.overflow):
                        break
                    # re-allocate outside jit from the chunk's first frame, with room for the most neighbours seen
                    result.reallocations += 1
                    nbrs = neighbor_fn.reallocate(state.position, integ.cell(state, nbrs), new_nbrs)
                else:
                    raise MtpjaxError(f"the neighbour list overflowed {MAX_REALLOCATIONS} times in steps {step}..{step + n}")
                result.builds += int(new_nbrs.n_builds)
                result.host_builds += int(new_nbrs.n_host_builds)
                new_nbrs = eqx_reset_builds(new_nbrs)
                m = measure(new_state, new_nbrs)
                bad = problem(m)
                if bad is None and bool(new_nbrs.failed):
                    bad = "the host neighbour builder refused a frame on the way" + _builder_reason(neighbor_fn, new_state, integ, new_nbrs)
                gamma = float(worst[0]) if grader is not None else float("nan")
                if bad is None and gamma > gamma_select:
                    at = _frame(atoms, worst[2], worst[4], worst[3], float("nan"), np.zeros((len(atoms), 3)),
                                np.zeros((3, 3)), step + int(worst[1]), (step + int(worst[1])) * timestep, types)
                    at.calc = None
                    at.info["grade"] = gamma
                    if extra is not None:
                        extra.write(at, step + int(worst[1]))
                        result.extrapolative += 1
                    if gamma > gamma_break:
                        last = frame_of(good_state, good_m, step)
                        if traj is not None:
                            traj.write(last, step)
                        result.atoms, result.steps = last, step
                        where = (f"; the structure is in {extrapolative}" if extra is not None and extra.frames is None else "")
                        raise MDExtrapolation(f"MD ({ensemble}) extrapolates: the grade γ = {gamma:.4g} at step "
                                              f"{step + int(worst[1])} exceeds gamma_break = {gamma_break:g}{where}; "
                                              "add such structures to the training set (mtpjax select) and refit",
                                              atoms=last, step=step, result=result, extrapolated=at)
                if bad:
                    last = frame_of(good_state, good_m, step)
                    if traj is not None:
                        traj.write(last, step)
                    result.atoms, result.steps = last, step
                    where = (f"; the last good frame (step {step}) is in {trajectory}"
                             if traj is not None and traj.frames is None else "")
                    raise MDInstability(f"MD ({ensemble}) became unstable between steps {step} and {step + n}: {bad}{where}",
                                        atoms=last, step=step, result=result)
                state, nbrs, step = new_state, new_nbrs, step + n
                good_state, good_m = state, m
                rows.append(row_of(m, step))
                if grader is not None:
                    rows[-1]["grade"] = gamma
                    result.max_grade = max(result.max_grade, gamma)
                if callback:
                    callback(rows[-1])
                if traj is not None and (step % trajectory_every == 0 or step == steps):
                    traj.write(frame_of(state, m, step), step)
                bar.update(n)
                bar.set_postfix(T=f"{float(m['temperature']):.0f} K", P=f"{rows[-1]['pressure_GPa']:.2f} GPa",
                                **({"γ": f"{gamma:.3g}"} if grader is not None else {}), refresh=False)
                flush()
        except BaseException as err:  # noqa: BLE001  (the files are closed and kept; the error goes on below)
            pending = err
    flush(force=True)
    if pending is not None:
        raise pending
    result.atoms = frame_of(good_state, good_m, step)
    result.steps = step
    result.wall_s = time.perf_counter() - t0
    result.capacity = nbrs.capacity
    return result


def _grader(potential, active_set, grade_every: int, gamma_select, gamma_break):
    """(the jit-able grade function or None, gamma_select, gamma_break) for run_md's arguments."""
    from ..active.simulation import GAMMA_BREAK, GAMMA_SELECT, structure_grade_fn

    gamma_select = GAMMA_SELECT if gamma_select is None else float(gamma_select)
    gamma_break = GAMMA_BREAK if gamma_break is None else float(gamma_break)
    if active_set is None:
        return None, gamma_select, gamma_break
    if grade_every < 1:
        raise MtpjaxError(f"grade_every must be >= 1, got {grade_every}")
    if not 0 < gamma_select <= gamma_break:
        raise MtpjaxError(f"need 0 < gamma_select <= gamma_break, got {gamma_select} and {gamma_break}")
    if isinstance(active_set, (str, Path)):
        from ..active import load_active_set

        path, active_set = active_set, load_active_set(active_set, potential)
        if active_set is None:
            raise MtpjaxError(f"{path}: no active set is stored with this potential; build one with "
                              "mtpjax grade POT TRAIN IN OUT --save-active-set")
    return structure_grade_fn(potential, active_set), gamma_select, gamma_break


def _builder_reason(neighbor_fn, state, integ, nbrs) -> str:
    """Why the host builder refuses the state's frame (its StructureError), or a generic hint."""
    try:
        neighbor_fn.allocate(state.position, cell=integ.cell(state, nbrs))
    except MtpjaxError as err:
        return f" ({err})"
    return " (NaN or overlapping atoms at an intermediate step)"


def eqx_reset_builds(nbrs):
    """The list with its rebuild counters at zero (counted per chunk into the result)."""
    import equinox as eqx

    return eqx.tree_at(lambda t: (t.n_builds, t.n_host_builds), nbrs,
                       (jnp.zeros_like(nbrs.n_builds), jnp.zeros_like(nbrs.n_host_builds)))


def _cellpar(cell) -> np.ndarray:
    """a, b, c (Å), alpha, beta, gamma (degrees) of a cell (rows)."""
    lengths = np.linalg.norm(cell, axis=1)
    ang = []
    for i, j in ((1, 2), (0, 2), (0, 1)):
        c = float(np.dot(cell[i], cell[j]) / (lengths[i] * lengths[j]))
        ang.append(math.degrees(math.acos(max(-1.0, min(1.0, c)))))
    return np.concatenate([lengths, ang])
