"""``mtpjax generate --config FILE [--out DIR] [--resume]``: the training-set pipeline from a TOML recipe.

Wire into the main CLI with ``add_parser(subparsers)``; the parser's ``func`` is :func:`main`.
"""
from __future__ import annotations

import sys
from pathlib import Path

#: The one-line help of ``mtpjax generate`` (``mtpjax --help`` reads it from this source without importing the package).
HELP = "generate a training set (RANDSPG -> VOLMIN -> CELLMIN -> INTMIN -> TRIAX/SHEAR/RATTLE) labelled with an oracle"


def add_parser(subparsers):
    """Add the ``generate`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    g = subparsers.add_parser("generate", help=HELP)
    g.add_argument("--config", required=True, help="TOML recipe (see configs/generate_mg.toml; alloys: elements = [...], "
                                                    "docs/generate.md), or an mtpjax run config (its [generate] table)")
    g.add_argument("--out", default=None, help="output folder (default: ./NAME for a config NAME.toml)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (reuses its checkpoints)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    g.set_defaults(func=main)
    return g


def main(args) -> int:
    """Run the pipeline; prints the summary table. Returns 0 (errors propagate as MtpjaxError, exit 2 in the CLI)."""
    from .config import load_config
    from .pipeline import run

    cfg = load_config(args.config)
    out = Path(args.out) if args.out else Path(Path(args.config).stem)
    manifest = run(cfg, out, resume=args.resume, progress=None if not args.quiet else False)
    from .plots import plot_dataset

    figures = plot_dataset(out)  # the paper's Figs 1 and 3
    if not args.quiet:
        print((out / "summary.md").read_text(), file=sys.stderr)
        print(f"mtpjax generate: {manifest['subsets']['EVERYTHING']['structures']} structures in "
              f"{manifest['timings']['total']:.1f} s -> {out} (figures: {', '.join(f.name for f in figures)})", file=sys.stderr)
    return 0


if __name__ == "__main__":  # standalone use: python -m mtpjax.generate.cli --config ...
    import argparse

    from ..errors import MtpjaxError

    parser = argparse.ArgumentParser(prog="mtpjax")
    add_parser(parser.add_subparsers(dest="command", required=True))
    a = parser.parse_args()
    try:
        sys.exit(a.func(a))
    except MtpjaxError as err:
        print(f"mtpjax generate: error: {err}", file=sys.stderr)
        sys.exit(2)
