"""Model names with mixer configs in them, as the command line and the suites write them:

    mamba2(d_state=32)                                   a pure stack with one Config field set
    gated_deltanet(output_gate=none,head_dim=16)         several fields
    MMMA:M=mamba2(d_state=8),A=attention(d_conv=4)      a pattern, each letter's mixer with its own fields

`parse_name` splits such a name into the model name without configs (what `resolve_model` looks up) and
the per-letter overrides; values are read by the type of the mixer's Config field (`coerce`), so a bad
field or value fails here, naming the fields and their types. `split_models` splits a comma-separated
list of names without breaking a pattern or a parenthesised config apart. `override_label` writes the
short form tables show (`mamba2 d_state=32`).
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from typing import Any

from archbench.archs.registry import ConfigFieldError


def split_models(text: str) -> list[str]:
    """'attention,mamba2(d_state=8,expand=2),MMA:M=mamba2,A=attention' -> three names: commas inside
    parentheses belong to a config, and a comma followed by 'X=' continues the pattern before it (mixer
    and preset names hold no '=')."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    models: list[str] = []
    for part in parts:
        head = part.split("(", 1)[0]
        if models and ":" in models[-1] and "=" in head and len(head.split("=", 1)[0].strip()) == 1:
            models[-1] += f",{part}"
        elif part:
            models.append(part)
    return models


def _call(text: str) -> tuple[str, str | None]:
    """'mamba2(d_state=8)' -> ('mamba2', 'd_state=8'); 'mamba2' -> ('mamba2', None)."""
    text = text.strip()
    if "(" not in text and ")" not in text:
        return text, None
    name, _, rest = text.partition("(")
    if not rest.endswith(")") or "(" in rest[:-1] or ")" in rest[:-1]:
        raise ValueError(f"a mixer with configs looks like 'mamba2(d_state=32,expand=2)', got {text!r}")
    return name.strip(), rest[:-1]


def _fields(text: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (i.strip() for i in text.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ValueError(f"config items look like field=value, got {item!r} in {where!r}")
        out[key.strip()] = value.strip()
    return out


def parse_name(name: str) -> tuple[str, dict[str, dict[str, str]]]:
    """(the name without configs, letter -> {field: raw value}). A plain mixer's letter is 'M', as
    `resolve_model` names a pure stack's; a preset takes no configs in its name."""
    if ":" not in name:
        base, inner = _call(name)
        return base, ({"M": _fields(inner, name)} if inner is not None else {})
    unit, _, letters = name.partition(":")
    mixers, configs = [], {}
    for item in split_models(letters) if letters else []:
        letter, eq, mixer = item.partition("=")
        if not eq:
            raise ValueError(f"a pattern looks like 'MMMA:M=mamba2,A=attention', got {name!r}")
        base, inner = _call(mixer)
        mixers.append(f"{letter.strip()}={base}")
        if inner is not None:
            configs[letter.strip()] = _fields(inner, name)
    return f"{unit}:{','.join(mixers)}", configs


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def field_types(config_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(config_cls)}


def describe_fields(config_cls: type) -> str:
    """'d_state: int, expand: int, ...' — what an error names."""
    return ", ".join(f"{k}: {_type_name(t)}" for k, t in field_types(config_cls).items())


def coerce(config_cls: type, what: str, raw: dict[str, str]) -> dict[str, Any]:
    """The raw strings of `raw` as values of the Config's field types; an unknown field or a value that
    is not of its field's type raises ConfigFieldError naming every field and its type."""
    types_ = field_types(config_cls)
    unknown = sorted(set(raw) - set(types_))
    if unknown:
        raise ConfigFieldError(f"unknown config field(s) {', '.join(map(repr, unknown))} for {what}; "
                               f"valid: {describe_fields(config_cls)}")
    out = {}
    for key, text in raw.items():
        try:
            out[key] = _value(types_[key], text)
        except ValueError:
            raise ConfigFieldError(f"{what}: {key}={text!r} is not of type {_type_name(types_[key])}; "
                                   f"fields: {describe_fields(config_cls)}") from None
    return out


def _value(tp: Any, text: str) -> Any:
    """`text` read as a value of type `tp` (int, float, bool, str, None, a tuple, or a union of them)."""
    if tp is Any:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _value(option, text)
            except ValueError:
                continue
        raise ValueError(text)
    if tp is type(None):
        if text.lower() == "none":
            return None
        raise ValueError(text)
    if tp is bool:
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise ValueError(text)
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    if tp is str:
        return text
    if origin is tuple:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(text) from None
        if not isinstance(value, tuple):
            raise ValueError(text)
        return value
    raise ValueError(text)


def override_label(model: str, mixers: dict[str, str], configs: dict[str, dict[str, Any]],
                   keys: list[str] | None = None) -> str:
    """'mamba2 d_state=32': the model and the config fields it sets (`keys`: only these, written as
    'mixer.field'), the mixer named only where the model has several."""
    items = []
    for letter, cfg in sorted(configs.items()):
        for k, v in sorted(cfg.items()):
            full = f"{mixers.get(letter, letter)}.{k}"
            if keys is None or full in keys:
                items.append(f"{k if len(set(mixers.values())) == 1 else full}={_short(v)}")
    return " ".join([model, *items])


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return ",".join(_short(v) for v in value)
    return str(value)
