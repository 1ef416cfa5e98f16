"""scripts/entropy_head_to_head.py: the E - kS sets of --energy-weights join the comparison (their own column per fit
seed, counted in the summary against the others); a weight that is not > 0, or a --tag that is not a file-name part,
is refused before anything runs."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location("entropy_head_to_head", ROOT / "scripts" / "entropy_head_to_head.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_energy_weighted_sets_are_compared_with_the_others():
    H = _script()
    names = H.set_names([1.0, 0.5])
    assert names == ("ENTROPY", "RANDSPG-family", "UNION", "ENTROPY-E1", "ENTROPY-E0.5")
    # two rows, fit seeds 0 and 1; |errors| chosen so that each set wins a known number of rows
    errs = {0: {"ENTROPY": (3, 3), "RANDSPG-family": (2, 4), "UNION": (4, 4), "ENTROPY-E1": (1, 5), "ENTROPY-E0.5": (5, 1)},
            1: {"ENTROPY": (1, 1), "RANDSPG-family": (2, 2), "UNION": (3, 3), "ENTROPY-E1": (4, 4), "ENTROPY-E0.5": (6, 2)}}
    matrix = [{"test": "vacancy", **{H.column_name(n, fs): errs[fs][n][i] * (-1) ** i for fs in errs for n in names}}
              for i in range(2)]
    s = {(r["fit_seed"], r["test"]): r for r in H.summarise(matrix, [0, 1], names)}
    seed0, seed1 = s[(0, "all")], s[(1, "all")]
    assert seed0["rows"] == 2 and seed0["best_ENTROPY-E1"] == 1 and seed0["best_ENTROPY-E0.5"] == 1
    assert seed0["best_ENTROPY"] == seed0["best_RANDSPG-family"] == seed0["best_UNION"] == 0
    assert seed1["best_ENTROPY"] == 2
    assert math.isclose(seed0["median_ratio_ENTROPY-E1_to_ENTROPY"], (1 / 3 + 5 / 3) / 2)
    assert math.isclose(seed1["median_ratio_ENTROPY-E0.5_to_ENTROPY"], (6 + 2) / 2)


@pytest.mark.parametrize("bad", ["0", "-1"])
def test_a_weight_not_above_zero_is_refused(bad, capsys):
    H = _script()
    with pytest.raises(SystemExit) as e:
        H.main(["--energy-weights", bad, "--out", "/nonexistent/never-written"])
    assert e.value.code == 2
    assert "--energy-weights must be > 0" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["../x", ""])
def test_a_tag_that_is_not_a_file_name_part_is_refused(capsys, bad):
    H = _script()
    with pytest.raises(SystemExit) as e:
        H.main(["--tag", bad, "--out", "/nonexistent/never-written"])
    assert e.value.code == 2
    assert f"--tag: {bad!r}: use letters, digits and underscores" in capsys.readouterr().err
