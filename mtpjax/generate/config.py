"""The generation recipe as a TOML file, validated into dataclasses (by :mod:`mtpjax.config`: strict types, unknown
keys listed, then :func:`validate`'s per-field checks).

Every error names the config field at fault (``randspg.volume_range: ...``) and, read from a file, the file. Units: Å,
eV, eV/Å, GPa; volumes are fractions of the oracle's own hcp equilibrium volume Ω0 (Å³/atom).

Alloys: ``elements = ["Al", "Mg"]`` (two or more) makes RANDSPG draw every composition of the grid
(:func:`compositions_of`: by default every split of each atom count over the elements, pure elements included;
``composition_step`` or explicit ``compositions`` narrow it) at the Vegard volume Σ x_i Ω0_i of the elements' own
hcp references; the chain after RANDSPG is unchanged. The species order is the order of ``elements`` (the MLIP types
0, 1, ... written as ``mlip_type`` in the output files); ``element`` is then the first of them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

#: Subsets in pipeline order; EVERYTHING is the union of the selected ones.
SUBSETS = ("RANDSPG", "VOLMIN", "CELLMIN", "INTMIN", "TRIAX", "SHEAR", "RATTLE")
#: Subsets made only when selected (not in the default ``subsets``): ENTROPY (:mod:`.entropy`), HESSIAN
#: (:mod:`.hessian`: bulk cells labelled with their force constants).
OPTIONAL_SUBSETS = ("ENTROPY", "HESSIAN")
#: Every subset a config may select, in pipeline order.
ALL_SUBSETS = SUBSETS + OPTIONAL_SUBSETS
#: The top-level element when none is given.
DEFAULT_ELEMENT = "Mg"
#: The keys of an alloy recipe (absent from a one-element recipe's :meth:`GenerateConfig.to_dict`).
ALLOY_KEYS = ("elements", "composition_step", "compositions")
#: Largest atom count per cell of an alloy recipe (composition codes are base-1000 numbers, :func:`composition_code`).
MAX_ALLOY_ATOMS = 999


@dataclass(frozen=True)
class RandspgConfig:
    """Random space-group structures (pyxtal) of one element."""

    space_groups: tuple[int, int] = (1, 230)  # inclusive range of space-group numbers
    n_atoms: tuple[int, int] = (1, 10)  # inclusive range of atoms per (conventional) cell
    copies: int = 1  # structures per compatible (space group, atoms) pair
    volume_range: tuple[float, float] = (0.9, 1.1)  # volume per atom, uniform in [lo, hi] × Ω0
    min_distance: float = 0.6  # minimum interatomic distance, × the nearest-neighbour distance of the oracle's ground state
    symprec: float = 1e-3  # Å, spglib tolerance of the detected space group
    max_attempts: int = 3  # pyxtal calls per structure before giving up
    time_limit: float = 20.0  # s per structure (all attempts), 0 = none
    workers: int = 2  # processes for pyxtal (1 = in-process)


@dataclass(frozen=True)
class RelaxConfig:
    """Low-precision FIRE relaxations (VOLMIN, CELLMIN, INTMIN)."""

    fmax: float = 0.05  # eV/Å, INTMIN convergence (largest atomic force)
    smax: float = 0.2  # GPa, VOLMIN (|pressure|) and CELLMIN (largest stress component) convergence
    max_steps: int = 500  # FIRE steps before a structure counts as not converged
    maxstep: float = 0.2  # Å, largest FIRE move per step (norm over a structure's degrees of freedom)
    skin: float = 1.0  # Å, neighbour-list skin (lists are rebuilt before they can go stale)
    steps_per_round: int = 25  # jitted FIRE steps between host checks
    max_volume_factor: float = 4.0  # fail when V/V_start leaves [1/f, f] (random cells often double their volume)
    batch_atoms: int = 4096  # atoms per packed batch (JAX oracles)


@dataclass(frozen=True)
class DeformConfig:
    """TRIAX, SHEAR and RATTLE copies of every INTMIN structure."""

    copies: int = 5
    triax: float = 0.8  # TRIAX: diagonal strain entries uniform in ±triax
    shear: float = 0.8  # SHEAR: symmetric off-diagonal strain entries uniform in ±shear (diagonal 0)
    rattle_mean: float = 0.5  # Å, RATTLE: mean displacement norm (isotropic Gaussian)
    rattle_strain: float = 0.05  # RATTLE: symmetric strain entries uniform in ±rattle_strain
    min_volume_ratio: float = 0.1  # discard a deformed cell with V/V_parent below this


@dataclass(frozen=True)
class EntropyConfig:
    """ENTROPY (:mod:`mtpjax.generate.entropy`, off unless ``subsets`` names it): structures that maximise the
    nearest-neighbour entropy of per-atom MTP descriptors (Subramanyam & Perez 2025), optimised jointly per batch."""

    n_atoms: tuple[int, int] = (1, 10)  # inclusive range of atoms per cell
    copies: int = 2  # structures per atom count
    volume_range: tuple[float, float] = (0.8, 1.5)  # volume per atom kept within [lo, hi] × Ω0 (by construction)
    shape_strain: float = 0.3  # largest |traceless log-strain component| of the cell shape
    steps: int = 200  # Adam steps per batch
    learning_rate: float = 0.05  # Adam's step (Å for positions)
    batch_structures: int = 32  # structures optimised jointly (one checkpoint each; earlier batches enter S fixed)
    descriptor_level: int = 10  # level of the (untrained) descriptor MTP
    descriptor_cutoff: float = 1.7  # its cutoff, × the nearest-neighbour distance of the oracle's ground state
    repulsion: float = 30.0  # weight of the (1 - r/(1.1 d_min))² penalty, d_min = randspg.min_distance × d_nn
    energy_weight: float = 0.0  # 1/eV: adds w × (energy per atom) (E - kS with k = 1/w eV); needs a JAX oracle
    temperature: float = 0.0  # soft-min of the log nearest-neighbour distances (0: the exact min)


@dataclass(frozen=True)
class HessianConfig:
    """HESSIAN (:mod:`mtpjax.generate.hessian`, off unless ``subsets`` names it): rattled bulk supercells labelled
    with the oracle's force constants (3N x 3N, eV/Å²) as ``arrays["hessian"]``."""

    lattice: str = "hcp"  # hcp (the oracle's relaxed a, c/a), fcc or bcc (at the reference Ω0, the oracle's ground state's)
    sizes: tuple[int, ...] = (1, 2)  # n x n x n primitive cells
    copies: int = 2  # rattled copies per size
    rattle: float = 0.03  # Å, Gaussian displacement per component
    delta: float = 1e-3  # Å, central-difference step (ASE oracles only; JAX oracles are exact)


