"""mtpjax: Moment Tensor Potentials as pure JAX functions.

float64 is switched on at import. Set ``MTPJAX_X64=0`` in the environment before importing
mtpjax to keep JAX's float32 default (faster on GPUs, not bit-compatible with MLIP).
"""
import os as _os

import jax as _jax

if _os.environ.get("MTPJAX_X64", "1") != "0":
    _jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
