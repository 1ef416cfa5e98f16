"""RANDSPG: random crystals of one element for every compatible (space group, number of atoms) pair (pyxtal).

For each space group in ``space_groups`` and each atom count n in ``n_atoms`` (atoms of pyxtal's conventional
cell), pairs whose Wyckoff positions cannot hold n atoms are skipped (and counted). Each of ``copies`` structures
per pair is made by ``pyxtal.from_random(3, sg, [element], [n])`` seeded from
``SeedSequence([seed, 1, sg, n, copy])``; its cell is then scaled isotropically to a volume per atom drawn
uniformly from ``volume_range`` × Ω0 (``SeedSequence([seed, 2, sg, n, copy])``; pyxtal's own ``factor`` does
not hit a target volume). Structures with two atoms closer than ``min_distance`` Å are rejected. spglib's space
group (at ``symprec`` Å) is stored with the requested one.

Rejections: ``pyxtal_failed`` (pyxtal raised on every attempt), ``timeout`` (more than ``time_limit`` s),
``min_distance``.

Alloys (several elements, :mod:`.config`): the pairs are (space group, composition) for every composition of
:func:`~.config.compositions_of` (atom counts per element; elements with count 0 left out of pyxtal's call, so
pure elements come from the same recipe), a structure is ``pyxtal.from_random(3, sg, species, counts)`` seeded from
``SeedSequence([seed, 1, sg, *counts, copy])`` and scaled to the Vegard volume Σ x_i Ω0_i × a draw from
``volume_range`` (``SeedSequence([seed, 2, sg, *counts, copy])``). Its id is ``RANDSPG/sg<sg>-<Al3Mg1>-c<copy>``
and its key (space group, :func:`~.config.composition_code`, copy), so the deformations of its descendants are
seeded per composition. A one-element recipe is exactly the one above.
"""
from __future__ import annotations

import signal
import threading
import warnings
from contextlib import contextmanager

import numpy as np

from .config import RandspgConfig
from .structures import Failure, min_distance, rng, tag


def compatible_pairs(cfg: RandspgConfig, compositions=None) -> tuple[list[tuple], list[tuple]]:
    """(compatible, incompatible) (space group, n atoms) pairs of the config's ranges; with ``compositions`` (an
    alloy: atom counts per element, :func:`~.config.compositions_of`) (space group, counts) pairs instead."""
    from pyxtal.symmetry import Group

    ok, bad = [], []
    for sg in range(cfg.space_groups[0], cfg.space_groups[1] + 1):
        g = Group(sg)
        if compositions:
            for counts in compositions:
                counts = tuple(int(c) for c in counts)
                (ok if g.check_compatible([c for c in counts if c])[0] else bad).append((sg, counts))
            continue
        for n in range(cfg.n_atoms[0], cfg.n_atoms[1] + 1):
            (ok if g.check_compatible([n])[0] else bad).append((sg, n))
    return ok, bad


def tasks(cfg: RandspgConfig, compositions=None) -> tuple[list[tuple], int]:
    """All (space group, n atoms, copy) to generate, and the number of incompatible pairs skipped; with
    ``compositions`` (an alloy) (space group, counts, copy)."""
    ok, bad = compatible_pairs(cfg, compositions)
    return [(sg, n, c) for sg, n in ok for c in range(cfg.copies)], len(bad)


class _Timeout(Exception):
    pass


@contextmanager
def _time_limit(seconds: float):
    """Raise _Timeout after ``seconds`` (SIGALRM; only in a process's main thread, else no limit)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def generate_one(task, element, omega0, dmin: float, cfg: RandspgConfig, seed: int, index: int = 0):
    """One RANDSPG structure (ase.Atoms, tagged) or a :class:`Failure`. ``omega0`` Å³/atom, ``dmin`` Å.

    An alloy task (space group, counts, copy) takes ``element`` as the tuple of elements and ``omega0`` as their
    elemental volumes (Å³/atom, same order); the cell is scaled to their Vegard average (see the module docstring)."""
    from pyxtal import pyxtal

    sg, n, copy = task
    alloy = isinstance(n, (tuple, list))
    if alloy:
        from .config import composition_code, composition_label, vegard_volume

        counts = tuple(int(c) for c in n)
        species = [e for e, c in zip(element, counts) if c]
        numbers = [c for c in counts if c]
        ident = f"sg{sg}-{composition_label(element, counts)}-c{copy}"
        keys = (sg, *counts, copy)
        volume = vegard_volume(omega0, counts)
        key = np.array([sg, composition_code(counts), copy])
    else:
        species, numbers = [element], [n]
        ident = f"sg{sg}-n{n}-c{copy}"
        keys = (sg, n, copy)
        volume = omega0
        key = np.array([sg, n, copy])
    r = rng(seed, "RANDSPG", *keys)
    crystal, errors = None, []
    try:
        with _time_limit(cfg.time_limit), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(cfg.max_attempts):
                c = pyxtal()
                try:
                    c.from_random(3, sg, species, numbers, random_state=int(r.integers(2 ** 63)))
                except _Timeout:
                    raise
                except Exception as err:  # pyxtal's many failure modes: try again with the next seed
                    errors.append(f"{type(err).__name__}: {err}")
                    continue
                if c.valid:
                    crystal = c
                    break
                errors.append("pyxtal returned an invalid crystal")
            atoms = crystal.to_ase() if crystal is not None else None
    except _Timeout:
        return Failure(index, f"RANDSPG/{ident}", "timeout", f"pyxtal took more than {cfg.time_limit} s")
    if atoms is None:
        return Failure(index, f"RANDSPG/{ident}", "pyxtal_failed", "; ".join(errors)[:500])
    atoms.wrap()
    lo, hi = cfg.volume_range
    target = len(atoms) * volume * rng(seed, "VOLUME", *keys).uniform(lo, hi)
    atoms.set_cell(atoms.cell.array * (target / atoms.get_volume()) ** (1 / 3), scale_atoms=True)
    atoms.info.clear()
    d = min_distance(atoms, dmin)
    if d < dmin:
        return Failure(index, f"RANDSPG/{ident}", "min_distance", f"atoms {d:.3f} Å apart (< {dmin:.3f} Å)")
    atoms.info.update(key=key, spacegroup_requested=sg)
    return tag(atoms, "RANDSPG", ident, "", cfg.symprec)
