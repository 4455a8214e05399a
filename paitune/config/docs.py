"""docs/config.md, generated from the declared options: ``python -m paitune.config.docs > docs/config.md``.

A test compares the file with this output, so the documented options, defaults and allowed values
are always the ones the code checks.
"""

from __future__ import annotations

from dataclasses import MISSING

from paitune.config.options import Option, method_option_of
from paitune.config.sweep import option_fields
from paitune.config.trial import COMPONENTS

_INTRO = """# Configuration reference

Generated from `paitune/config/` (`python -m paitune.config.docs > docs/config.md`); a test keeps it
in step with the code.

## Trial options

A trial config is a flat mapping of these options. A space sets them under `settings:` or searches
them under `params:` (the key is the option's name); `paitune prune` and `paitune proxies` take the
data, model, pruning and run options as flags (`--prune-batch-size` for `prune_batch_size`);
`paitune proxies` scores the dense model unless `--sparsity` is given. An option that names only
some methods under *read by* is held at its default for every other method.
"""


def _allowed(option: Option) -> str:
    declared = method_option_of(option)
    if declared is not None:
        return f"{_allowed(declared)}, or unset: the method's default {_default(declared.default)}"
    if option.kind in ("name", "names", "allocation"):
        names = ", ".join(f"`{n}`" for n in option.allowed())
        return names + (", or `{layer: density}`" if option.kind == "allocation" else "")
    if option.kind == "floats":
        each = f", each {option.range.text()}" if option.range is not None else ""
        return f"strictly increasing{each}"
    if option.range is not None:
        text = option.range.text()
        return text + (", or unset" if option.nullable else "")
    if option.kind == "path":
        return "a path, or unset"
    return "positive sizes" if option.kind == "shape" else ""


def _default(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list):
        return f"`{value}`" if value else "`[]`"
    return f"`{value}`"


def _kind(option: Option) -> str:
    kinds = {"name": "name", "names": "list of names", "shape": "list of sizes", "floats": "list of numbers",
             "allocation": "name or mapping"}  # fmt: skip
    return kinds.get(option.kind, option.kind)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _help(option: Option) -> str:
    declared = method_option_of(option)
    if declared is not None:
        return f"{option.method_option.split(':')[0]}: {declared.help} ([methods.md](methods.md))"
    return option.help


def render() -> str:
    lines = [_INTRO]
    for component, options in COMPONENTS.items():
        lines += [
            f"### {component}",
            "",
            "| option | type | default | allowed | read by | meaning |",
            "|---|---|---|---|---|---|",
        ]
        for o in options:
            read_by = ", ".join(o.used_by) if o.used_by else "all"
            if o.method_option is not None:
                read_by = f"{o.method_option.split(':')[0]} (also as init_method)"
            searchable = "" if o.not_searchable is None else " Not searchable."
            lines.append(
                f"| `{o.name}` | {_kind(o)} | {_default(o.default)} | {_cell(_allowed(o))} | {read_by} | "
                f"{_cell(_help(o))}.{searchable} |"
            )
        lines.append("")
    lines += ["## Sweep options", "", "The flags of `paitune sweep` (`SweepOptions`).", "",
              "| flag | default | meaning |", "|---|---|---|"]  # fmt: skip
    for f in option_fields():
        flag = f.metadata["flag"] or ("SPACE" if f.name == "space" else "--" + f.name.replace("_", "-"))
        default = f.default if f.default is not MISSING else f.default_factory()
        lines.append(f"| `{flag}` | {_default(default)} | {_cell(f.metadata['help'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
