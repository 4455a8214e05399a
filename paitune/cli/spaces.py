"""``paitune spaces list|show NAME|check FILE``: the packaged search spaces and space validation."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("spaces", help="list, show or check search spaces")
    sub = parser.add_subparsers(dest="spaces_command", required=True, parser_class=type(parser))
    sub.add_parser("list", help="the presets that ship with paitune").set_defaults(func=run_list)
    show = sub.add_parser("show", help="print a preset's YAML")
    show.add_argument("name", help="preset name")
    show.set_defaults(func=run_show)
    check = sub.add_parser("check", help="validate a space (YAML file or preset) and summarize it")
    check.add_argument("file", help="YAML file or preset name")
    check.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override, as in `paitune sweep`"
    )
    check.set_defaults(func=run_check)
    parser.set_defaults(func=run_list)
    return parser


def run_list(args) -> int:
    from paitune.spaces import list_presets, load_space

    for name in list_presets():
        print(f"{name:<12} {load_space(name).description}")
    return 0


def run_show(args) -> int:
    from paitune.spaces import preset_text

    print(preset_text(args.name), end="")
    return 0


def describe(space) -> list[str]:
    """A few lines saying what a valid space searches."""
    from paitune.spaces.schema import Categorical, Fixed, FloatRange, IntRange

    lines = [f"space {space.name}: {space.description}".rstrip(": ")]
    for name, p in space.params.items():
        if isinstance(p, Categorical):
            what = f"one of {p.choices}"
        elif isinstance(p, (FloatRange, IntRange)):
            what = f"{p.type} in [{p.low}, {p.high}]" + (" (log)" if p.log else "")
        elif isinstance(p, Fixed):
            what = f"fixed {p.value!r}"
        when = f" when {p.when}" if p.when else ""
        lines.append(f"  {name}: {what}{when}")
    if space.allocation_search is not None:
        lines.append(f"  allocation searched: family {space.allocation_search.family}")
    from paitune.spaces.compile import compile_space

    compiled = compile_space(space)
    arms = compiled.control_arms
    lines.append(
        f"  context: {', '.join(compiled.context_keys)} ({len(compiled.contexts())} contexts, each covered; "
        "the other parameters are the choices compared within a context)"
    )
    references = compiled.dense_references()
    if references:
        from paitune.spaces.context import reference_keys

        keys = ", ".join((*reference_keys(compiled.context_keys), "seed"))
        lines.append(f"  dense references: {len(references)} (the unpruned model, one per {keys})")
    if arms:
        lines.append(
            f"  control arms: {', '.join(arms)} (each sampled trial also runs with each, as its paired control)"
        )
    lines.append(f"  seeds {space.seeds}; scheduler {space.scheduler.type}; objectives "
                 + ", ".join(f"{o.metric} ({o.mode})" for o in space.objectives)
                 + f"; {space.num_samples} sampled trials by default")  # fmt: skip
    return lines


def run_check(args) -> int:
    from paitune.search.combinations import check_combinations
    from paitune.spaces import compile_space, load_space
    from paitune.spaces.feasibility import check_buildable, unbuildable

    space = load_space(args.file, args.sets)
    check_combinations(compile_space(space))  # a config a trial would reject: one line, exit 2
    check_buildable(space)  # a model no trial can build, or an allocation map that misses its layers
    print("\n".join(describe(space)))
    for line in unbuildable(space):  # a model-dependent limit of a rule: those trials fail, the rest run
        print(f"note: {line}")
    print("ok")
    return 0