@dataclass(frozen=True)
class ExecutorConfig:
    """Where the work runs. kind: auto (JAX oracle: in-process batched; ASE oracle: process pool), jax,
    process or dask."""

    kind: str = "auto"
    workers: int = 2  # processes (process pool) or Dask workers of a LocalCluster
    address: str = ""  # Dask scheduler: its address (tcp://host:port) or scheduler file (*.json); "" = a LocalCluster
    processes: bool = True  # LocalCluster: worker processes (True) or threads (False)
    chunk_size: int = 256  # structures per task and per checkpoint


@dataclass(frozen=True)
class GenerateConfig:
    """The whole recipe (see configs/generate_mg.toml)."""

    element: str = DEFAULT_ELEMENT
    seed: int = 0
    oracle: dict = field(default_factory=lambda: {"type": "zhou"})
    subsets: tuple[str, ...] = SUBSETS
    randspg: RandspgConfig = RandspgConfig()
    relax: RelaxConfig = RelaxConfig()
    deform: DeformConfig = DeformConfig()
    executor: ExecutorConfig = ExecutorConfig()
    entropy: EntropyConfig = EntropyConfig()
    hessian: HessianConfig = HessianConfig()

    # alloys (left out: one element, as before; see the module docstring)
    elements: tuple[str, ...] = ()  # two or more elements, in MLIP type order; element becomes the first
    composition_step: float = 0.0  # alloys: keep compositions whose atomic fractions are multiples of this (0: all)
    compositions: tuple[tuple[int, ...], ...] = ()  # alloys: explicit ratios, one count per element ([[3, 1], [1, 1]])

    def __post_init__(self):
        if self.elements and isinstance(self.elements, (list, tuple)) and self.element == DEFAULT_ELEMENT \
                and isinstance(self.elements[0], str):
            object.__setattr__(self, "element", self.elements[0])  # ``element`` left out: the first of ``elements``

    @property
    def is_alloy(self) -> bool:
        """Whether the recipe has several elements (``elements`` given)."""
        return bool(self.elements)

    @property
    def species(self) -> tuple[str, ...]:
        """The elements in MLIP type order: ``elements``, or ``(element,)``."""
        return tuple(self.elements) if self.elements else (self.element,)

    def oracle_spec(self) -> dict:
        """The [oracle] table as a :func:`mtpjax.oracles.make_oracle` spec; a Zhou EAM without ``element(s)``
        gets the top-level element (an alloy: ``elements``)."""
        spec = dict(self.oracle)
        if spec.get("type") == "zhou" and "element" not in spec and "elements" not in spec:
            if self.elements:
                spec["elements"] = list(self.elements)
            else:
                spec["element"] = self.element
        return spec

    def to_dict(self) -> dict:
        """The recipe as a dict; a one-element recipe leaves out the alloy keys, so that its hashes (generation
        checkpoints, ``mtpjax run`` stage hashes) are those of the recipe before alloys existed."""
        d = dataclasses.asdict(self)
        if not self.elements:
            for k in ALLOY_KEYS:
                d.pop(k, None)
        return d

    def check_config(self) -> None:
        """The per-field checks of :func:`validate` (called by :func:`mtpjax.config.from_dict`)."""
        validate(self)


