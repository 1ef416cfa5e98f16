"""Exceptions raised for bad input. Each message names the file, line or structure at fault."""


class MtpjaxError(Exception):
    """Base class of all mtpjax input errors."""


class FormatError(MtpjaxError, ValueError):
    """A malformed file. ``path`` and ``line`` (1-based, may be None) locate the fault."""

    def __init__(self, message: str, path=None, line=None):
        self.path, self.line, self.reason = path, line, message
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)


class ConfigError(MtpjaxError, ValueError):
    """A bad configuration value; the message starts with the field at fault (``fit.level: ...``).

    ``field`` is the dotted key; ``path`` the file it came from, or None (then the message names no file).
    """

    def __init__(self, field_name: str, message: str, path=None):
        self.field, self.path = field_name, path
        super().__init__(f"{field_name}: {message}" + (f" (in {path})" if path is not None else ""))


class StructureError(MtpjaxError, ValueError):
    """A structure that cannot be evaluated (NaN positions, singular cell, overlapping atoms, unknown species)."""


class LabelWarning(UserWarning):
    """Training labels that load but look wrong (an outlier energy, huge forces) or come from a non-standard key."""
