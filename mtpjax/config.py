"""One configuration mechanism: frozen dataclasses are the schema, TOML tables the values, argparse options the
command line's way to set them.

- :func:`from_dict` builds a (nested) dataclass from a TOML table, checking every value strictly against its field's
  annotation (a bool is no int, 8.7 is no int, "false" is no bool; lists for tuples, tables for nested sections);
  unknown keys are errors that list the known ones; errors are :class:`mtpjax.errors.ConfigError` naming the dotted
  key and, when the table came from a file, the file (``fit.level: 8.7 is not an integer (in run.toml)``).
- :func:`load` reads a TOML file (:func:`mtpjax.io.tomlfile.read_toml`) and builds from it, or from one of its tables.
- :func:`add_options` builds argparse options from a dataclass's fields (``--max-steps`` for ``max_steps``), every
  one with default None, and :func:`given` collects the ones given, so that command line > config file > dataclass
  default layer by plain dict merges (:func:`layered`).

Field metadata (``dataclasses.field(metadata={...})``) understood here:

- ``help``: the option's help text (default: the ``# comment`` after the field in its class's source);
- ``key``: the TOML key and option name when it differs from the field name (``method`` is ``optimizer``);
- ``check``: a function of a value that returns the value (possibly converted) or raises ValueError with the
  problem (:mod:`mtpjax.fit.validate`'s ``positive_int`` and friends); applied to TOML values and command-line text;
- ``path``: the value is a path (or list of paths) resolved relative to the config file;
- ``flatten``: a nested dataclass whose keys sit in the parent's own table (``energy_weight`` of ``[fit]``);
- ``fields``: with ``flatten``, ``{name: metadata}`` overriding the nested class's fields' metadata;
- ``config``: False for a field that code sets, never a file or the command line.

A class may define ``check_config(self)``, raising ConfigError with a field relative to the class; :func:`from_dict`
calls it after building and prefixes the field with the section's dotted key.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from pathlib import Path

from .errors import ConfigError

__all__ = ["ConfigError", "add_options", "field_help", "fields", "flat_values", "from_dict", "given", "layer", "layered", "load",
           "option_name", "resolve_paths"]


# ---------------------------------------------------------------------------------------------------------
# the schema: fields, their keys, their types


class Field(typing.NamedTuple):
    """One configurable field: its TOML ``key``, attribute ``name``, type ``hint``, ``meta`` (the field's metadata
    with a parent's overrides), and the dataclass ``field``."""

    key: str
    name: str
    hint: object
    meta: dict
    field: dataclasses.Field


def fields(cls, overrides: dict | None = None) -> list[Field]:
    """The configurable fields of a dataclass, in order (not those with metadata ``config`` False: set by code,
    never by a file or the command line). ``overrides``: ``{name: metadata}`` merged over the fields' own (a parent's
    ``fields`` metadata for a section whose class it does not own: checks and help of LossConfig's weights given by
    FitConfig; ``{"seed": {"config": False}}`` to hide a flattened field the parent sets itself)."""
    hints = typing.get_type_hints(cls)
    overrides = overrides or {}
    out = []
    for f in dataclasses.fields(cls):
        meta = {**f.metadata, **overrides.get(f.name, {})}
        if f.init and meta.get("config", True):
            out.append(Field(meta.get("key", f.name), f.name, hints[f.name], meta, f))
    return out


def _flat_keys(cls, overrides=None) -> list[str]:
    """Every key of ``cls``'s own table, flattened sections' keys included."""
    out = []
    for fd in fields(cls, overrides):
        out += _flat_keys(fd.hint, fd.meta.get("fields")) if fd.meta.get("flatten") else [fd.key]
    return out


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _optional(hint):
    """(inner type, True) for ``X | None`` / ``Optional[X]``; (hint, False) otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _describe(hint) -> str:
    """'an integer', 'a list of numbers', ... for a type annotation."""
    hint, opt = _optional(hint)
    origin = typing.get_origin(hint)
    if hint is bool:
        text = "a boolean (true or false)"
    elif hint is int:
        text = "an integer"
    elif hint is float:
        text = "a number"
    elif hint is str:
        text = "a string"
    elif origin is typing.Literal:
        text = "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    elif hint in (tuple, list) or origin in (tuple, list):
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            text = f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
        elif args:
            inner = _describe(args[0])
            text = "a list of " + {"an integer": "integers", "a number": "numbers", "a string": "strings",
                                   "a boolean (true or false)": "booleans"}.get(inner, inner)
        else:
            text = "a list"
    elif hint is dict or origin is dict or dataclasses.is_dataclass(hint):
        text = "a table"
    else:
        text = getattr(hint, "__name__", str(hint))
    return text + (" (or left out)" if opt else "")


# ---------------------------------------------------------------------------------------------------------
# values


class _Bad(ValueError):
    """A value that is not of its field's type (the message says why; the caller adds the key)."""


def _convert(value, hint, key: str, path):
    """``value`` checked against ``hint`` (and converted: int -> float, list -> tuple); raises _Bad."""
    hint, opt = _optional(hint)
    if value is None:
        if opt:
            return None
        raise _Bad(f"a value is needed ({_describe(hint)})")
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _Bad(f"must be a table, got {value!r}")
        return from_dict(hint, value, prefix=key + ".", path=path)
    if hint is bool:
        if not isinstance(value, bool):
            raise _Bad(f"{value!r} is not a boolean (write true or false)")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"{value!r} is not an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(f"{value!r} is not a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _Bad(f"{value!r} is not a string")
        return value
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
            raise _Bad(f"{value!r} is not one of {', '.join(repr(c) for c in choices)}")
        return value
    if hint in (tuple, list) or origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Bad(f"{value!r} is not a list ({_describe(hint)})")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length: tuple[float, float]
            if len(value) != len(args):
                raise _Bad(f"{list(value)!r} has {len(value)} values, {_describe(hint)} expected")
            elem = list(args)
        else:
            elem = [args[0] if args else typing.Any] * len(value)
        out = []
        for k, (v, h) in enumerate(zip(value, elem)):
            if h is typing.Any:
                if isinstance(v, dict):
                    raise _Bad(f"element {k + 1}: a table is not allowed here")
                out.append(v)
                continue
            try:
                out.append(_convert(v, h, f"{key}[{k}]", path))
            except _Bad as err:
                raise _Bad(f"element {k + 1} of {list(value)!r}: {err}") from None
        return tuple(out) if (hint is tuple or origin is tuple) else out
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise _Bad(f"{value!r} is not a table")
        return dict(value)
    if hint is typing.Any or hint is object:
        return value
    raise TypeError(f"{key}: mtpjax.config cannot check the type {hint!r}")


def _error(key: str, message: str, path) -> ConfigError:
    err = ConfigError(key, message, None if path is None else Path(path))
    return err


def from_dict(cls, data, *, prefix: str = "", path=None, _overrides: dict | None = None):
    """An instance of the dataclass ``cls`` from the TOML table ``data`` (missing keys take their defaults).

    Every value is checked against its field's annotation and the field's ``check``; nested dataclass fields are
    sections (tables), ``flatten`` ones take their keys from ``data`` itself. ``prefix``: the dotted key of ``data``
    ("fit."), for messages. ``path``: the file ``data`` came from, named in every message. Raises ConfigError
    whose ``field`` is the dotted key at fault. After building, the instance's ``check_config()`` (if any) runs.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _error(prefix.rstrip(".") or "config", f"must be a table, got {data!r}", path)
    known = _flat_keys(cls, _overrides)
    unknown = [k for k in data if k not in known]
    if unknown:
        raise _error(f"{prefix}{unknown[0]}", f"unknown key (known: {', '.join(known)})", path)
    kw = {}
    for fd in fields(cls, _overrides):
        if fd.meta.get("flatten"):
            sub = {k: v for k, v in data.items() if k in _flat_keys(fd.hint, fd.meta.get("fields"))}
            if sub:  # else the default (a factory's fresh instance)
                kw[fd.name] = from_dict(fd.hint, sub, prefix=prefix, path=path, _overrides=fd.meta.get("fields"))
            continue
        if fd.key not in data:
            continue
        value = data[fd.key]
        try:
            value = _convert(value, fd.hint, prefix + fd.key, path)
            value = _checked(value, fd.meta.get("check"))
        except _Bad as err:
            raise _error(prefix + fd.key, str(err), path) from None
        except ConfigError:
            raise
        except ValueError as err:  # a check's problem ("must be at least 1 (got 0)")
            raise _error(prefix + fd.key, str(err), path) from None
        kw[fd.name] = value
    obj = cls(**kw)
    check = getattr(obj, "check_config", None)
    if check is not None:
        try:
            check()
        except ConfigError as err:  # a field relative to this class: prefix it with the section's key, name the file
            raise _error(prefix + err.field, str(err)[len(err.field) + 2:], path) from None
    return obj


def _checked(value, check):
    """``value`` through the field's ``check`` (each element of a list); None is not checked."""
    if check is None or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return type(value)(check(v) for v in value)
    return check(value)


def resolve_paths(cls, data: dict, base, _overrides=None) -> dict:
    """``data`` with the values of ``cls``'s ``path`` fields (flattened ones included) made relative to the folder
    ``base`` (a config file's folder); others as they are."""
    base = Path(base)
    out = dict(data)
    for fd in fields(cls, _overrides):
        value = data.get(fd.key)
        if fd.meta.get("flatten"):
            out.update(resolve_paths(fd.hint, {k: v for k, v in data.items() if k in _flat_keys(fd.hint, fd.meta.get("fields"))},
                                     base, fd.meta.get("fields")))
        elif fd.meta.get("path") and isinstance(value, str):
            out[fd.key] = str(base / value)
        elif fd.meta.get("path") and isinstance(value, list):
            out[fd.key] = [str(base / v) if isinstance(v, str) else v for v in value]
    return out


def layer(cls, data, *, path=None, prefix: str = "") -> dict:
    """The table ``data`` checked against ``cls`` (errors name ``path`` and the key; see :func:`from_dict`), with its
    path fields made relative to ``path``'s folder: one layer for :func:`layered`, holding only the keys it sets."""
    from_dict(cls, data, prefix=prefix, path=path)
    return resolve_paths(cls, data, Path(path).parent) if path is not None else dict(data)


def load(cls, path, table: str | None = None):
    """``cls`` from the TOML file ``path`` (its ``[table]`` when given; a missing table is empty), path fields
    resolved relative to the file. Raises FormatError (no such file, bad TOML) or ConfigError naming the file."""
    from .io.tomlfile import read_toml

    path = Path(path)
    data = read_toml(path)
    prefix = ""
    if table is not None:
        data = data.get(table, {})
        prefix = table + "."
    return from_dict(cls, layer(cls, data, path=path, prefix=prefix), prefix=prefix, path=path)


def layered(cls, *layers: dict, prefix: str = ""):
    """``cls`` from dicts of keys, later layers overriding earlier ones (config file, then command line); keys in no
    layer take the dataclass default. Each layer should be checked on its own first (its errors name its source)."""
    merged = {}
    for layer in layers:
        merged.update(layer)
    return from_dict(cls, merged, prefix=prefix)


# ---------------------------------------------------------------------------------------------------------
# the command line


def option_name(key: str) -> str:
    """The command-line option of a key: ``--max-steps`` for ``max_steps``."""
    return "--" + key.replace("_", "-")


def field_help(cls, name: str, meta: dict | None = None) -> str:
    """The help of field ``name`` of ``cls``: ``meta``'s (or the field's metadata's) ``help``, else the
    ``# comment`` after it in the class's source (in the class itself or a base class), else ""."""
    if meta is None:
        meta = next((f.metadata for f in dataclasses.fields(cls) if f.name == name), {})
    if "help" in meta:
        return meta["help"]
    for klass in cls.__mro__:
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        m = re.search(rf"^\s+{re.escape(name)}\s*:[^\n#]*#\s*(.+)$", src, re.M)
        if m:
            return m.group(1).strip()
    return ""


def _arg_type(hint, check, key):
    """argparse ``type=`` for one value of type ``hint`` (a text converter that raises ArgumentTypeError)."""
    import argparse

    def convert(text):
        try:
            if check is not None:
                value = check(text)
            elif hint is int:
                value = int(text)
            elif hint is float:
                value = float(text)
            else:
                value = text
            return _convert(value, hint, key, None)
        except (ValueError, TypeError) as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = {int: "int", float: "float"}.get(hint, "value")
    return convert


def add_options(parser, cls, *, exclude=(), positional=(), names=None, _overrides=None) -> list[str]:
    """Add an option per field of the dataclass ``cls`` to the argparse ``parser`` (flattened sections' fields
    too, not other sections); returns the keys (each option's ``dest`` is its key). Every option's default is None,
    so that :func:`given` finds what the command line set, and a config file and the dataclass fill in the rest.

    ``exclude``: keys without an option; ``positional``: keys that are positional arguments (any number of values);
    ``names``: extra option strings per key (``{"output": ["-o"]}``). Help comes from :func:`field_help`, with the
    default appended; booleans are ``--flag / --no-flag``; lists take several values; ``Literal`` types are
    choices; a field's ``check`` converts and checks each value (argparse's usage error names the option).
    """
    import argparse

    names = names or {}
    out = []
    for fd in fields(cls, _overrides):
        if fd.meta.get("flatten"):
            out += add_options(parser, fd.hint, exclude=exclude, positional=positional, names=names,
                               _overrides=fd.meta.get("fields"))
            continue
        if fd.key in exclude or dataclasses.is_dataclass(_optional(fd.hint)[0]):
            continue
        inner, _ = _optional(fd.hint)
        help_text = field_help(cls, fd.name, fd.meta)
        default = _default(fd.field)
        if default not in (dataclasses.MISSING, None, "", ()) and "default" not in help_text:
            shown = " ".join(map(str, default)) if isinstance(default, (tuple, list)) else default
            help_text += f" (default {str(shown).lower() if isinstance(shown, bool) else shown})"
        kw = {"default": None, "help": help_text.replace("%", "%%") or None}
        origin = typing.get_origin(inner)
        elem = inner
        if inner in (tuple, list) or origin in (tuple, list):
            args = typing.get_args(inner)
            elem = args[0] if args else str
            fixed = origin is tuple and args and args[-1] is not Ellipsis
            kw["nargs"] = len(args) if fixed else "+" if default is None else "*"
        if typing.get_origin(elem) is typing.Literal:
            kw["choices"] = list(typing.get_args(elem))
        elif elem is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _arg_type(elem, fd.meta.get("check"), fd.key)
        if fd.key in positional:  # absent from the namespace when not given (a config file may give it)
            kw.update(nargs="*", default=argparse.SUPPRESS)
            parser.add_argument(fd.key, **kw)
        else:
            parser.add_argument(option_name(fd.key), *names.get(fd.key, ()), dest=fd.key, **kw)
        out.append(fd.key)
    return out


def flat_values(obj, _overrides=None) -> dict:
    """``{key: value}`` of a dataclass instance, flattened sections' keys included (their TOML keys and option
    dests); nested sections stay instances."""
    out = {}
    for fd in fields(type(obj), _overrides):
        value = getattr(obj, fd.name)
        if fd.meta.get("flatten"):
            out.update(flat_values(value, fd.meta.get("fields")))
        else:
            out[fd.key] = value
    return out


def given(args, dests) -> dict:
    """The options of ``dests`` that the command line set (not None): ``{key: value}``, lists as lists."""
    out = {}
    for dest in dests:
        value = getattr(args, dest, None)
        if value is not None:
            out[dest] = list(value) if isinstance(value, tuple) else value
    return out