def config_from_dict(data: dict) -> GenerateConfig:
    """Validated config from a (TOML-like) dict; missing fields take their defaults. Raises ConfigError naming the
    field."""
    from .. import config

    return config.from_dict(GenerateConfig, data)


def load_config(path) -> GenerateConfig:
    """Read and validate a TOML config: a generation recipe, or an ``mtpjax run`` config (its ``[generate]`` table,
    recognised by that table and a top-level ``name``/``out`` or ``[fit]``). Raises ConfigError / MtpjaxError naming
    the file and field."""
    from .. import config
    from ..io.tomlfile import read_toml

    data = read_toml(Path(path))
    if isinstance(data.get("generate"), dict) and any(k in data for k in ("name", "out", "fit", "verify", "report")):
        return config.load(GenerateConfig, path, table="generate")
    return config.load(GenerateConfig, path)


def _range(name, r, lo, hi, kind=float):
    if len(r) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in r):
        raise ConfigError(name, f"expected [lower, upper], got {list(r)!r}")
    if kind is int and not all(float(x).is_integer() for x in r):
        raise ConfigError(name, f"expected integers, got {list(r)!r}")
    if not (lo <= r[0] <= r[1] <= hi):
        raise ConfigError(name, f"need {lo} <= lower <= upper <= {hi}, got {list(r)!r}")


def _positive(name, x, allow_zero=False):
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not (x >= 0 if allow_zero else x > 0):
        raise ConfigError(name, f"must be a {'non-negative' if allow_zero else 'positive'} number, got {x!r}")


def validate(cfg: GenerateConfig) -> None:
    """Field-by-field checks that need no oracle (see :func:`check_volume_range` for the one that does)."""
    from ase.data import atomic_numbers

    if not isinstance(cfg.element, str) or cfg.element not in atomic_numbers:
        raise ConfigError("element", f"{cfg.element!r} is not a chemical element")
    validate_alloy(cfg)
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError("seed", f"must be a non-negative integer, got {cfg.seed!r}")
    if not isinstance(cfg.oracle, dict) or "type" not in cfg.oracle:
        raise ConfigError("oracle.type", "the [oracle] table needs a type (e.g. zhou, eam, lj, ase)")
    bad = [s for s in cfg.subsets if s not in ALL_SUBSETS]
    if bad or not cfg.subsets:
        raise ConfigError("subsets", f"unknown subset {bad[0]!r}; choose from {', '.join(ALL_SUBSETS)}" if bad else "is empty")
    r = cfg.randspg
    _range("randspg.space_groups", r.space_groups, 1, 230, int)
    _range("randspg.n_atoms", r.n_atoms, 1, 10_000, int)
    if not (len(r.volume_range) == 2 and all(isinstance(x, (int, float)) for x in r.volume_range)):
        raise ConfigError("randspg.volume_range", f"expected [lower, upper] (fractions of Ω0), got {list(r.volume_range)!r}")
    lo, hi = r.volume_range
    if not (lo > 0 and hi > 0):
        raise ConfigError("randspg.volume_range", f"volumes must be positive fractions of Ω0, got {[lo, hi]}")
    if lo > hi:
        raise ConfigError("randspg.volume_range", f"lower {lo} > upper {hi}")
    for name, x in [("randspg.copies", r.copies), ("randspg.max_attempts", r.max_attempts), ("randspg.workers", r.workers),
                    ("relax.max_steps", cfg.relax.max_steps), ("relax.steps_per_round", cfg.relax.steps_per_round),
                    ("relax.batch_atoms", cfg.relax.batch_atoms), ("executor.workers", cfg.executor.workers),
                    ("executor.chunk_size", cfg.executor.chunk_size)]:
        if not isinstance(x, int) or x < 1:
            raise ConfigError(name, f"must be a positive integer, got {x!r}")
    if not isinstance(cfg.deform.copies, int) or cfg.deform.copies < 0:
        raise ConfigError("deform.copies", f"must be a non-negative integer, got {cfg.deform.copies!r}")
    _positive("randspg.min_distance", r.min_distance, allow_zero=True)
    _positive("randspg.symprec", r.symprec)
    _positive("randspg.time_limit", r.time_limit, allow_zero=True)
    for k in ("fmax", "smax", "maxstep", "skin"):
        _positive(f"relax.{k}", getattr(cfg.relax, k))
    if not cfg.relax.max_volume_factor > 1:
        raise ConfigError("relax.max_volume_factor", f"must be > 1, got {cfg.relax.max_volume_factor!r}")
    for k in ("triax", "shear", "rattle_mean", "rattle_strain", "min_volume_ratio"):
        _positive(f"deform.{k}", getattr(cfg.deform, k), allow_zero=True)
    validate_entropy(cfg.entropy)
    validate_hessian(cfg.hessian)
    if cfg.executor.kind not in ("auto", "jax", "process", "dask"):
        raise ConfigError("executor.kind", f"choose auto, jax, process or dask, not {cfg.executor.kind!r}")


