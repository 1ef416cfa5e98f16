"""The one labelling path for every oracle: structures in; energy, forces, stress out.

    labelled = label(oracle, structures)      # list of ase.Atoms (labelled copies) or Failure, in input order
    labeller = Labeller(oracle); labeller(set_1); labeller(set_2)   # the same, the oracle checked once

A labelled structure is a copy of the input carrying a
:class:`~ase.calculators.singlepoint.SinglePointCalculator` with ``energy`` and ``free_energy`` (eV), ``forces``
(eV/Å) and, for cells periodic in all three directions, ``stress`` (eV/Å³, ASE's sign and Voigt order
xx yy zz yz xz xy). A structure that cannot be labelled becomes a :class:`Failure` named by its
``atoms.info['id']`` (the generator's ids), else ``atoms.info['name']``, else its position and formula; the rest
of the batch goes on. ``progress(n)`` is called with the number of structures newly done (a tqdm bar's
``update``), so that the calls add up to ``len(structures)``.

JAX oracles (any :class:`mtpjax.potential.Potential`, MTPs included) are validated by
:meth:`mtpjax.evaluate.Evaluator.prepare` and evaluated in packed batches of up to ``batch_atoms`` atoms by the
process-wide compiled program of :func:`mtpjax.evaluate.program`. Every padded size is a power of two, so that
labelling many chunks of different sizes compiles few programs and a structure's labels are bit for bit the same
whatever batch it is labelled in (the generator's output files do not depend on its chunks or workers). A
non-finite result fails its structure only; a batch that raises is redone one structure at a time. An
:class:`ASEOracle` labels in its worker processes. The training-set generator (:mod:`mtpjax.generate`) labels
through :func:`label` too.

**Plausibility** (:func:`implausibility`, :func:`screen`). A finite label can still be one that no real material
gives: a tabulated EAM far outside its tables (Al_mm.eam.fs on a cell compressed to 0.37 Ω0 gives up to 1.5 MeV/atom,
and LAMMPS the same). Such a structure becomes a :class:`Failure` with reason ``implausible`` and a message naming
the value, exactly like a failed one, when

- any force component exceeds :data:`MAX_FORCE` = 1e4 eV/Å, or any stress component exceeds
  :data:`MAX_STRESS_GPA` = 1e5 GPa (100 TPa); or
- given the oracle's ground-state energy per atom ``reference_energy`` (the generator passes its hcp reference):
  E/N − reference_energy > :data:`MAX_ENERGY_ABOVE_REFERENCE` = 1000 eV/atom. The rule is relative, so it holds
  for any oracle's energy zero (EAM, DFT with pseudopotential offsets, ...).

Why these numbers hold for any element: cohesive energies are 1–9 eV/atom (W, the largest, 8.9). The generator
never keeps atoms closer than 0.6 d_nn, so no structure is compressed beyond about 0.6³ = 0.22 Ω0 isotropically.
A third-order Birch–Murnaghan extrapolation (B' = 4.5) there gives E − E0 ≈ 5.2 B0Ω0 and p ≈ 57 B0: for the
stiffest metals (W: B0 = 310 GPa, Ω0 = 15.9 Å³, B0Ω0 = 31 eV) about 160 eV/atom and 18 TPa; Al at 0.37 Ω0 (the
case above) about 10 eV/atom (Mendelev's Mg_mm.eam.fs on hcp Mg gives 5.0 eV/atom at 0.37 Ω0 and 19.6 eV/atom,
1.8 TPa at 0.22 Ω0). The bounds are 6× (energy) and 5.6× (stress) above these extremes, so a
real material's label is never discarded, while an oracle's keV–MeV extrapolation artefacts are. Forces: an
atom between neighbours at 0.6 d_nn under ~20 TPa feels ≲ p·d² ≈ 110 eV/Å³ × 3 Å² ≈ 300 eV/Å; the bound is 30× that.

**The material's own scale.** Given also the oracle's B0·Ω0 (``energy_scale``, eV/atom: its bulk modulus times its
volume per atom at the ground state; the generator measures both), the energy bound tightens to
:data:`MAX_ENERGY_IN_B0_OMEGA0` = 8 B0·Ω0, kept within [50, 1000] eV/atom (:data:`MIN_ENERGY_LIMIT`: 5× the
largest cohesive energy, for soft solids with a steep wall such as Lennard-Jones argon, B0·Ω0 = 0.66 eV/atom): 1.5× the
5.2 B0·Ω0 that the Birch–Murnaghan
extrapolation gives at the densest isotropic compression the generator keeps (0.22 Ω0), which no structure of the
chain exceeds physically (Mendelev's Mg_mm.eam.fs: 19.6 eV/atom = 3.8 B0·Ω0 there). Measured on Al with Mendelev's
Al_mm.eam.fs (B0·Ω0 = 7.3 eV/atom, bound 59 eV/atom) at quickstart size: the three SHEAR cells labelled 63–97 eV/atom above the
ground state at 0.62–0.67 Ω0 (where the Birch–Murnaghan extrapolation gives about 1.3 eV/atom) are discarded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

from ..batch import max_neighbours, pack
from ..errors import MtpjaxError, StructureError
from ..evaluate import Evaluator, consecutive_groups, program, types_for_symbols
from ..neighbors import power_of_two
from ..potential import Potential
from ..units import EV_PER_A3_TO_GPA, stress_to_voigt
from .ase_oracle import ASEOracle
from .base import check_symbols

#: Failure reasons.
REASONS = ("unknown_element", "invalid_structure", "oracle_error", "non_finite", "implausible")
#: Largest plausible energy per atom above the oracle's ground state (eV/atom); see the module docstring.
MAX_ENERGY_ABOVE_REFERENCE = 1000.0
#: With the oracle's B0·Ω0 known: largest plausible energy per atom above the ground state, in units of B0·Ω0 ...
MAX_ENERGY_IN_B0_OMEGA0 = 8.0
#: ... but never below this (eV/atom): soft solids with a steep repulsive wall (Lennard-Jones argon: B0·Ω0 = 0.66
#: eV/atom, while one contact at 0.6 d_nn costs 4-6 eV) are not described by the Birch–Murnaghan scale.
MIN_ENERGY_LIMIT = 50.0
#: Largest plausible force component (eV/Å).
MAX_FORCE = 1.0e4
#: Largest plausible stress component (GPa).
MAX_STRESS_GPA = 1.0e5


@dataclass(frozen=True)
class Failure:
    """A structure that could not be labelled: its ``index`` in the input, ``name`` (``atoms.info['id']``, else
    ``atoms.info['name']``, else ``"structure K (formula)"``), ``reason`` (one of :data:`REASONS`) and a
    human-readable ``message``."""

    index: int
    name: str
    reason: str
    message: str


def _name(atoms, k: int) -> str:
    info = atoms.info
    return str(info.get("id") or info.get("name") or f"structure {k} ({atoms.get_chemical_formula() or 'empty'})")


def _labelled(atoms, energy, forces, stress):
    a = atoms.copy()
    kw = {"energy": float(energy), "free_energy": float(energy), "forces": np.asarray(forces, dtype=float)}
    if stress is not None and atoms.pbc.all():
        kw["stress"] = np.asarray(stress, dtype=float)
    a.calc = SinglePointCalculator(a, **kw)
    return a


def _finite(energy, forces, stress) -> bool:
    return bool(np.isfinite(energy) and np.isfinite(forces).all() and (stress is None or np.isfinite(stress).all()))


def energy_limit(energy_scale: float | None = None) -> float:
    """The energy bound (eV/atom above the ground state): :data:`MAX_ENERGY_ABOVE_REFERENCE`, or, given a positive
    ``energy_scale`` (B0·Ω0, eV/atom), :data:`MAX_ENERGY_IN_B0_OMEGA0` × ``energy_scale`` kept within
    [:data:`MIN_ENERGY_LIMIT`, :data:`MAX_ENERGY_ABOVE_REFERENCE`]."""
    if energy_scale is None or not np.isfinite(energy_scale) or energy_scale <= 0:
        return MAX_ENERGY_ABOVE_REFERENCE
    return float(min(MAX_ENERGY_ABOVE_REFERENCE, max(MIN_ENERGY_LIMIT, MAX_ENERGY_IN_B0_OMEGA0 * energy_scale)))


def implausibility(atoms, reference_energy: float | None = None, energy_scale: float | None = None) -> str | None:
    """Why the labels of ``atoms`` (energy eV, forces eV/Å, stress eV/Å³ from its calculator) are ones no real
    material gives, or None when they are plausible (the rule of the module docstring: non-finite; any |force
    component| > :data:`MAX_FORCE`; any |stress component| > :data:`MAX_STRESS_GPA`; with ``reference_energy``
    (eV/atom, the oracle's ground state), E/N − reference_energy > :func:`energy_limit` of ``energy_scale`` (B0·Ω0,
    eV/atom))."""
    res = atoms.calc.results
    energy = float(res["energy"])
    forces = np.asarray(res["forces"], dtype=float)
    stress = res.get("stress")
    if not _finite(energy, forces, stress):
        return "non-finite energy, force or stress"
    n = max(len(atoms), 1)
    limit = energy_limit(energy_scale)
    if reference_energy is not None and energy / n - reference_energy > limit:
        return (f"energy {energy / n:.6g} eV/atom is {energy / n - reference_energy:.4g} eV/atom above the oracle's "
                f"ground state ({reference_energy:.6g} eV/atom); limit {limit:.4g} eV/atom")
    fmax = float(np.abs(forces).max()) if forces.size else 0.0
    if fmax > MAX_FORCE:
        return f"force component {fmax:.4g} eV/Å; limit {MAX_FORCE:g} eV/Å"
    if stress is not None:
        smax = float(np.abs(np.asarray(stress, dtype=float)).max()) * EV_PER_A3_TO_GPA
        if smax > MAX_STRESS_GPA:
            return f"stress component {smax:.4g} GPa; limit {MAX_STRESS_GPA:g} GPa"
    return None


def screen(results: list, reference_energy: float | None = None, energy_scale: float | None = None) -> list:
    """``results`` of :func:`label` with every labelled structure whose labels are implausible
    (:func:`implausibility`) replaced by a :class:`Failure` with reason ``implausible`` (``non_finite`` for NaN/inf;
    its index in ``results``,
    its name, and a message giving the value and the limit). Failures pass through unchanged."""
    out = []
    for k, r in enumerate(results):
        why = None if isinstance(r, Failure) else implausibility(r, reference_energy, energy_scale)
        reason = "non_finite" if why is not None and why.startswith("non-finite") else "implausible"
        out.append(r if why is None else Failure(k, _name(r, k), reason, why))
    return out


class Labeller:
    """Labels structures with one oracle (see :func:`label`, which is ``Labeller(oracle)(structures)``). Compiled
    programs are shared by the whole process (:func:`mtpjax.evaluate.program`), not kept per Labeller."""

    def __init__(self, oracle, batch_atoms: int = 2048, reference_energy: float | None = None,
                 energy_scale: float | None = None):
        if not isinstance(oracle, (ASEOracle, Potential)):
            raise MtpjaxError(f"{oracle!r} is not an oracle (a JAX potential or an ASEOracle); see mtpjax.oracles.make_oracle")
        self.oracle = oracle
        self.batch_atoms = int(batch_atoms)
        self.reference_energy = None if reference_energy is None else float(reference_energy)
        self.energy_scale = None if energy_scale is None else float(energy_scale)
        self.evaluator = None if isinstance(oracle, ASEOracle) else Evaluator(oracle, max_batch_atoms=self.batch_atoms)

    def __call__(self, structures, progress=None) -> list:
        """Labelled copies or :class:`Failure` records, in input order (see :func:`label`)."""
        oracle = self.oracle
        structures = list(structures)
        out: list = [None] * len(structures)
        todo = []
        for k, atoms in enumerate(structures):
            try:
                check_symbols(atoms.get_chemical_symbols(), getattr(oracle, "species", None), getattr(oracle, "name", "the oracle"))
            except MtpjaxError as e:
                out[k] = Failure(k, _name(atoms, k), "unknown_element", str(e))
                continue
            if len(atoms) == 0:
                out[k] = Failure(k, _name(atoms, k), "invalid_structure", "the structure has no atoms")
                continue
            todo.append(k)
        if progress is not None and len(todo) < len(structures):
            progress(len(structures) - len(todo))
        if self.evaluator is None:
            _label_ase(oracle, structures, todo, out, progress)
        else:
            _label_jax(oracle, self.evaluator, structures, todo, out, progress, self.batch_atoms)
        return screen(out, self.reference_energy, self.energy_scale)


def label(oracle, structures, progress=None, batch_atoms: int = 2048, reference_energy: float | None = None,
          energy_scale: float | None = None) -> list:
    """Label ``structures`` (a list of ase.Atoms) with ``oracle`` (any JAX oracle or an :class:`ASEOracle`).

    Returns, in input order, labelled copies or :class:`Failure` records (named by ``atoms.info['id']``, else
    ``info['name']``). ``progress(n)`` is called with the number of structures newly done (the calls add up to
    ``len(structures)``). Never raises for a bad structure; raises :class:`MtpjaxError` only for a bad oracle.
    JAX oracles are evaluated in packed batches of up to ``batch_atoms`` atoms, padded to powers of two (see the
    module docstring): the labels of a structure do not depend on the other structures of the call. Implausible
    labels (:func:`implausibility`; the energy rule only with ``reference_energy``, eV/atom, in the oracle's own scale
    with ``energy_scale`` = B0·Ω0, eV/atom) become failures with reason ``implausible``.
    """
    return Labeller(oracle, batch_atoms, reference_energy, energy_scale)(structures, progress)


def _label_ase(oracle, structures, todo, out, progress):
    done = [0]

    def cb(n_done, _n_total):
        if progress is not None and n_done > done[0]:
            progress(n_done - done[0])
            done[0] = n_done

    for k, res in zip(todo, oracle.compute([structures[k] for k in todo], progress=cb)):
        a = structures[k]
        if res[0] == "error":
            out[k] = Failure(k, _name(a, k), "oracle_error", res[1])
        elif not _finite(*res):
            out[k] = Failure(k, _name(a, k), "non_finite", f"{oracle.name} gave a non-finite energy, force or stress")
        else:
            out[k] = _labelled(a, *res)
    if progress is not None and done[0] < len(todo):
        progress(len(todo) - done[0])


def _label_jax(oracle, ev, structures, todo, out, progress, batch_atoms):
    species = getattr(oracle, "species", None)
    prepared = []
    for k in todo:
        a = structures[k]
        try:
            types = types_for_symbols(a.get_chemical_symbols(), species, oracle.n_species, _name(a, k))
            prepared.append((k, ev.prepare(a.positions, a.cell.array, a.pbc, types, _name(a, k))))
        except StructureError as e:
            out[k] = Failure(k, _name(a, k), "invalid_structure", str(e))
        except Exception as e:  # noqa: BLE001 (e.g. the neighbour list failed)
            out[k] = Failure(k, _name(a, k), "oracle_error", f"{type(e).__name__}: {e}")
    if progress is not None and len(prepared) < len(todo):
        progress(len(todo) - len(prepared))
    fn = program(potential=oracle)
    what = getattr(oracle, "name", "the oracle")

    def store(items, results):
        for (k, _), (energy, forces, virial) in zip(items, results):
            a = structures[k]
            stress = -stress_to_voigt(virial) / a.get_volume() if a.pbc.all() else None  # ASE: σ = -virial / V
            if not _finite(energy, forces, virial):
                out[k] = Failure(k, _name(a, k), "non_finite", f"{what} gave a non-finite energy, force or stress")
            else:
                out[k] = _labelled(a, energy, forces, stress)

    for batch in _batches(prepared, batch_atoms):
        try:
            store(batch, _evaluate(fn, oracle, [p for _, p in batch]))
        except Exception:  # noqa: BLE001 - redo one by one to isolate the structure at fault
            for k, p in batch:
                try:
                    store([(k, p)], _evaluate(fn, oracle, [p]))
                except Exception as e:  # noqa: BLE001
                    out[k] = Failure(k, p.name, "oracle_error", f"{type(e).__name__}: {e}")
        if progress is not None:
            progress(len(batch))


def _batches(prepared, batch_atoms: int):
    """Consecutive groups of (index, prepared structure) of at most ``batch_atoms`` atoms (or one structure)."""
    for group in consecutive_groups([len(p.positions) for _, p in prepared], batch_atoms):
        yield [prepared[k] for k in group]


def _evaluate(fn, potential, batch) -> list:
    """(energy eV, forces (n, 3) eV/Å, virial (3, 3) eV) of each prepared structure of ``batch``, evaluated as one
    packed batch by ``fn`` (:func:`mtpjax.evaluate.program`).

    Every padded size is a power of two (atoms >= 64, structures >= 16, neighbour slots >= 16): padding with zeros
    to a power-of-two width leaves XLA's pairwise sums bit for bit as they are, so a structure's labels do not
    depend on the batch it is labelled in (the generator's files are identical whatever its chunks and workers).
    """
    n_tot = sum(len(p.positions) for p in batch)
    n_nb = power_of_two(max(max_neighbours(p.pairs[0], len(p.positions)) for p in batch), 16)
    b = pack([(p.positions, p.cell, p.types, p.pairs) for p in batch], power_of_two(n_tot, 64), power_of_two(len(batch), 16), n_nb)
    e, f, v, _ = (np.asarray(x) for x in fn(potential, b.positions, b.cells, b.species, b.nbrs, structure=b.structure))
    out, o = [], 0
    for j, p in enumerate(batch):
        n = len(p.positions)
        out.append((e[j], f[o:o + n], v[j]))
        o += n
    return out
