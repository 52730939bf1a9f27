"""Typed, layered job configs: dataclass defaults → preset/TOML file → ``key=value`` overrides.

Each component owns a small keyword-only dataclass; a job's config nests them. Overrides are
dotted paths (``optim.lr=0.5``); a bare name that is not a top-level field is accepted when it
names exactly one nested field (``max_steps=20`` → ``train.max_steps``). Values are parsed and
type-checked against the field's annotation; an unknown key is an error that names it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

PRESETS = Path(__file__).resolve().parent / "presets"


class ConfigError(ValueError):
    """A config key or value a user gave is wrong; the message says which and why."""


def field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_config(tp) -> bool:
    return dataclasses.is_dataclass(tp) and isinstance(tp, type)


def _leaf_paths(cls, prefix: str = "") -> dict[str, Any]:
    paths = {}
    for name, tp in field_types(cls).items():
        if _is_config(tp):
            paths.update(_leaf_paths(tp, f"{prefix}{name}."))
        else:
            paths[f"{prefix}{name}"] = tp
    return paths


def resolve_key(cls, key: str) -> str:
    """The full dotted path for ``key``, or a ConfigError naming it (with close matches)."""
    paths = _leaf_paths(cls)
    if key in paths:
        return key
    suffix_matches = [p for p in paths if p.endswith("." + key)]
    if len(suffix_matches) == 1:
        return suffix_matches[0]
    if len(suffix_matches) > 1:
        raise ConfigError(f"config key {key!r} is ambiguous: say one of {', '.join(sorted(suffix_matches))}")
    close = difflib.get_close_matches(key, list(paths), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"unknown config key {key!r}{hint}")


def parse_value(text: str, tp, key: str):
    """Parse a command-line string as the annotated type (int, float, bool, str, Path, tuples, Optional)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null", "") and type(None) in args:
            return None
        (tp,) = [a for a in args if a is not type(None)]
        return parse_value(text, tp, key)
    if origin is typing.Literal:
        if text not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}, not {text!r}")
        return text
    if origin is tuple:
        return tuple(parse_value(part.strip(), args[0], key) for part in text.split(",") if part.strip())
    if tp is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} must be true or false, not {text!r}")
    try:
        value = Path(text) if tp is Path else tp(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be {_kind(tp)}, not {text!r}") from None
    return _finite(value, key)


def _kind(tp) -> str:
    return {int: "a whole number", float: "a number", str: "text", Path: "a path"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _finite(value, key: str):
    """No setting takes NaN or infinity: a NaN learning rate trains nothing and says nothing."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, not {value}")
    return value


def _check_toml_value(value, tp, key: str):
    """TOML values are typed already; accept ints for floats and strings for paths."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        (tp,) = [a for a in args if a is not type(None)]
    if typing.get_origin(tp) is tuple:
        return tuple(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, float):
        return _finite(value, key)
    if tp is Path and isinstance(value, str):
        return Path(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key} must be {_kind(tp)}, not {value!r}")
    return value


def _set(tree: dict, path: str, value) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _flatten(table: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def build(cls, tree: dict):
    """Instantiate nested dataclasses from a nested dict of already-typed values."""
    kwargs = {}
    for name, tp in field_types(cls).items():
        if name in tree:
            kwargs[name] = build(tp, tree[name]) if _is_config(tp) else tree[name]
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def load_config(cls, *, files: list[Path] = (), overrides: list[str] = ()):
    """Defaults, then each TOML file in order, then ``key=value`` overrides; validated."""
    paths, tree = _leaf_paths(cls), {}
    for file in files:
        try:
            table = tomllib.loads(Path(file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"{file}: {err}") from err
        for key, value in _flatten(table).items():
            full = resolve_key(cls, key)
            _set(tree, full, _check_toml_value(value, paths[full], f"{file}: {key}"))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        full = resolve_key(cls, key.strip())
        _set(tree, full, parse_value(text.strip(), paths[full], full))
    return build(cls, tree)


def preset_file(job: str, preset: str) -> Path:
    path = PRESETS / f"{job}-{preset}.toml"
    if not path.is_file():
        known = sorted(p.stem.removeprefix(f"{job}-") for p in PRESETS.glob(f"{job}-*.toml"))
        raise ConfigError(f"no preset {preset!r} for {job}; presets: {', '.join(known)}")
    return path


def presets_of(job: str) -> list[str]:
    return sorted(p.stem.removeprefix(f"{job}-") for p in PRESETS.glob(f"{job}-*.toml"))
