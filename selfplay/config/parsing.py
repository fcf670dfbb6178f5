"""A config as text, before it is a `Config`: YAML read with every key given once, and `key=value`
overrides parsed and set into it by their dotted keys."""

from __future__ import annotations

from typing import Any

import yaml

from envs.files import MAX_DEPTH, too_deep


class ConfigError(ValueError):
    """A configuration that cannot be run; the message names the file and the key."""


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """`data["a"]["b"] = value` for `dotted` "a.b", making sections on the way."""
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """`["a.b=3", "c=x"]` -> `[("a.b", 3), ("c", "x")]`, values parsed as YAML scalars."""
    out = []
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value (e.g. transcripts.games=100)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
            deep = too_deep(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from None
        except RecursionError:
            deep = True
        if deep:
            raise ConfigError(f"override {key.strip()!r}: value nested more than {MAX_DEPTH} levels deep")
        out.append((key.strip(), value))
    return out


class DuplicateKey(yaml.YAMLError):
    """A key given twice in one YAML mapping."""


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (where the last would silently win)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKey(f"key {key!r} is given twice (lines {seen[key]} and {line})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)