def validate_alloy(cfg: GenerateConfig) -> None:
    """Checks of the alloy keys (``elements``, ``composition_step``, ``compositions``; ConfigError naming the key)."""
    from ase.data import atomic_numbers

    els = cfg.elements
    if not els:
        if cfg.composition_step or cfg.compositions:
            key = "composition_step" if cfg.composition_step else "compositions"
            raise ConfigError(key, "applies to alloys only: give elements = [\"A\", \"B\", ...] as well")
        return
    bad = [e for e in els if not isinstance(e, str) or e not in atomic_numbers]
    if bad:
        raise ConfigError("elements", f"{bad[0]!r} is not a chemical element (elements = {list(els)})")
    twice = sorted({e for e in els if els.count(e) > 1})
    if twice:
        raise ConfigError("elements", f"{', '.join(twice)} named more than once in {list(els)}")
    if len(els) < 2:
        raise ConfigError("elements", f"an alloy needs two or more elements, got {list(els)}; "
                                      f"for one element write element = {els[0]!r}")
    if cfg.element != els[0]:
        raise ConfigError("element", f"{cfg.element!r} conflicts with elements = {list(els)}: with elements, leave "
                                     "element out (it becomes the first of elements, the MLIP type 0)")
    bad_sub = [s for s in cfg.subsets if s in OPTIONAL_SUBSETS]
    if bad_sub:
        raise ConfigError("subsets", f"{bad_sub[0]} is not available for alloys yet (elements = {list(els)}); "
                                     f"choose from {', '.join(SUBSETS)}")
    if cfg.randspg.n_atoms[1] > MAX_ALLOY_ATOMS:
        raise ConfigError("randspg.n_atoms", f"alloys take at most {MAX_ALLOY_ATOMS} atoms per cell, got {list(cfg.randspg.n_atoms)}")
    step = cfg.composition_step
    if not isinstance(step, (int, float)) or isinstance(step, bool) or not 0 <= step <= 1:
        raise ConfigError("composition_step", f"must be in [0, 1] (0: every composition), got {step!r}")
    if step > 0 and abs(1 / step - round(1 / step)) > 1e-9:
        raise ConfigError("composition_step", f"1/step must be an integer (0.5, 0.25, 0.2, ...), got {step!r}")
    if step > 0 and cfg.compositions:
        raise ConfigError("compositions", "give either compositions or composition_step, not both")
    for k, c in enumerate(cfg.compositions):
        if len(c) != len(els) or any(not isinstance(x, int) or isinstance(x, bool) or x < 0 for x in c) or not sum(c):
            raise ConfigError("compositions", f"entry {k + 1} {list(c)}: expected {len(els)} non-negative integers "
                                              f"(one per element of {list(els)}), not all zero")
    if not compositions_of(cfg):
        raise ConfigError("compositions", f"no composition of {list(els)} fits randspg.n_atoms = "
                                          f"{list(cfg.randspg.n_atoms)}" + (f" with composition_step {step}" if step else ""))


