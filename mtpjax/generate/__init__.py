"""Training sets by the recipe of Poul, Huber, Bitzek & Neugebauer (2023): random space-group crystals
(RANDSPG), successive low-precision relaxations (VOLMIN, CELLMIN, INTMIN), strained and rattled copies (TRIAX,
SHEAR, RATTLE), labelled with an oracle, and, when selected, ENTROPY (structures maximising the entropy of per-atom
descriptors, Subramanyam & Perez 2025; ``docs/experiments/entropy.md``). See ``docs/generate.md``.

    from mtpjax.generate import load_config, run
    manifest = run(load_config("configs/generate_mg.toml"), "data/mg")

Modules: config, reference, randspg, deform, entropy, checkpoint, executors, manifest, pipeline, cli (relaxations by
:mod:`mtpjax.relax`, labels by :func:`mtpjax.oracles.label`).
"""
from .config import SUBSETS, ConfigError, GenerateConfig, config_from_dict, load_config
from .pipeline import run
from .reference import hcp_reference
from .structures import Failure

__all__ = ["SUBSETS", "ConfigError", "Failure", "GenerateConfig", "config_from_dict", "hcp_reference", "load_config", "run"]
