"""The one exception type for bad user input.

Everything a user can get wrong (an unknown method, a sparsity outside [0, 1), a malformed space,
a missing data root) raises ``PaituneError`` with one line naming the problem and the fix. The CLI
turns it into that line on stderr and exit status 2; library users catch it like a ValueError.
"""


class PaituneError(ValueError):
    """Bad input: the message is one line that names the problem and how to fix it."""


def unknown_choice(kind: str, value: object, choices) -> PaituneError:
    """The error for a value that is not one of a fixed set of choices."""
    listed = ", ".join(sorted(str(c) for c in choices))
    return PaituneError(f"unknown {kind} {value!r}; choose one of: {listed}")
