"""``mtpjax grade POT TRAIN IN OUT [--mode cfg|nbh]``: extrapolation grades, like MLIP-2's ``mlp calc-grade``
(:mod:`mtpjax.active.commands`). Wired into the main CLI with ``add_parser(subparsers)``."""
from __future__ import annotations

#: The one-line help of ``mtpjax grade`` (``mtpjax --help`` reads it from this source without importing the package).
HELP = "extrapolation grades (MaxVol, from a training set) of structures, like `mlp calc-grade`"


def add_parser(subparsers):
    """Add the ``grade`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    from .commands import add_grade_parser

    return add_grade_parser(subparsers, HELP)
