"""A small name -> class registry shared by backends and predictors (no I/O at import)."""

from __future__ import annotations

import inspect

from .errors import UsageError

__all__ = ["Registry"]


def _type_ok(value, default) -> bool:
    """Whether ``value`` may replace a parameter whose default is ``default``."""
    if default is None or default is inspect.Parameter.empty:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


class Registry:
    """Classes registered under names, with a factory that names the known ones on a miss.

    Parameters
    ----------
    what : str
        What is registered ("backend", "predictor"), used in error messages.
    name_attr : str
        Class attribute set to the registered name.
    """

    def __init__(self, what: str, name_attr: str):
        self.what, self.name_attr = what, name_attr
        self._classes: dict[str, type] = {}

    def register(self, name: str):
        """Class decorator registering the class under ``name``."""
        def deco(cls):
            if name in self._classes:
                raise ValueError(f"{self.what} {name!r} is already registered")
            setattr(cls, self.name_attr, name)
            self._classes[name] = cls
            return cls
        return deco

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)

    def parameters(self, name: str) -> dict:
        """Constructor parameters of ``name`` and their defaults."""
        cls = self._get(name)
        return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def _get(self, name):
        if name not in self._classes:
            raise UsageError(f"unknown {self.what} {name!r}; known: {', '.join(self.names())}")
        return self._classes[name]

    def create(self, name: str, **kwargs):
        """An instance of the class registered as ``name``.

        Raises
        ------
        UsageError
            For an unknown name, an unknown parameter (listing the known ones) or a value of
            the wrong type (a string where the default is a number, say).
        """
        cls = self._get(name)
        params = self.parameters(name)
        for k, v in kwargs.items():
            if k not in params:
                raise UsageError(f"{self.what} {name!r} has no parameter {k!r}; its parameters: "
                                 f"{', '.join(params)}")
            if not _type_ok(v, params[k]):
                raise UsageError(f"{self.what} {name!r}: {k} = {v!r}; expected "
                                 f"{type(params[k]).__name__} like the default {params[k]!r}")
        return cls(**kwargs)
