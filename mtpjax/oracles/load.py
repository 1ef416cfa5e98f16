"""Any potential from a spec — the one "spec → potential" loader — and the checks and names that reports use.

A spec (:func:`make_potential`) is

- a path (str or Path) ending in one of :data:`~mtpjax.oracles.factory.MTP_SUFFIXES` (``.almtp``, ``.mtp``,
  ``.mtpjax``): a trained MTP (:func:`mtpjax.model.load_mtp`);
- a path ending in one of :data:`~mtpjax.oracles.factory.EAM_SUFFIXES` (``.eam``, ``.eam.alloy``, ``.eam.fs``,
  ``.alloy``, ``.fs``, ``.setfl``): a tabulated EAM (:class:`~mtpjax.oracles.TabulatedEAM`), the suffix list
  :func:`~mtpjax.oracles.make_oracle` uses;
- anything else :func:`~mtpjax.oracles.make_oracle` takes: ``"zhou:Mg"``, ``"lj"``, ``"eam:FILE"``,
  ``"ase:module.Class"``, a JSON object string, or a dict;
- an already built potential (:class:`mtpjax.potential.Potential`) or oracle (:class:`~mtpjax.oracles.Oracle`),
  returned as is.

:func:`load_pair` loads a potential and an oracle and checks that they describe the same element(s)
(:func:`check_elements`); :func:`describe` and :func:`short_name` describe a potential for reports.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import MtpjaxError
from ..potential import Potential
from .base import Oracle
from .factory import EAM_SUFFIXES, MTP_SUFFIXES, is_eam_file, is_mtp_file, make_oracle


def is_built(spec) -> bool:
    """Whether ``spec`` is already a potential or an oracle (not a recipe for one)."""
    return isinstance(spec, (Potential, Oracle))


def _species_list(species):
    return [species] if isinstance(species, str) else (list(species) if species else None)


def _looks_like_file(spec) -> bool:
    """A Path, or a string with a file suffix that is neither JSON nor a ``kind:argument`` oracle string."""
    if isinstance(spec, Path):
        return True
    return isinstance(spec, str) and bool(Path(spec.strip()).suffix) and ":" not in spec and not spec.lstrip().startswith("{")


def _load_mtp(spec, species):
    from ..model import load_mtp

    path = Path(spec)
    if not path.is_file():
        raise MtpjaxError(f"potential {str(spec)!r}: no such file")
    try:
        mtp = load_mtp(path, species=species)
    except MtpjaxError as err:
        raise MtpjaxError(f"potential {str(spec)!r}: {err}" if str(spec) not in str(err) else str(err)) from err
    except (OSError, ValueError, KeyError, IndexError) as err:
        raise MtpjaxError(f"potential {str(spec)!r} could not be read as an MTP: {err}") from err
    if species is not None and len(species) != mtp.n_species:
        raise MtpjaxError(f"potential {str(spec)!r} has {mtp.n_species} species, but {len(species)} were given: {species}")
    return mtp


def _load_eam(spec, species):
    path = Path(spec)
    if not path.is_file():
        raise MtpjaxError(f"EAM potential {str(spec)!r}: no such file")
    try:
        return make_oracle({"type": "eam", "file": str(path), **({"species": species} if species else {})})
    except MtpjaxError as err:
        raise MtpjaxError(f"EAM potential {str(spec)!r}: {err}" if str(spec) not in str(err) else str(err)) from err


def make_potential(spec, species=None):
    """A potential (MTP, EAM, any oracle) from ``spec`` (see the module docstring).

    ``species``: element of each MTP type, in type order (overrides the file's; MLIP files name none), or the
    element names of an EAM file's elements, in the file's order; for an oracle spec, the elements it must
    describe. Raises :class:`MtpjaxError` naming the spec on any failure (missing file, unknown suffix or
    oracle, wrong number of species).
    """
    if is_built(spec):
        return spec
    species = _species_list(species)
    if isinstance(spec, (str, Path)) and is_mtp_file(spec):
        return _load_mtp(spec, species)
    if isinstance(spec, (str, Path)) and is_eam_file(spec):
        return _load_eam(spec, species)
    if _looks_like_file(spec):
        raise MtpjaxError(f"potential {str(spec)!r}: unknown kind of file (potential files end in "
                          f"{', '.join(MTP_SUFFIXES + EAM_SUFFIXES)})")
    try:
        pot = make_oracle(spec)
    except (MtpjaxError, TypeError, ValueError, OSError) as err:
        raise MtpjaxError(f"potential/oracle {spec!r}: {err}") from err
    if species is not None:
        own = getattr(pot, "species", None)
        if own is not None and list(own) != species:
            raise MtpjaxError(f"potential/oracle {spec!r} describes {list(own)}, not {species}")
    return pot


def _species(p):
    sp = getattr(p, "species", None)
    return list(sp) if sp else None


def check_elements(potential, oracle, element: str | None = None) -> list:
    """The element(s) that both describe, as a list; raises :class:`MtpjaxError` when they differ.

    A potential without species (an MLIP file read without ``species``) with one type is taken to be the
    oracle's element when the oracle has exactly one. ``element``, when given, must be known to both.
    """
    ps, os_ = _species(potential), _species(oracle)
    if ps is not None and os_ is not None and set(ps) != set(os_):
        common = sorted(set(ps) & set(os_))
        if not (element and element in common):
            raise MtpjaxError(f"the potential describes {ps} but the oracle {os_}: they must describe the same element(s)"
                              + (f" (common: {common}; choose one with --element)" if common else ""))
    if ps is None and os_ is None:
        if element is None:
            raise MtpjaxError("neither the potential nor the oracle names its element(s): pass --species (e.g. --species Mg)")
        return [element]
    if ps is None and potential is not None and getattr(potential, "n_species", 1) != len(os_):
        raise MtpjaxError(f"the potential has {potential.n_species} species, the oracle {len(os_)} ({os_}); pass --species")
    elements = os_ if ps is None else (ps if os_ is None else [e for e in ps if e in os_])
    if element is not None:
        if element not in elements:
            raise MtpjaxError(f"element {element!r} is not described by both: potential {ps}, oracle {os_}")
        return [element]
    return list(elements)


def load_pair(potential_spec, oracle_spec, species=None, element: str | None = None):
    """(potential, oracle, elements): both made by :func:`make_potential` and checked to describe the same
    element(s) (:func:`check_elements`). An MTP file that names no species gets the oracle's elements (when the
    counts agree), so that structures of those elements map onto its types."""
    oracle = make_potential(oracle_spec)
    potential = make_potential(potential_spec, species)
    elements = check_elements(potential, oracle, element)
    if _species(potential) is None and _species(oracle) and isinstance(potential_spec, (str, Path)) \
            and is_mtp_file(potential_spec):
        potential = make_potential(potential_spec, _species(oracle))
    return potential, oracle, elements


def describe(potential, spec=None) -> dict:
    """A JSON-able description of a potential for reports: name, species, cutoff (Å), and the spec or file."""
    from ..model import MTP

    d = {}
    if isinstance(potential, Oracle):
        try:
            d = dict(potential.describe())
        except Exception:  # noqa: BLE001 (a description must never break a report)
            d = {}
    d.setdefault("name", str(getattr(potential, "name", type(potential).__name__)))
    d.setdefault("species", _species(potential))
    cutoff = getattr(potential, "cutoff", None)
    if cutoff is not None:
        d.setdefault("cutoff", float(cutoff))
    if isinstance(potential, MTP):
        d["type"] = "mtp"
        d["n_species"] = int(potential.n_species)
        d["n_basis"] = int(potential.moment_coeffs.shape[0])
    if spec is not None and not is_built(spec):
        d["source"] = str(spec)
    return d


def short_name(potential, spec=None) -> str:
    """A short name for tables and plots: the file name of an MTP or EAM file spec, else the potential's ``name``."""
    if isinstance(spec, (str, Path)) and (is_mtp_file(spec) or is_eam_file(spec)):
        return Path(str(spec)).name
    return str(getattr(potential, "name", type(potential).__name__))
