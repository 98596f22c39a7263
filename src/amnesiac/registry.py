"""A small name registry that refuses silent overwrites and suggests close names.

>>> reg = Registry("colour")
>>> _ = reg.register("red", 1)
>>> reg.get("red")
1
>>> reg.get("rde")
Traceback (most recent call last):
...
amnesiac.errors.UnknownNameError: unknown colour 'rde'; choose one of: red. Did you mean 'red'?
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ConfigError, UnknownNameError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (factories, classes, functions) with one-line descriptions."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, obj: T, *, help: str = "", replace: bool = False) -> T:
        """Add ``obj`` under ``name``; a name already taken is refused unless ``replace=True``."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._items and not replace:
            raise ConfigError(
                f"a {self.kind} named {name!r} is already registered; "
                f"pick another name or pass replace=True to overwrite it on purpose"
            )
        self._items[name] = obj
        doc = help or (getattr(obj, "__doc__", None) or "").strip().splitlines()[0:1]
        self._help[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")
        return obj

    def decorator(self, name: str, *, help: str = "") -> Callable[[T], T]:
        """Register the decorated object under ``name``."""

        def wrap(obj: T) -> T:
            self.register(name, obj, help=help)
            return obj

        return wrap

    def get(self, name: str) -> T:
        """The object registered under ``name``; an unknown name raises with a suggestion."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            choices = ", ".join(sorted(self._items))
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {choices}."
                + did_you_mean(str(name), self._items)
            ) from None

    def help(self, name: str) -> str:
        """The one-line description of ``name``."""
        self.get(name)
        return self._help[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
