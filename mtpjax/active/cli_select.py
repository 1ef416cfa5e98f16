"""``mtpjax select POT TRAIN CANDIDATES OUT [--threshold 1.1]``: active selection, like MLIP-2's ``mlp select-add``
(:mod:`mtpjax.active.commands`). Wired into the main CLI with ``add_parser(subparsers)``."""
from __future__ import annotations

#: The one-line help of ``mtpjax select`` (``mtpjax --help`` reads it from this source without importing the package).
HELP = "candidates to add to a training set (MaxVol active selection), like `mlp select-add`"


def add_parser(subparsers):
    """Add the ``select`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    from .commands import add_select_parser

    return add_select_parser(subparsers, HELP)
