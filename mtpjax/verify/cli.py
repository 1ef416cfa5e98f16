"""``mtpjax verify``: measure a fitted potential against its oracle and write a report directory.

    mtpjax verify --potential fit.almtp --oracle zhou:Mg [--species Mg] [--tests eos phonons] [-o OUT] [--quick]
                  [--ground-state fcc]
    mtpjax verify --compare OUT_A OUT_B ... [-o OUT]      (one column per potential)

Wire into the main CLI with ``add_parser(subparsers)``; the parser's ``func`` is :func:`main`. Exit status: 0 when every
test ran, 1 when a test failed or a test asked for by name is not available, 2 on bad input (MtpjaxError).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

#: The one-line help of ``mtpjax verify`` (``mtpjax --help`` reads it from this source without importing the package).
HELP = ("verify a potential against its oracle (EOS, strain, elastic, phonons, vacancy, planar faults): JSON metrics, "
        "PNG figures, a markdown summary")


def add_parser(subparsers):
    """Add the ``verify`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    from .suite import TESTS

    v = subparsers.add_parser("verify", help=HELP)
    v.add_argument("--potential", help="the potential to verify: .almtp/.mtp/.mtpjax, an EAM file, or an oracle spec")
    v.add_argument("--oracle", help="the reference: zhou:Mg, lj, eam:FILE, an EAM file, ase:module.Class, a JSON spec, "
                                    "or another potential file")
    v.add_argument("--species", nargs="+", default=None,
                   help="element of each MTP type, in type order (MLIP files name none; default: the oracle's)")
    v.add_argument("--element", default=None, help="the element to verify when the potentials describe several")
    v.add_argument("--tests", nargs="+", default=None, metavar="TEST",
                   help=f"tests to run (default: all available): {' '.join(TESTS)}")
    v.add_argument("--options", default=None,
                   help="per-test options as JSON (or a .json file): '{\"phonons\": {\"mesh\": [12, 12, 12]}}'")
    v.add_argument("--ground-state", default=None, choices=("hcp", "fcc", "bcc"),
                   help="the lattice whose elastic constants, phase energies and planar defects are verified "
                        "(default: the oracle's lowest of hcp, fcc, dhcp, bcc)")
    v.add_argument("--quick", action="store_true", help="smaller cells and fewer points: a fast smoke run")
    v.add_argument("--compare", nargs="+", default=None, metavar="REPORT",
                   help="instead of verifying: put several report directories side by side (one column per potential)")
    v.add_argument("--names", nargs="+", default=None, help="column names for --compare (default: the potentials' labels)")
    v.add_argument("-o", "--output", default=None,
                   help="report directory (default: verify-<potential name>, or verify-comparison)")
    v.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    v.set_defaults(func=main)
    return v


def _options(text):
    from ..errors import MtpjaxError

    if not text:
        return {}
    src = text
    if not text.lstrip().startswith("{"):
        p = Path(text)
        if not p.exists():
            raise MtpjaxError(f"--options {text!r}: neither a JSON object nor an existing file")
        src = p.read_text()
    try:
        out = json.loads(src)
    except json.JSONDecodeError as err:
        raise MtpjaxError(f"--options: not valid JSON ({err})") from None
    if not isinstance(out, dict):
        raise MtpjaxError("--options must be a JSON object {test: {option: value}}")
    return out


def _default_output(spec) -> Path:
    stem = Path(str(spec)).name if spec else "potential"
    for suf in (".almtp", ".mtpjax", ".mtp", ".eam.alloy", ".eam.fs", ".eam"):
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
            break
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60] or "potential"
    return Path(f"verify-{safe}")


def main(args) -> int:
    """Run ``mtpjax verify``; prints the summary. Returns the exit status (2 with a message on MtpjaxError)."""
    from ..errors import MtpjaxError

    try:
        return _main(args)
    except MtpjaxError as err:
        print(f"mtpjax verify: error: {err}", file=sys.stderr)
        return 2


def _main(args) -> int:
    from ..errors import MtpjaxError
    from . import report

    if args.compare:
        out = Path(args.output) if args.output else Path("verify-comparison")
        paths = report.write_comparison(args.compare, out, args.names)
        if not args.quiet:
            print(paths["markdown"].read_text())
            print(f"mtpjax verify: comparison -> {out}", file=sys.stderr)
        return 0
    missing = [f"--{k}" for k in ("potential", "oracle") if not getattr(args, k)]
    if missing:
        raise MtpjaxError(f"give {' and '.join(missing)} (or --compare REPORT ...)")
    from ..oracles import load_pair
    from .suite import run_suite

    options = _options(args.options)
    potential, oracle, elements = load_pair(args.potential, args.oracle, args.species, args.element)
    out = Path(args.output) if args.output else _default_output(args.potential)
    result = run_suite(potential, oracle, out, tests=args.tests, element=args.element, options=options,
                       progress=not args.quiet and sys.stderr.isatty(), quick=args.quick,
                       potential_spec=args.potential, oracle_spec=args.oracle,
                       ground_state=getattr(args, "ground_state", None))
    if not args.quiet:
        print((out / "summary.md").read_text())
        n_ok = sum(t["status"] == "ok" for t in result["tests"].values())
        print(f"mtpjax verify: {n_ok}/{len(result['tests'])} tests ran in {result['total_seconds']:.1f} s -> {out}",
              file=sys.stderr)
    failed = [n for n, t in result["tests"].items() if t["status"] == "failed"]
    unavailable = [n for n, t in result["tests"].items() if t["status"] == "not available"]
    if failed or (args.tests and unavailable):
        if not args.quiet:
            print(f"mtpjax verify: failed: {failed or '-'}; not available: {unavailable or '-'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # standalone use: python -m mtpjax.verify.cli verify --potential ... --oracle ...
    import argparse

    parser = argparse.ArgumentParser(prog="mtpjax")
    add_parser(parser.add_subparsers(dest="command", required=True))
    a = parser.parse_args()
    sys.exit(a.func(a))
