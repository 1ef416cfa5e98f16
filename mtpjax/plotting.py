"""Figures without pyplot: built with the object-oriented :class:`matplotlib.figure.Figure`, so making and saving
them never switches the global backend (a notebook's inline plots keep working) and nothing needs closing."""
from __future__ import annotations


def subplots(*args, figsize=None, **kwargs):
    """``(fig, axes)`` like ``pyplot.subplots`` (same ``nrows``, ``ncols``, ``sharex``, ``squeeze``,
    ``gridspec_kw``, ... arguments), but on a standalone ``Figure`` that pyplot does not track."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)