def compositions_of(cfg: GenerateConfig) -> list[tuple[int, ...]]:
    """The atom counts per cell (one per element of ``cfg.elements``) that RANDSPG draws, sorted by total then
    counts descending (pure first element first): every count vector whose total n lies in ``randspg.n_atoms``, kept
    when ``compositions`` is empty and ``composition_step`` is 0; with ``composition_step`` s those whose fractions
    c_i/n are all multiples of s; with ``compositions`` (ratios) the multiples of a listed ratio. [] for one element."""
    import itertools
    from math import gcd

    els = cfg.elements
    if not els:
        return []
    lo, hi = cfg.randspg.n_atoms
    step = float(cfg.composition_step or 0.0)

    def reduced(c):
        g = 0
        for x in c:
            g = gcd(g, int(x))
        return tuple(int(x) // g for x in c) if g else tuple(c)

    ratios = {reduced(c) for c in cfg.compositions}
    out = []
    for n in range(int(lo), int(hi) + 1):
        for head in itertools.product(range(n + 1), repeat=len(els) - 1):
            if sum(head) > n:
                continue
            c = (*head, n - sum(head))
            if ratios and reduced(c) not in ratios:
                continue
            if step > 0 and any(abs(x / n / step - round(x / n / step)) > 1e-9 for x in c):
                continue
            out.append(c)
    return sorted(out, key=lambda c: (sum(c), tuple(-x for x in c)))


def composition_code(counts) -> int:
    """One integer for a count vector (base 1000, first element lowest): the middle entry of a structure's key
    (space group, code, copy), which seeds the deformations of its descendants."""
    return int(sum(int(c) * 1000 ** i for i, c in enumerate(counts)))


def composition_label(elements, counts) -> str:
    """``Al3Mg1`` for counts (3, 1) of (Al, Mg): the elements with a non-zero count, in order, each with its count."""
    return "".join(f"{e}{int(c)}" for e, c in zip(elements, counts) if c)


def vegard_volume(omegas, counts) -> float:
    """Vegard's law: Σ x_i Ω0_i (Å³/atom) for elemental volumes ``omegas`` (Å³/atom) and atom ``counts``."""
    n = sum(counts)
    return float(sum(o * c for o, c in zip(omegas, counts)) / n)


def validate_entropy(e: EntropyConfig) -> None:
    """Checks of the [entropy] table (ConfigError naming ``entropy.<field>``)."""
    _range("entropy.n_atoms", e.n_atoms, 1, 10_000, int)
    _range("entropy.volume_range", e.volume_range, 1e-3, 1e3)
    for name in ("copies", "steps", "batch_structures", "descriptor_level"):
        x = getattr(e, name)
        if not isinstance(x, int) or isinstance(x, bool) or x < 1:
            raise ConfigError(f"entropy.{name}", f"must be a positive integer, got {x!r}")
    if not 2 <= e.descriptor_level <= 28:
        raise ConfigError("entropy.descriptor_level", f"an MTP level is 2..28, got {e.descriptor_level}")
    for name in ("shape_strain", "learning_rate", "descriptor_cutoff"):
        _positive(f"entropy.{name}", getattr(e, name))
    for name in ("repulsion", "energy_weight", "temperature"):
        _positive(f"entropy.{name}", getattr(e, name), allow_zero=True)


def validate_hessian(h: HessianConfig) -> None:
    """Checks of the [hessian] table (ConfigError naming ``hessian.<field>``)."""
    if h.lattice not in ("hcp", "fcc", "bcc"):
        raise ConfigError("hessian.lattice", f"choose hcp, fcc or bcc, not {h.lattice!r}")
    if not h.sizes or not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 10 for n in h.sizes):
        raise ConfigError("hessian.sizes", f"expected supercell sizes in 1..10, got {list(h.sizes)!r}")
    if not isinstance(h.copies, int) or isinstance(h.copies, bool) or h.copies < 1:
        raise ConfigError("hessian.copies", f"must be a positive integer, got {h.copies!r}")
    _positive("hessian.rattle", h.rattle, allow_zero=True)
    _positive("hessian.delta", h.delta)


def check_volume_range(cfg: GenerateConfig, omega0: float, nn_distance: float) -> None:
    """Atoms kept ``min_distance`` apart need at least the close-packed volume d³/√2 per atom: a volume range
    whose upper end is below that cannot produce a single structure."""
    d = cfg.randspg.min_distance * nn_distance
    need = d ** 3 / 2 ** 0.5
    hi = cfg.randspg.volume_range[1] * omega0
    if hi < need:
        raise ConfigError("randspg.volume_range",
                          f"the largest volume {hi:.3g} Å³/atom (upper {cfg.randspg.volume_range[1]} × Ω0 = {omega0:.3g} Å³) "
                          f"cannot hold atoms {d:.3g} Å apart (randspg.min_distance; close packing needs {need:.3g} Å³/atom)")
