"""A small name -> class registry shared by backends and predictors (no I/O at import)."""

from __future__ import annotations

__all__ = ["Registry"]


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

    def create(self, name: str, **kwargs):
        """An instance of the class registered as ``name``."""
        if name not in self._classes:
            raise ValueError(f"unknown {self.what} {name!r}; known: {', '.join(self.names())}")
        return self._classes[name](**kwargs)
