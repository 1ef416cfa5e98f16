"""``mtpjax run CONFIG [--out DIR] [--force STAGE]``: generate → fit → verify → report from one TOML config.

Wire into the main CLI with ``add_parser(subparsers)``; the parser's ``func`` is :func:`main`.
"""
from __future__ import annotations

import sys

#: The one-line help of ``mtpjax run`` (also shown by ``mtpjax --help`` without importing this command's code).
HELP = "generate a data set, fit an MTP, verify it and write a report, from one TOML config (finished stages are cached)"


def add_parser(subparsers):
    """Add the ``run`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    from .pipeline import STAGES

    r = subparsers.add_parser("run", help=HELP)
    r.add_argument("config", metavar="CONFIG", help="TOML config with [generate], [fit], [verify], [report] (docs/run.md)")
    r.add_argument("--out", default=None, help="output folder (default: the config's `out`, else runs/NAME)")
    r.add_argument("--force", action="append", choices=STAGES, default=None, metavar="STAGE",
                   help=f"rerun STAGE (and everything after it) even if finished; one of {', '.join(STAGES)}; repeatable")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars or stage lines")
    r.set_defaults(func=main)
    return r


def main(args) -> int:
    """Run the pipeline; prints one line per stage and the report's path. Errors propagate as MtpjaxError."""
    from .pipeline import load_config, run

    cfg = load_config(args.config)
    quiet = getattr(args, "quiet", False)
    echo = None if quiet else (lambda m: print(m, file=sys.stderr))
    summary = run(cfg, out=args.out, force=args.force, progress=None if not quiet else False, echo=echo)
    if not quiet:
        times = ", ".join(f"{s} {v['action']} {v['seconds']:.1f} s" for s, v in summary["stages"].items())
        print(f"mtpjax run: {times} -> {summary['report']}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # python -m mtpjax.run_cli CONFIG ...
    import argparse

    from .errors import MtpjaxError

    p = argparse.ArgumentParser(prog="mtpjax")
    sub = p.add_subparsers(dest="command", required=True)
    add_parser(sub)
    a = p.parse_args(["run", *sys.argv[1:]])
    try:
        sys.exit(a.func(a))
    except MtpjaxError as err:
        print(f"mtpjax run: error: {err}", file=sys.stderr)
        sys.exit(2)
