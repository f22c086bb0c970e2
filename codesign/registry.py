"""One registry per kind of plugin: rule families, losses, stimuli, backends, samplers, objectives,
hardware engines.

A plugin registers itself where it is defined (``@SAMPLERS.register("cmaes")``); the package that
defines the kind imports its plugin modules, so a registry is full once its package is imported.
Looking up an unknown name raises :class:`~codesign.errors.UnknownNameError`, which lists the known
names; nothing outside a plugin's own module chooses by its name.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, Mapping, TypeVar

from codesign.errors import UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Plugins of one kind by name, in the order they registered.

    Parameters
    ----------
    kind
        What a plugin is, for error messages ("sampler", "loss").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._plugins: dict[str, T] = {}

    def register(self, name: str, plugin: T | None = None) -> Callable[[T], T] | T:
        """Register ``plugin`` under ``name``; without ``plugin``, a decorator that registers what it decorates.

        A name registers once: a second plugin of the same name is a programming error.
        """
        def add(item: T) -> T:
            if name in self._plugins:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._plugins[name] = item
            return item

        return add if plugin is None else add(plugin)

    def get_named(self, name: str, **where: str | None) -> T:
        """The plugin ``name``; an unknown name raises an error naming ``where`` (file, key) and the known ones."""
        try:
            return self._plugins[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, list(self._plugins), **where) from None

    def __getitem__(self, name: str) -> T:
        return self.get_named(name)

    def get(self, name: str, default: T | None = None) -> T | None:  # type: ignore[override]
        return self._plugins.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._plugins

    def __iter__(self) -> Iterator[str]:
        return iter(self._plugins)

    def __len__(self) -> int:
        return len(self._plugins)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._plugins)})"
