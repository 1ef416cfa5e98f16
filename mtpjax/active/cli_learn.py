"""``mtpjax learn CONFIG [options]``: the active-learning loop (:mod:`mtpjax.active.learn`, ``docs/learn.md``).

The file's ``[learn]`` table (or its top level) holds the keys of :class:`mtpjax.active.learn.LearnCommand`, its
``[[learn.simulation]]`` tables the simulations, ``[learn.fit]`` the refits' settings and ``[learn.executor]`` where
the oracle labels. Every top-level key is also a command-line option, which overrides the file (:mod:`mtpjax.config`).
Run again on the same output folder, it resumes after the last step recorded in its ``state.json``.

Wire into the main CLI with ``add_parser(subparsers)``; the parser's ``func`` is :func:`main`.
"""
from __future__ import annotations

import sys

#: The one-line help of ``mtpjax learn`` (``mtpjax --help`` reads it from this source without importing the package).
HELP = "active learning: MD graded by MaxVol, selection, oracle labels and warm-started refits until no run extrapolates"


def add_parser(subparsers):
    """Add the ``learn`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    from .. import config
    from .learn import LearnCommand

    p = subparsers.add_parser("learn", help=HELP, description=(
        "Active learning from a TOML file: rounds of MD (graded against the active set), MaxVol selection of the "
        "extrapolative frames, labels from the oracle and a warm-started refit, until every simulation completes "
        "without passing gamma_break. Checkpoints after every step and resumes (docs/learn.md)."))
    p.add_argument("config", metavar="CONFIG", help="TOML file with a [learn] table (or the keys at its top level)")
    keys = config.add_options(p, LearnCommand, exclude=("simulation",), names={"output": ["-o"]})
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=main, option_keys=keys)
    return p


def main(args) -> int:
    """Run ``mtpjax learn``. Errors (MtpjaxError) propagate to the main CLI (exit 2)."""
    from .. import config
    from .learn import load_command, run_learn

    cmd = load_command(args.config, config.given(args, args.option_keys))
    quiet = getattr(args, "quiet", False)
    echo = None if quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    state = run_learn(cmd, echo=echo, progress=not quiet and sys.stderr.isatty())
    if echo:
        last = state["rounds"][-1] if state["rounds"] else {}
        echo(f"mtpjax learn: {state['status']} after {len(state['rounds'])} rounds "
             f"({sum(r.get('labelled', 0) for r in state['rounds'])} structures labelled); max γ of the last round "
             f"{last.get('max_gamma')}; potential {cmd.output}/{state['potential']}")
    return 0
