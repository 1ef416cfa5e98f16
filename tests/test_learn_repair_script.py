"""scripts/learn_repair.py's --seed: the loop's config with every simulation's MD seed set, nothing else changed
(checked on the parsed TOML of configs/learn_repair.toml, with and without the liquid)."""
from __future__ import annotations

import tomllib

import pytest

from conftest import load_script


def _script():
    return load_script("learn_repair")


@pytest.mark.parametrize("liquid", [False, True])
def test_seed_sets_every_simulations_md_seed_and_nothing_else(liquid):
    L = _script()
    text = L.CONFIG.read_text() + (L.LIQUID if liquid else "")
    before = tomllib.loads(text)
    after = tomllib.loads(L.with_seed(text, 7))
    sims = after["learn"]["simulation"]
    assert len(sims) == 4 + liquid and [s["seed"] for s in sims] == [7] * len(sims)
    assert [s["seed"] for s in before["learn"]["simulation"]] == [1] * len(sims)  # the config's own seed
    for s in (*before["learn"]["simulation"], *sims):
        s.pop("seed")
    assert after == before
    assert L.with_seed(text, None) == text
    with pytest.raises(ValueError, match="no `seed = ` line"):
        L.with_seed("[learn]\noutput = 'learn'\n", 3)
