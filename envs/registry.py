"""Name -> factory registry for games and reward environments, one namespace for both."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[..., Any] | str] = {}
_KINDS: dict[str, str] = {}  # name -> "game" or "reward"
KINDS = ("game", "reward")


class UnknownEnvError(KeyError):
    """A name that is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def register(
    name: str, factory: Callable[..., Any] | str, *, kind: str | None = None, overwrite: bool = False
) -> None:
    """Make `factory(**options)` available as `envs.make(name, **options)`.

    `factory` may be a callable or a lazy entry point `"package.module:Attribute"` (as in Gymnasium),
    imported on first use. `kind` is "game" or "reward"; by default a `RewardEnv` class is "reward" and
    anything else (a lazy entry point included) a "game".
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"environment name must be a non-empty string, got {name!r}")
    if kind is None:
        kind = "game" if isinstance(factory, str) else getattr(factory, "env_kind", "game")
    if kind not in KINDS:
        raise ValueError(f"environment kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if name in _REGISTRY and not overwrite and _REGISTRY[name] is not factory:
        raise ValueError(f"environment {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory
    _KINDS[name] = kind


def names(kind: str | None = "game") -> list[str]:
    """Registered names of one kind ("game" by default, or "reward"), sorted; `kind=None` lists all."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"environment kind must be one of {', '.join(KINDS)} or None, got {kind!r}")
    return sorted(n for n in _REGISTRY if kind is None or _KINDS[n] == kind)


def make(name: str, **options: Any) -> Any:
    """Build the registered environment `name` with keyword options.

    Every reward environment that shows its work also takes `thinking=True`: its thinking format
    (`envs.thinking`), a scratchpad before the answer.
    """
    try:
        factory = _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownEnvError(f"unknown environment {name!r}; known: {', '.join(names(None))}") from None
    if isinstance(factory, str):
        factory = _REGISTRY[name] = load_entry_point(factory)
    thinking = options.pop("thinking", False) if _KINDS[name] == "reward" else False
    if not isinstance(thinking, bool):
        raise TypeError(f"{name}: option 'thinking' must be true or false, got {thinking!r}")
    _check_options(name, factory, options)
    env = factory(**options)
    if thinking:
        from envs.thinking import Thinking

        env = Thinking(env)
    return env


def load_entry_point(entry_point: str) -> Any:
    """Import `"package.module:Attribute"`."""
    module, _, attr = entry_point.partition(":")
    return getattr(importlib.import_module(module), attr)


def _check_options(name: str, factory: Callable[..., Any], options: dict[str, Any]) -> None:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for environment {name!r}; "
            f"known options: {', '.join(known) or 'none'}"
        )
