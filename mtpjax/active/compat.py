"""Whether an active set belongs to a potential: the parameter count and a fingerprint of the parameters."""
from __future__ import annotations

import numpy as np

from ..errors import MtpjaxError
from .maxvol import ActiveSet, parameter_fingerprint
from .rows import n_parameters, parameter_vector


def fingerprint(mtp) -> str:
    """The fingerprint of an MTP's parameters (:func:`mtpjax.active.maxvol.parameter_fingerprint`)."""
    return parameter_fingerprint(np.asarray(parameter_vector(mtp)))


def check_active_set(mtp, active: ActiveSet, what: str = "the active set") -> None:
    """Raise MtpjaxError when ``active`` does not belong to ``mtp`` (another parameter count or other parameters)."""
    n = n_parameters(mtp)
    if active.n != n:
        raise MtpjaxError(f"{what} has {active.n} rows, but the potential has {n} parameters: it was built for another potential")
    if active.fingerprint and active.fingerprint != fingerprint(mtp):
        raise MtpjaxError(f"{what} was built for other parameters of this potential (refitted since?); rebuild it "
                          f"from the training set")
