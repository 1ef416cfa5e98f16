"""The verification suite: run the physics tests of a potential against its oracle, time each, keep going when
one fails, and write the report (``metrics.json``, ``rows.csv``, ``summary.md``; figures in one folder per test).

Each test is a module ``mtpjax.verify.<name>`` with ``run(potential, oracle, outdir, **options) -> dict`` returning
``{"metrics": {...}, "figures": [paths], "rows": [{"test", "quantity", "unit", "mtp", "oracle", "error"}],
"failures": [{"structure", "reason"}]}``. A module that is missing (or fails to import) is reported as
"not available"; a test that raises is recorded as "failed" with its message and the rest go on.
"""
from __future__ import annotations

import datetime
import importlib
import json
import inspect
import time
import traceback
import warnings
from pathlib import Path

from ..errors import MtpjaxError
from ..io.files import atomic_write, versions
from . import report

#: The tests in their default order (modules of mtpjax.verify).
TESTS = ("eos", "strain", "elastic", "phonons", "vacancy", "planar")
#: Tests outside the default set: ``alloy`` (formation and solution energies, :mod:`mtpjax.verify.alloy`) joins
#: the plan by itself when the potential and the oracle share two or more elements.
OPTIONAL_TESTS = ("alloy",)
#: Options every test may take (passed only to tests whose run() accepts them).
COMMON_OPTIONS = ("quick", "element", "progress", "ground_state")


