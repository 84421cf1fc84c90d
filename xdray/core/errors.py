"""Errors that blame the user's input (config, data, model files) rather than xdray.

The CLI turns every `XdrayError` into a one-line message and exit code 2; anything else is a bug
and keeps its traceback.
"""


class XdrayError(Exception):
    """Bad input: the message names the file, line or key and what was expected."""


class ConfigError(XdrayError):
    """An experiment or search-space file (or a --set override) is invalid."""


class DataError(XdrayError):
    """A data file or data source is invalid."""


class TeacherError(XdrayError):
    """A teacher checkpoint or tokenizer cannot be used with this experiment."""
