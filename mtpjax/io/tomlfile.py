"""Reading TOML config files with errors that name the file."""
from __future__ import annotations

import tomllib
from pathlib import Path

from ..errors import FormatError


def read_toml(path) -> dict:
    """The parsed TOML file ``path``; a missing file or bad TOML is a :class:`FormatError` naming the file."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FormatError("no such config file", path) from None
    except tomllib.TOMLDecodeError as err:
        raise FormatError(f"not valid TOML: {err}", path) from None
