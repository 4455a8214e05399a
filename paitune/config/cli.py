"""Command-line flags derived from declared options: ``--name-with-dashes`` per option.

Flags are parsed as text and converted by ``values_from_args``, so a bad value is a one-line
``PaituneError`` (exit status 2) like every other bad input, not argparse's usage dump. The help of
a name option lists the registry's names when help is shown, so building the parser imports no
registry.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from paitune.config.options import Option
from paitune.config.trial import TRIAL_OPTIONS
from paitune.errors import PaituneError


def flag(option: Option) -> str:
    return "--" + option.name.replace("_", "-")


class OptionHelpFormatter(argparse.HelpFormatter):
    """Help lines of declared options: their help, the names they allow, their default."""

    def _get_help_string(self, action) -> str:
        lazy = getattr(action, "lazy_help", None)  # text that needs a registry: built when help is shown
        if lazy is not None:
            return lazy().replace("%", "%%")
        option: Option | None = getattr(action, "declared_option", None)
        if option is None:
            return super()._get_help_string(action)
        text = option.help
        if option.kind in ("name", "names", "allocation"):
            text += f"; one of: {', '.join(option.allowed())}"
        if option.kind == "allocation":
            text += ", or a JSON file {layer: density}"
        # A subcommand may set its own default (``set_defaults``): the help says that one.
        default = option.default if action.default is None else action.default
        default = ",".join(map(str, default)) if isinstance(default, list) else default
        return f"{text} (default: {default})".replace("%", "%%")


def add_option_arguments(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    for option in options:
        action = parser.add_argument(flag(option), dest=option.name, default=None, help=option.help)
        action.declared_option = option


def parse_text(option: Option, text: str, *, where: str | None = None) -> Any:
    """A value of ``option`` from command-line text; ``where`` names it in errors (default: its flag)."""
    where = where or f"{flag(option)} {text!r}"
    if option.kind == "int":
        try:
            return int(text)
        except ValueError:
            raise PaituneError(f"{where}: {option.name} must be an integer") from None
    if option.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise PaituneError(f"{where}: {option.name} must be a number") from None
    if option.kind == "bool":
        if text.lower() not in ("true", "false"):
            raise PaituneError(f"{where}: {option.name} must be true or false")
        return text.lower() == "true"
    if option.kind == "shape":
        try:
            return [int(v) for v in text.split(",")]
        except ValueError:
            raise PaituneError(f"{where}: {option.name} must be comma-separated integers like 3,32,32") from None
    if option.kind == "names":
        return [v.strip() for v in text.split(",") if v.strip()]
    if option.kind == "floats":
        try:
            return [float(v) for v in text.split(",")]
        except ValueError:
            raise PaituneError(f"{where}: {option.name} must be comma-separated numbers like 0.5,0.75") from None
    if option.kind == "allocation" and text.endswith(".json"):
        return _allocation_file(text)
    return text


def _allocation_file(value: str) -> dict:
    path = Path(value)
    if not path.is_file():
        raise PaituneError(f"allocation file {value} not found; pass a scheme name or a JSON file {{layer: density}}")
    try:
        densities = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PaituneError(f"allocation file {value} is not valid JSON ({err.msg}, line {err.lineno})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise PaituneError(f"allocation file {value} cannot be read as UTF-8 JSON text: {err}") from None
    if not isinstance(densities, dict):
        raise PaituneError(f"allocation file {value} must hold a JSON object {{layer: density}}")
    return densities


def values_from_args(args: argparse.Namespace, options: Iterable[Option]) -> dict[str, Any]:
    """The options given on the command line, converted; options left out are absent (defaults apply)."""
    values = {}
    for option in options:
        text = getattr(args, option.name, None)
        if text is not None:
            values[option.name] = parse_text(option, text)
    return values


def trial_options(*components: str) -> list[Option]:
    return [o for o in TRIAL_OPTIONS.values() if o.component in components]
