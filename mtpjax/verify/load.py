"""Potentials and oracles for ``mtpjax verify`` from command-line specs, and the check that both describe the same
element(s).

A spec is

- a path ending in ``.almtp``, ``.mtp`` or ``.mtpjax``: a trained MTP (:func:`mtpjax.model.load_mtp`);
- a path ending in ``.eam``, ``.eam.alloy``, ``.eam.fs``, ``.alloy``, ``.fs`` or ``.setfl``: a tabulated EAM
  (:class:`mtpjax.oracles.TabulatedEAM`);
- anything else goes to :func:`mtpjax.oracles.make_oracle`: ``"zhou:Mg"``, ``"lj"``, ``"eam:FILE"``,
  ``"ase:module.Class"``, a JSON object, or a dict;
- an already built potential, returned as is.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import MtpjaxError

MTP_SUFFIXES = (".almtp", ".mtp", ".mtpjax")
EAM_SUFFIXES = (".eam", ".eam.alloy", ".eam.fs", ".alloy", ".fs", ".setfl")


def _is_potential_object(spec) -> bool:
    return hasattr(spec, "site_energies_from_pairs") or (hasattr(spec, "spec") and hasattr(spec, "describe"))


def load_potential(spec, species=None):
    """A potential (MTP, EAM, any oracle) from ``spec`` (see the module docstring).

    ``species``: element of each MTP type, in type order (overrides the file's; MLIP files name none), or the
    element names of an EAM file. Raises :class:`MtpjaxError` naming the spec on any failure.
    """
    if _is_potential_object(spec):
        return spec
    species = [species] if isinstance(species, str) else (list(species) if species else None)
    if isinstance(spec, (str, Path)) and str(spec).lower().endswith(MTP_SUFFIXES):
        from ..model import load_mtp

        path = Path(spec)
        if not path.exists():
            raise MtpjaxError(f"potential {str(spec)!r}: no such file")
        try:
            mtp = load_mtp(path, species=species)
        except MtpjaxError as err:
            raise MtpjaxError(f"potential {str(spec)!r}: {err}" if str(spec) not in str(err) else str(err)) from err
        except (OSError, ValueError, KeyError, IndexError) as err:
            raise MtpjaxError(f"potential {str(spec)!r} could not be read as an MTP: {err}") from err
        if species is not None and len(species) != mtp.n_species:
            raise MtpjaxError(f"potential {str(spec)!r} has {mtp.n_species} species, but --species gives {len(species)}: {species}")
        return mtp
    if isinstance(spec, (str, Path)) and str(spec).lower().endswith(EAM_SUFFIXES):
        from ..oracles import TabulatedEAM

        path = Path(spec)
        if not path.exists():
            raise MtpjaxError(f"EAM potential {str(spec)!r}: no such file")
        try:
            return TabulatedEAM.from_file(path, species=species)
        except MtpjaxError as err:
            raise MtpjaxError(f"EAM potential {str(spec)!r}: {err}" if str(spec) not in str(err) else str(err)) from err
    from ..oracles import make_oracle

    try:
        pot = make_oracle(str(spec) if isinstance(spec, Path) else spec)
    except MtpjaxError as err:
        raise MtpjaxError(f"potential/oracle {spec!r}: {err}") from err
    except (TypeError, ValueError, OSError) as err:
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

    A potential without species (an MLIP file read without ``--species``) with one type is taken to be the
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
    """(potential, oracle, elements): both loaded (see :func:`load_potential`) and checked to describe the same
    element(s) (:func:`check_elements`). An MTP file that names no species gets the oracle's elements (when the
    counts agree), so that structures of those elements map onto its types."""
    oracle = load_potential(oracle_spec)
    potential = load_potential(potential_spec, species)
    elements = check_elements(potential, oracle, element)
    if _species(potential) is None and _species(oracle) and isinstance(potential_spec, (str, Path)) \
            and str(potential_spec).lower().endswith(MTP_SUFFIXES):
        potential = load_potential(potential_spec, _species(oracle))
    return potential, oracle, elements


def describe(potential, spec=None) -> dict:
    """A JSON-able description of a potential for reports: name, species, cutoff (Å), and the spec or file."""
    d = {}
    if hasattr(potential, "describe"):
        try:
            d = dict(potential.describe())
        except Exception:  # noqa: BLE001 (a description must never break a report)
            d = {}
    d.setdefault("name", str(getattr(potential, "name", type(potential).__name__)))
    sp = _species(potential)
    d.setdefault("species", sp)
    if hasattr(potential, "cutoff"):
        d.setdefault("cutoff", float(potential.cutoff))
    if type(potential).__name__ == "MTP":
        d["type"] = "mtp"
        d["n_species"] = int(potential.n_species)
        d["n_basis"] = int(potential.moment_coeffs.shape[0])
    if spec is not None and not _is_potential_object(spec):
        d["source"] = str(spec)
    return d


def label(potential, spec=None) -> str:
    """A short name for tables and plots: the file name of an MTP, else the potential's ``name``."""
    if spec is not None and isinstance(spec, (str, Path)) and not _is_potential_object(spec):
        s = str(spec)
        if s.lower().endswith(MTP_SUFFIXES + EAM_SUFFIXES):
            return Path(s).name
    return str(getattr(potential, "name", type(potential).__name__))