def load_test(name: str):
    """``run`` of ``mtpjax.verify.<name>``, or a string saying why it is not available."""
    if not name.isidentifier():
        return f"{name!r} is not a test name"
    try:
        mod = importlib.import_module(f"{__package__}.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"{__package__}.{name}":
            return "not available (module not written yet)"
        return f"not available (import failed: {err})"
    except Exception as err:  # noqa: BLE001 (a broken module must not stop the suite)
        return f"not available (import failed: {type(err).__name__}: {err})"
    fn = getattr(mod, "run", None)
    if not callable(fn):
        return f"not available ({mod.__name__} has no run())"
    return fn


def available_tests() -> dict:
    """{name: run function or the reason it is not available} for :data:`TESTS`."""
    return {name: load_test(name) for name in TESTS}


def _call(fn, potential, oracle, outdir, kwargs):
    """Call a test's run() with the keyword arguments it accepts: common options it does not take are dropped,
    test-specific ones are passed on (an unknown one makes the test fail with run()'s own TypeError)."""
    common = {k: kwargs.pop(k) for k in list(kwargs) if k in COMMON_OPTIONS}
    try:
        params = inspect.signature(fn).parameters
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        common = {k: v for k, v in common.items() if takes_all or k in params}
    except (TypeError, ValueError):
        pass
    return fn(potential, oracle, outdir, **common, **kwargs)


def _normalise(out, name: str, outdir: Path, root: Path) -> dict:
    """A test's returned dict checked and made uniform: figure paths relative to the report root, rows with their test."""
    if not isinstance(out, dict):
        raise MtpjaxError(f"test {name!r}: run() returned {type(out).__name__}, not a dict")
    unknown = sorted(set(out) - {"metrics", "figures", "rows", "failures"})
    figures = []
    for f in out.get("figures") or []:
        p = Path(f)
        p = p if p.is_absolute() else (Path.cwd() / p)
        try:
            figures.append(str(p.resolve().relative_to(root.resolve())))
        except ValueError:
            figures.append(str(p))
    rows = [{**r, "test": r.get("test") or name} for r in out.get("rows") or []]
    failures = [{**f, "test": name} if isinstance(f, dict) else {"test": name, "structure": None, "reason": str(f)}
                for f in out.get("failures") or []]
    res = {"metrics": out.get("metrics") or {}, "figures": figures, "rows": rows, "failures": failures}
    if unknown:
        res["extra"] = {k: out[k] for k in unknown}
    return res


def _resolve(tests, registry):
    """[(name, run function or reason)] for names (or a {name: function} mapping)."""
    if tests is None:
        names = list(TESTS)
    elif isinstance(tests, dict):
        return list(tests.items())
    else:
        names = [tests] if isinstance(tests, str) else list(tests)
    out = []
    for t in names:
        if callable(t):
            out.append((getattr(t, "__name__", "test"), t))
            continue
        if registry and t in registry:
            out.append((t, registry[t]))
            continue
        fn = load_test(t)
        if isinstance(fn, str) and t not in TESTS + OPTIONAL_TESTS:
            raise MtpjaxError(f"unknown test {t!r} ({fn}); known: {', '.join(TESTS + OPTIONAL_TESTS)}")
        out.append((t, fn))
    if len({n for n, _ in out}) != len(out):
        raise MtpjaxError(f"a test is named twice in {[n for n, _ in out]}")
    return out


def run_suite(potential, oracle, outdir, tests=None, element=None, options=None, progress=True, *, quick=False,
              registry=None, potential_label=None, oracle_label=None, potential_spec=None, oracle_spec=None,
              resume=False, ground_state=None) -> dict:
    """Run ``tests`` (names from :data:`TESTS`, default all of them; missing modules are "not available") of
    ``potential`` against ``oracle``, write the report into ``outdir`` and return the result dict.

    ``options``: keyword arguments per test, ``{"phonons": {"mesh": [12, 12, 12]}}``; top-level non-dict entries
    (and ``quick``, ``element``) go to every test whose run() takes them. ``registry``: {name: run function}
    overriding the module lookup (e.g. an extra test). Timings in seconds. Each finished test leaves
    ``outdir/<test>/result.json``; ``resume=True`` reuses those whose options, potential and oracle are unchanged (an interrupted suite
    continues with the first unfinished test; failed tests are run again).

    A potential and oracle that share two or more elements also run the ``alloy`` test (:data:`OPTIONAL_TESTS`).

    ``ground_state`` (hcp, fcc or bcc): the element's ground-state lattice, whose elastic constants, phase energies
    and planar defects the tests measure; default: detected once here, the lowest of the oracle's relaxed hcp, fcc,
    dhcp and bcc (:func:`mtpjax.verify.prototypes.detect_ground_state`; dhcp is verified on hcp), and passed to the
    tests that take it.

    The result: potential, oracle (descriptions), elements, quick, tests {name: {status ("ok", "failed",
    "not available"), seconds, metrics, figures, rows, failures, error, traceback}}, rows, failures, total_seconds.
    """
    from tqdm import tqdm

    from ..oracles import check_elements, describe, short_name

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    elements = check_elements(potential, oracle, element)
    if element is None and len(elements) == 1:
        element = elements[0]
    options = dict(options or {})
    common = {k: v for k, v in options.items() if not isinstance(v, dict)}
    per_test = {k: v for k, v in options.items() if isinstance(v, dict)}
    common.setdefault("quick", bool(quick))
    if element is not None:
        common.setdefault("element", element)
    plan = _resolve(tests, registry)
    if not isinstance(tests, dict) and "alloy" not in {n for n, _ in plan} and len(_shared(potential, oracle)) >= 2:
        plan += _resolve(["alloy"], registry)  # an alloy potential: its formation and solution energies too
    unknown_opts = sorted(set(per_test) - {n for n, _ in plan})
    notes = []
    gs = _ground_state(plan, oracle, element, ground_state or common.get("ground_state"), notes)
    if gs is not None:
        common["ground_state"] = gs["lattice"]
    if unknown_opts:
        notes.append(f"options given for tests that are not run: {unknown_opts}")
    if getattr(potential, "species", None) is None and getattr(oracle, "species", None):
        notes.append(f"the potential names no species; it is taken to describe the oracle's {list(oracle.species)}")
    result = {
        "potential": describe(potential, potential_spec), "oracle": describe(oracle, oracle_spec),
        "potential_label": potential_label or short_name(potential, potential_spec),
        "oracle_label": oracle_label or short_name(oracle, oracle_spec),
        "elements": elements, "quick": bool(common["quick"]), "options": options, "ground_state": gs,
        "created": datetime.datetime.now().isoformat(timespec="seconds"), "versions": versions(device=True),
        "notes": notes, "tests": {}, "rows": [], "failures": [],
    }
    t_start = time.perf_counter()
    fingerprint = _fingerprint(potential, oracle)
    bar = tqdm(plan, desc="verify", unit="test", disable=not progress)
    for name, fn in bar:
        bar.set_postfix_str(name)
        entry = {"status": None, "seconds": 0.0, "metrics": {}, "figures": [], "rows": [], "failures": []}
        kwargs = {**common, **per_test.get(name, {})}
        key = _options_key(kwargs, fingerprint)
        saved = _saved_entry(outdir / name, key) if resume and not isinstance(fn, str) else None
        if saved is not None:
            entry = saved
        elif isinstance(fn, str):
            entry.update(status="not available", error=fn)
        else:
            t0 = time.perf_counter()
            try:
                out = _call(fn, potential, oracle, outdir / name, kwargs)
                entry.update(_normalise(out, name, outdir / name, outdir), status="ok")
                entry["seconds"] = time.perf_counter() - t0
                _save_entry(outdir / name, key, entry)
            except Exception as err:  # noqa: BLE001 (one failing test must not stop the others)
                entry.update(status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
                entry["failures"] = [{"test": name, "structure": None, "reason": f"test raised {type(err).__name__}: {err}"}]
            entry["seconds"] = entry["seconds"] or time.perf_counter() - t0
        result["tests"][name] = entry
        result["rows"] += entry["rows"]
        result["failures"] += entry["failures"]
    bar.close()
    result["total_seconds"] = time.perf_counter() - t_start
    result["timings"] = {n: t["seconds"] for n, t in result["tests"].items()} | {"total": result["total_seconds"]}
    result["rows"] = report.normalise_rows(result["rows"])
    result["warnings"] = report.verification_warnings(result["rows"])
    for w in result["warnings"]:
        warnings.warn(f"verify: {w}", stacklevel=2)
    result["files"] = {k: str(Path(v).name) for k, v in report.write_report(result, outdir).items()}
    return result


def _shared(potential, oracle) -> list:
    """The elements both describe ([] when they cannot be matched)."""
    from ..oracles import check_elements

    try:
        return check_elements(potential, oracle)
    except MtpjaxError:
        return []


def _takes(fn, name: str) -> bool:
    """Whether ``fn`` names the keyword ``name`` (a bare ``**kwargs`` does not count)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _ground_state(plan, oracle, element, override, notes):
    """{"lattice", "phase", "source", "energies"} of the element's ground state for the tests of ``plan`` that take
    ``ground_state`` (None when none does, or when it cannot be found: each test then finds its own)."""
    from .prototypes import detect_ground_state, ground_state

    if element is None or not any(callable(fn) and _takes(fn, "ground_state") for _, fn in plan):
        return None
    if override:
        return {"lattice": ground_state(oracle, element, override), "phase": None, "source": "config",
                "energies": None}
    try:
        found = detect_ground_state(oracle, element)
    except Exception as err:  # noqa: BLE001 (the tests report their own relaxation failures)
        notes.append(f"ground state not detected ({type(err).__name__}: {err}); each test looks for its own")
        return None
    if found["phase"] != found["lattice"]:
        notes.append(f"the oracle's lowest prototype is {found['phase']}; the tests build {found['lattice']}")
    return {**found, "source": "oracle (lowest relaxed energy per atom of hcp, fcc, dhcp, bcc)"}


def _options_key(kwargs, fingerprint: str = "") -> str:
    return json.dumps({"options": kwargs, "models": fingerprint}, sort_keys=True, default=str)


def _fingerprint(*models) -> str:
    """A digest of the numbers (array leaves) and the type of each model: a saved test result is reused only for
    the same potential and oracle."""
    import hashlib

    import jax
    import numpy as np

    h = hashlib.sha256()
    for m in models:
        h.update(type(m).__qualname__.encode())
        for leaf in jax.tree.leaves(m):
            if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
                a = np.asarray(leaf)
                h.update(str((a.shape, a.dtype)).encode())
                h.update(np.ascontiguousarray(a).tobytes())
            else:
                h.update(repr(leaf).encode())
    return h.hexdigest()[:16]


def _save_entry(d: Path, key: str, entry) -> None:
    """Write a finished test's entry (atomically) so that a resumed suite can reuse it."""
    try:
        text = json.dumps({"options": key, "entry": entry}, default=str)
    except (TypeError, ValueError):  # an entry that does not serialise is simply not resumable
        return
    atomic_write(d / "result.json", text)


def _saved_entry(d: Path, key: str):
    """The saved entry of a finished test run with the same options, else None."""
    try:
        saved = json.loads((d / "result.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if saved.get("options") != key or saved.get("entry", {}).get("status") != "ok":
        return None
    return saved["entry"]
