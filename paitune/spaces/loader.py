"""Loading spaces: YAML files or packaged presets, `--set` overrides, one-line errors.

YAML is parsed with ``yaml.safe_load`` only (no arbitrary objects). Every failure becomes a
``PaituneError`` whose one line names the file and the YAML path of the bad key.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from paitune.config import TRIAL_KEYS
from paitune.errors import PaituneError, unknown_choice
from paitune.spaces.check import check_space
from paitune.spaces.schema import PARAM_TYPES, Space

PRESET_SUFFIX = ".yaml"


def list_presets() -> list[str]:
    """Names of the spaces that ship with paitune."""
    folder = resources.files("paitune.spaces") / "presets"
    return sorted(p.name[: -len(PRESET_SUFFIX)] for p in folder.iterdir() if p.name.endswith(PRESET_SUFFIX))


def preset_text(name: str) -> str:
    if name not in list_presets():
        raise unknown_choice("preset space", name, list_presets())
    return (resources.files("paitune.spaces") / "presets" / f"{name}{PRESET_SUFFIX}").read_text(encoding="utf-8")


def read_space_text(ref: str) -> tuple[str, str]:
    """(text, origin) for a preset name or a YAML file path."""
    path = Path(ref)
    if ref in list_presets() and not path.is_file():
        return preset_text(ref), f"preset {ref}"
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise PaituneError(
                f"space file {ref} does not exist; give a YAML file or one of the presets: {', '.join(list_presets())}"
            )
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as err:
            raise PaituneError(f"cannot read space file {ref}: {err}") from None
    raise unknown_choice("space (preset name or YAML file)", ref, list_presets())


def parse_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise PaituneError(f"{origin}:{where}: invalid YAML: {problem}") from None
    _refuse_duplicate_keys(text, origin)
    if data is None:
        raise PaituneError(f"{origin}: the space is empty; see `paitune spaces show default` for an example")
    if not isinstance(data, dict):
        raise PaituneError(f"{origin}: a space must be a YAML mapping (key: value), got {type(data).__name__}")
    return data


def _refuse_duplicate_keys(text: str, origin: str) -> None:
    """A key written twice in one mapping is a PaituneError: YAML keeps the last value silently,
    so ``epochs: 1`` above ``epochs: 2`` would be dropped without a word. Checked on the safe
    loader's node tree (composing builds no Python object), after ``safe_load`` accepted the text."""
    composer = yaml.SafeLoader(text)
    try:
        root = composer.get_single_node()
    finally:
        composer.dispose()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        line = key.start_mark.line + 1
                        raise PaituneError(f"{origin}: line {line}: key {key.value!r} appears twice in one mapping")
                    seen.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _yaml_path(loc: tuple) -> str:
    # A discriminated union adds the chosen tag (e.g. "float") to the location; users never wrote
    # it, so drop it after a parameter name.
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        after_param = i >= 2 and loc[i - 2] in ("params",) and item in PARAM_TYPES
        after_alloc = i >= 1 and loc[i - 1] == "allocation_search" and item in ("per_layer", "depth")
        if after_param or after_alloc:
            continue
        parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _format_validation_error(err: ValidationError, origin: str) -> PaituneError:
    first = err.errors()[0]
    path = _yaml_path(tuple(first["loc"]))
    kind = first["type"]
    msg = first["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        msg = "unknown key; check its spelling against `paitune spaces show default`"
    elif kind == "union_tag_invalid" or kind == "union_tag_not_found":
        tags = "categorical, float, int, fixed" if "params" in first["loc"] else "per_layer, depth"
        msg = f"{msg}; choose one of: {tags}"
    return PaituneError(f"{origin}: {path}: {msg}")


def build_space(data: dict[str, Any], origin: str) -> Space:
    """Validate a parsed space: schema first, then the cross-field and registry rules."""
    try:
        space = Space.model_validate(data)
    except ValidationError as err:
        raise _format_validation_error(err, origin) from None
    try:
        return check_space(space)
    except PaituneError as err:
        raise PaituneError(f"{origin}: {err}") from None


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply `--set key=value` overrides; values are YAML (`--set sparsity=[0.5,0.9]`).

    A trial config key (``epochs=2``, ``method=snip``) fixes that value under ``settings`` and
    removes it from ``params``; ``params.KEY=...`` searches a trial config key and removes it from
    ``settings``; any other dotted path (``scheduler.grace_period=2``) sets that key.
    """
    out = copy.deepcopy(data)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PaituneError(f"--set {item!r}: expected key=value, e.g. --set epochs=2")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise PaituneError(f"--set {item!r}: the value is not valid YAML") from None
        if key in TRIAL_KEYS and key != "seed":
            out.setdefault("settings", {})
            if not isinstance(out["settings"], dict):
                raise PaituneError(f"--set {item!r}: the space's settings is not a mapping")
            out["settings"][key] = value
            if isinstance(out.get("params"), dict):
                out["params"].pop(key, None)
            continue
        if key == "seed":
            key, value = "seeds", value if isinstance(value, list) else [value]
        parts = key.split(".")
        if (
            len(parts) == 2
            and parts[0] == "params"
            and parts[1] in TRIAL_KEYS
            and isinstance(out.get("settings"), dict)
        ):
            # Searching a key the space fixes: the new parameter replaces the setting.
            out["settings"].pop(parts[1], None)
        node = out
        for part in parts[:-1]:
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise PaituneError(f"--set {item!r}: {part} is not a mapping")
            node = child
        node[parts[-1]] = value
    return out


def load_space(ref: str, overrides: list[str] | None = None) -> Space:
    """Load, override and validate a space given as a preset name or a YAML path."""
    text, origin = read_space_text(ref)
    data = apply_overrides(parse_yaml(text, origin), overrides)
    space = build_space(data, origin)
    if space.name is None:
        space = space.model_copy(update={"name": Path(ref).stem})
    return space


def load_space_text(text: str, origin: str = "space") -> Space:
    """Validate a space given as YAML text (for tests and programmatic use)."""
    return build_space(parse_yaml(text, origin), origin)
