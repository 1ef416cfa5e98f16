"""The generation recipe as a TOML file, validated into dataclasses (by :mod:`mtpjax.config`: strict types, unknown
keys listed, then :func:`validate`'s per-field checks).

Every error names the config field at fault (``randspg.volume_range: ...``) and, read from a file, the file. Units: Å,
eV, eV/Å, GPa; volumes are fractions of the oracle's own hcp equilibrium volume Ω0 (Å³/atom).
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


@dataclass(frozen=True)
class RandspgConfig:
    """Random space-group structures (pyxtal) of one element."""

    space_groups: tuple[int, int] = (1, 230)  # inclusive range of space-group numbers
    n_atoms: tuple[int, int] = (1, 10)  # inclusive range of atoms per (conventional) cell
    copies: int = 1  # structures per compatible (space group, atoms) pair
    volume_range: tuple[float, float] = (0.9, 1.1)  # volume per atom, uniform in [lo, hi] × Ω0
    min_distance: float = 0.6  # minimum interatomic distance, × the oracle's hcp nearest-neighbour distance
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
    descriptor_cutoff: float = 1.7  # its cutoff, × the oracle's hcp nearest-neighbour distance
    repulsion: float = 30.0  # weight of the (1 - r/(1.1 d_min))² penalty, d_min = randspg.min_distance × d_nn
    energy_weight: float = 0.0  # 1/eV: adds w × (energy per atom) (E - kS with k = 1/w eV); needs a JAX oracle
    temperature: float = 0.0  # soft-min of the log nearest-neighbour distances (0: the exact min)


@dataclass(frozen=True)
class HessianConfig:
    """HESSIAN (:mod:`mtpjax.generate.hessian`, off unless ``subsets`` names it): rattled bulk supercells labelled
    with the oracle's force constants (3N x 3N, eV/Å²) as ``arrays["hessian"]``."""

    lattice: str = "hcp"  # hcp (the oracle's relaxed a, c/a), fcc or bcc (at the oracle's hcp Ω0)
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
    address: str = ""  # Dask scheduler address ("" = start a LocalCluster)
    processes: bool = True  # LocalCluster: worker processes (True) or threads (False)
    chunk_size: int = 256  # structures per task and per checkpoint


@dataclass(frozen=True)
class GenerateConfig:
    """The whole recipe (see configs/generate_mg.toml)."""

    element: str = "Mg"
    seed: int = 0
    oracle: dict = field(default_factory=lambda: {"type": "zhou"})
    subsets: tuple[str, ...] = SUBSETS
    randspg: RandspgConfig = RandspgConfig()
    relax: RelaxConfig = RelaxConfig()
    deform: DeformConfig = DeformConfig()
    executor: ExecutorConfig = ExecutorConfig()
    entropy: EntropyConfig = EntropyConfig()
    hessian: HessianConfig = HessianConfig()

    def oracle_spec(self) -> dict:
        """The [oracle] table as a :func:`mtpjax.oracles.make_oracle` spec; a Zhou EAM without ``element(s)``
        gets the top-level element."""
        spec = dict(self.oracle)
        if spec.get("type") == "zhou" and "element" not in spec and "elements" not in spec:
            spec["element"] = self.element
        return spec

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check_config(self) -> None:
        """The per-field checks of :func:`validate` (called by :func:`mtpjax.config.from_dict`)."""
        validate(self)


def config_from_dict(data: dict) -> GenerateConfig:
    """Validated config from a (TOML-like) dict; missing fields take their defaults. Raises ConfigError naming the
    field."""
    from .. import config

    return config.from_dict(GenerateConfig, data)


def load_config(path) -> GenerateConfig:
    """Read and validate a TOML config. Raises ConfigError / MtpjaxError naming the file and field."""
    from .. import config

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
