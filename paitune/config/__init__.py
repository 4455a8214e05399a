"""Configs declared once: each option's type, default, allowed values and help (``Option``)."""

from paitune.config.options import Option, Range, check_value
from paitune.config.trial import (
    COMPONENTS,
    METHOD_OPTION_KEYS,
    NOT_SEARCHABLE,
    TRIAL_DEFAULTS,
    TRIAL_KEYS,
    TRIAL_OPTIONS,
    add_method_keys,
    allocation_label,
    canonical_json,
    component_defaults,
    config_hash,
    method_key,
    method_options,
    resolve_config,
    trial_config,
)

__all__ = [
    "COMPONENTS",
    "METHOD_OPTION_KEYS",
    "NOT_SEARCHABLE",
    "TRIAL_DEFAULTS",
    "TRIAL_KEYS",
    "TRIAL_OPTIONS",
    "Option",
    "Range",
    "add_method_keys",
    "allocation_label",
    "canonical_json",
    "check_value",
    "component_defaults",
    "config_hash",
    "method_key",
    "method_options",
    "resolve_config",
    "trial_config",
]
