"""mtpjax.config: one strict reader of TOML tables into dataclasses, and command-line options from the same
dataclasses (fit and sweep: every FitConfig field is an option or deliberately left out)."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from mtpjax import config
from mtpjax.errors import ConfigError, FormatError, MtpjaxError
from mtpjax.fit.validate import positive_int


@dataclass(frozen=True)
class Inner:
    x: int = 1  # an integer of the inner section
    y: tuple[float, float] = (0.0, 1.0)

    def check_config(self):
        if self.y[0] > self.y[1]:
            raise ConfigError("y", "lower > upper")


@dataclass(frozen=True)
class Weights:
    a: float = 1.0
    b: float = 2.0


@dataclass(frozen=True)
class Outer:
    flag: bool = False  # a flag
    n: int = 0
    r: float = 1.0
    s: str = "a"
    opt: int | None = None
    many: tuple[int, ...] = ()
    names: tuple[str, ...] = ("a",)
    pair: tuple[int, int] = (1, 2)
    choice: Literal["a", "b"] = "a"
    table: dict = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)
    checked: int = field(default=1, metadata={"check": positive_int, "help": "at least 1"})
    out: str = field(default="x", metadata={"path": True})
    weights: Weights = field(default_factory=Weights, metadata={"flatten": True})
    hidden: str = field(default="h", metadata={"config": False})


KNOWN = "flag, n, r, s, opt, many, names, pair, choice, table, inner, checked, out, a, b"


@pytest.mark.parametrize("key, value, expected", [
    ("flag", True, True),
    ("flag", False, False),
    ("n", -3, -3),
    ("r", 2, 2.0),  # an integer is a number
    ("r", 2.5, 2.5),
    ("s", "text", "text"),
    ("opt", 4, 4),
    ("many", [], ()),
    ("many", [1, 2, 3], (1, 2, 3)),
    ("names", ["x", "y"], ("x", "y")),
    ("pair", [3, 4], (3, 4)),
    ("choice", "b", "b"),
    ("table", {"k": [1]}, {"k": [1]}),
    ("checked", 5, 5),
])
def test_good_values(key, value, expected):
    got = getattr(config.from_dict(Outer, {key: value}), key)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("key, value, message", [
    ("flag", "false", "flag: 'false' is not a boolean"),
    ("flag", 1, "flag: 1 is not a boolean"),
    ("n", True, "n: True is not an integer"),  # bool is not int
    ("n", 8.7, "n: 8.7 is not an integer"),
    ("n", 8.0, "n: 8.0 is not an integer"),
    ("n", "8", "n: '8' is not an integer"),
    ("r", True, "r: True is not a number"),
    ("r", "1.5", "r: '1.5' is not a number"),
    ("s", 5, "s: 5 is not a string"),
    ("opt", "3", "opt: '3' is not an integer"),
    ("many", 3, "many: 3 is not a list"),
    ("many", [1, 2.5], "many: element 2 of [1, 2.5]: 2.5 is not an integer"),
    ("many", [1, True], "many: element 2 of [1, True]: True is not an integer"),
    ("names", "x", "names: 'x' is not a list"),
    ("pair", [1], "pair: [1] has 1 values, a list of 2 values"),
    ("pair", [1, 2, 3], "pair: [1, 2, 3] has 3 values, a list of 2 values"),
    ("choice", "c", "choice: 'c' is not one of 'a', 'b'"),
    ("table", [1], "table: [1] is not a table"),
    ("inner", 3, "inner: must be a table, got 3"),
    ("checked", 0, "checked: must be at least 1"),
    ("checked", 1.0, "checked: 1.0 is not an integer"),
])
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError) as err:
        config.from_dict(Outer, {key: value})
    assert err.value.field == key
    assert str(err.value).startswith(message), str(err.value)
    assert isinstance(err.value, MtpjaxError)


def test_nested_sections_and_prefix():
    got = config.from_dict(Outer, {"inner": {"x": 2, "y": [1, 3]}})
    assert got.inner == Inner(2, (1.0, 3.0)) and got.n == 0
    for data, key, text in (({"inner": {"x": 2.5}}, "fit.inner.x", "2.5 is not an integer"),
                            ({"inner": {"z": 1}}, "fit.inner.z", "unknown key (known: x, y)"),
                            ({"inner": {"y": [2, 1]}}, "fit.inner.y", "lower > upper")):  # check_config, prefixed
        with pytest.raises(ConfigError) as err:
            config.from_dict(Outer, data, prefix="fit.")
        assert err.value.field == key and str(err.value) == f"{key}: {text}"


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        config.from_dict(Outer, {"n": 1, "nn": 2})
    assert err.value.field == "nn"
    assert str(err.value) == f"nn: unknown key (known: {KNOWN})"
    with pytest.raises(ConfigError, match="hidden: unknown key"):  # set by code, not by a file
        config.from_dict(Outer, {"hidden": "x"})


def test_optional_and_missing_keys_take_defaults():
    got = config.from_dict(Outer, {})
    assert got == Outer() and got.opt is None and got.table == {}
    assert config.from_dict(Outer, {"opt": 0}).opt == 0


def test_flattened_section_keys_sit_in_the_parent_table():
    got = config.from_dict(Outer, {"a": 5, "n": 1})
    assert got.weights == Weights(a=5.0, b=2.0) and got.n == 1
    assert config.flat_values(got)["a"] == 5.0 and "weights" not in config.flat_values(got)


def test_load_names_the_file_and_resolves_paths(tmp_path):
    p = tmp_path / "run.toml"
    p.write_text('[fit]\nn = 3\nout = "sub/o.txt"\na = 0.5\n')
    got = config.load(Outer, p, table="fit")
    assert got.n == 3 and got.out == str(tmp_path / "sub" / "o.txt") and got.weights.a == 0.5
    assert config.load(Outer, p, table="other") == Outer()  # a missing table is empty
    p.write_text("[fit]\nn = 8.7\n")
    with pytest.raises(ConfigError) as err:
        config.load(Outer, p, table="fit")
    assert str(err.value) == f"fit.n: 8.7 is not an integer (in {p})" and err.value.path == p
    p.write_text("[fit\n")
    with pytest.raises(FormatError, match="not valid TOML"):
        config.load(Outer, p)


def test_layers_command_line_over_file_over_default():
    got = config.layered(Outer, {"n": 1, "s": "file"}, {"s": "cli"})
    assert (got.n, got.s, got.r) == (1, "cli", 1.0)


def test_options_from_a_dataclass(capsys):
    p = argparse.ArgumentParser()
    keys = config.add_options(p, Outer, exclude=("table",), positional=("names",))
    assert keys == ["flag", "n", "r", "s", "opt", "many", "names", "pair", "choice", "checked", "out", "a", "b"]
    got = p.parse_args(["x", "y", "--no-flag", "--n", "4", "--many", "1", "2", "--pair", "5", "6", "--a", "3"])
    assert config.given(got, keys) == {"flag": False, "n": 4, "many": [1, 2], "pair": [5, 6], "a": 3.0,
                                       "names": ["x", "y"]}
    assert config.given(p.parse_args([]), keys) == {}  # nothing set: the file and the defaults decide
    for bad, text in ((["--n", "8.7"], "argument --n"), (["--choice", "c"], "argument --choice"),
                      (["--checked", "0"], "argument --checked: must be at least 1")):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            p.parse_args(bad)
        assert text in capsys.readouterr().err
    actions = {a.dest: a for a in p._actions}
    assert actions["flag"].help == "a flag (default false)" and actions["checked"].help.startswith("at least 1")
    assert actions["choice"].choices == ["a", "b"]


# ---------------------------------------------------------------------------------------------------------
# the fit and sweep commands


def _fit_config_keys():
    """The keys of FitConfig's table: its fields and LossConfig's (flattened), method written as optimizer."""
    from mtpjax.fit import FitConfig, LossConfig

    keys = [f.name for f in dataclasses.fields(FitConfig) if f.name != "loss"]
    keys += [f.name for f in dataclasses.fields(LossConfig)]
    return ["optimizer" if k == "method" else k for k in keys]


def _option_dests(command):
    from mtpjax.cli import build_parser

    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {a.dest for a in sub._actions}


@pytest.mark.parametrize("command", ["fit", "sweep"])
def test_every_fit_config_field_is_an_option_or_excluded(command):
    from mtpjax.cli import FIT_COMMANDS

    excluded = FIT_COMMANDS[command][2]
    assert excluded == {"fit": (), "sweep": ("seed",)}[command]
    dests = _option_dests(command)
    keys = _fit_config_keys()
    assert len(keys) >= 28  # not vacuous: 21 of FitConfig (less loss) + 7 of LossConfig today
    missing = [k for k in keys if k not in dests and k not in excluded]
    assert missing == []
    assert not set(excluded) & dests


def test_fit_options_layer_command_line_over_config_over_defaults(tmp_path):
    from mtpjax.cli import parse_args
    from mtpjax.fit import FitConfig

    cfg = tmp_path / "fit.toml"
    cfg.write_text('[fit]\ntrain = ["a.extxyz"]\nlevel = 8\ncutoff = 5.0\nmax_steps = 7\nforce_weight = 0.5\n'
                   'output = "p.almtp"\noptimizer = "adam"\n')
    got = parse_args(["fit", "--config", str(cfg), "--max-steps", "9", "--test", "t.extxyz", "--no-orthonormalize"]).opts
    assert got.fit.max_steps == 9 and got.fit.loss.force_weight == 0.5 and got.fit.method == "adam"
    assert got.fit.memory_size == FitConfig().memory_size == 20 and got.fit.orthonormalize is False
    assert got.train == (str(tmp_path / "a.extxyz"),) and got.output == str(tmp_path / "p.almtp")
    assert got.test == ("t.extxyz",)  # a command-line path is relative to the current folder
    assert got.fit.validate_every == 10  # adam's default, from FitConfig
    with pytest.raises(MtpjaxError, match="give --cutoff"):
        cfg.write_text('[fit]\ntrain = ["a.extxyz"]\nlevel = 8\noutput = "p.almtp"\n')
        parse_args(["fit", "--config", str(cfg)])


def test_fit_help_comes_from_the_dataclass():
    from mtpjax.cli import build_parser
    from mtpjax.config import field_help
    from mtpjax.fit import FitConfig

    assert field_help(FitConfig, "precondition") == "scale linear coefficients by the curvature found in each linear solve"
    parser = build_parser("fit")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["fit"]
    helps = {a.dest: a.help for a in sub._actions}
    assert helps["precondition"].startswith("scale linear coefficients by the curvature")
    assert helps["memory_size"] == "L-BFGS memory (default 20)"


def test_command_help_lines_are_the_modules_own():
    from mtpjax import run_cli
    from mtpjax.active import cli_grade, cli_learn, cli_select
    from mtpjax.cli import EXTERNAL_COMMANDS, command_help
    from mtpjax.generate import cli as generate_cli
    from mtpjax.md import cli as md_cli
    from mtpjax.verify import cli as verify_cli

    assert {n: command_help(m) for n, m in EXTERNAL_COMMANDS.items()} == {
        "generate": generate_cli.HELP, "verify": verify_cli.HELP, "run": run_cli.HELP, "md": md_cli.HELP,
        "grade": cli_grade.HELP, "select": cli_select.HELP, "learn": cli_learn.HELP}


def test_sweep_options_reach_run_sweep(tmp_path, monkeypatch):
    """sweep --config: every option read reaches run_sweep (seed is not a key: the seeds are)."""
    import mtpjax.sweep
    from mtpjax import cli

    seen = {}
    monkeypatch.setattr(cli, "_load_training", lambda opts: (["train"], ["test"], 1, None))
    monkeypatch.setattr(mtpjax.sweep, "run_sweep", lambda *a, **k: seen.update(k, args=a))
    cfg = tmp_path / "s.toml"
    cfg.write_text('[sweep]\ntrain = ["a.extxyz"]\nlevels = [8, 10]\ncutoffs = [5]\nseeds = [1, 2]\noutput = "o"\n'
                   'rmin = 1.5\ninit = "random"\nmax_steps = 30\nlinear_solve_at = [0, 20, 40]\n')
    assert cli.main(["sweep", "--config", str(cfg), "--cutoffs", "4", "5.5", "--group", "none", "-q"]) == 0
    assert seen["levels"] == [8, 10] and seen["cutoffs"] == [4.0, 5.5] and seen["seeds"] == [1, 2]
    assert seen["rmin"] == 1.5 and seen["init"] == "random" and seen["group"] == "none"
    assert seen["max_batch_atoms"] == 100000 and seen["cfg"].max_steps == 30
    assert seen["cfg"].linear_solve_at == (0, 20)  # those before max_steps
    assert seen["args"][2] == tmp_path / "o"
    cfg.write_text(cfg.read_text() + "seed = 3\n")
    with pytest.raises(ConfigError, match=r"sweep\.seed: unknown key"):
        cli.parse_args(["sweep", "--config", str(cfg)])
