"""API keys: random tokens, stored only as salted HMAC-SHA-256 digests, each with its grants.

A token looks like ``ck_<key id>.<secret>``. The key id is public (it names the
key in logs, metrics and namespaced ids); the secret is 32 random bytes. The
keys file stores ``sha256$<salt>$<digest>`` with ``digest = HMAC-SHA-256(salt,
secret)``. A slow password hash (bcrypt, Argon2) protects *low-entropy* secrets
against guessing; a 256-bit random secret cannot be guessed whatever the hash
costs, so a fast keyed hash is as safe here and keeps a request's
authentication in the microseconds. The per-key salt makes every digest
unique, so a leaked file reveals nothing by comparison across keys or
deployments.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from choreokit.events import ConfigurationError, toolkit_namespace

TOKEN_PREFIX = "ck_"  # noqa: S105 - the public prefix of every token, not a secret
HASH_SCHEME = "sha256"
KEY_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
_KEY_ID = re.compile(KEY_ID_PATTERN)
_SECRET_BYTES = 32
_SALT_BYTES = 16
_MAX_TOKEN = 256


_MAX_UNQUOTE_ROUNDS = 4


@functools.lru_cache(maxsize=1024)  # per event, twice, and per grant pattern: pure and hot
def normalise_source(source: str) -> str:
    """The canonical form of a ``source`` URI-reference, as grants are matched against it.

    Percent-encoding is decoded (repeatedly, so ``%252e`` is a dot too), repeated
    slashes are collapsed, and dot segments are resolved as RFC 3986 5.2.4 does,
    never above the root: ``/partners/acme/../../services/orders`` is
    ``/services/orders``, and that is what a grant ``/partners/acme/*`` is asked
    about. A scheme and host (``https://Example.com/x``) are lower-cased and kept.
    """
    text = source
    for _ in range(_MAX_UNQUOTE_ROUNDS):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    parts = urlsplit(text)
    path = _remove_dot_segments(re.sub(r"/{2,}", "/", parts.path))
    if parts.scheme or parts.netloc:
        return urlunsplit(
            (parts.scheme.lower(), parts.netloc.lower(), path, parts.query, parts.fragment)
        )
    return urlunsplit(("", "", path, parts.query, parts.fragment))


def _remove_dot_segments(path: str) -> str:
    absolute = path.startswith("/")
    kept: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if kept:
                kept.pop()
            if last:
                kept.append("")
        elif segment == ".":
            if last:
                kept.append("")
        elif segment or last:
            kept.append(segment)
    joined = "/".join(s for s in kept)
    return "/" + joined.lstrip("/") if absolute else joined


def _matches(patterns: Iterable[str], value: str) -> bool:
    for pattern in patterns:
        if pattern in ("*", value):
            return True
        if pattern.endswith("*") and value.startswith(pattern[:-1]):
            return True
    return False


def _grants_type(patterns: Iterable[str], event_type: str) -> bool:
    """Whether a type grant covers ``event_type``.

    A toolkit type (``approval.*``, ``orchestration.*``, ``saga.*``: reports the
    observer trusts) is covered only by a pattern naming its namespace, the type
    itself or ``approval.*``; ``*`` or ``a*`` does not cover it.
    """
    namespace = toolkit_namespace(event_type)
    if namespace is None:
        return _matches(patterns, event_type)
    return _matches((p for p in patterns if p.startswith(namespace)), event_type)


class ApiKey(BaseModel):
    """One API key's entry: who it is, how to check its secret, and what it may publish.

    Patterns in ``types`` and ``sources`` are exact values, or end in ``*`` to
    match a prefix (``order.*``, ``/partners/acme/*``); ``*`` alone matches all.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=KEY_ID_PATTERN)
    """Public name of the key: lowercase letters, digits and '-', at most 32."""

    hash: str = Field(pattern=r"^sha256\$[A-Za-z0-9_-]+\$[0-9a-f]{64}$")
    """``sha256$<salt>$<hex digest>``, as ``choreo gateway-key create`` prints it."""

    types: tuple[str, ...] = ()
    """Event types the key may publish, in new flows and in flows it started (patterns).

    The toolkit's own report and lifecycle types (``approval.*``, ``orchestration.*``,
    ``saga.*``) are granted only by a pattern naming their namespace (``approval.granted``,
    ``approval.*``), never by ``*`` or another wildcard: the observer trusts them."""

    sources: tuple[str, ...] = ("*",)
    """CloudEvents ``source`` values the key may use (patterns); any by default.

    Both the patterns and the sources sent are compared in their normalised form
    (:func:`normalise_source`), so dot segments cannot climb out of a prefix."""

    starts: tuple[str, ...] = ()
    """Event types the key may publish only to *start* a flow (patterns): such an event
    must not name a ``correlationid`` or ``causationid``. A key whose every grant
    is here can start flows but never continue, end or compensate one."""

    trusted: bool = False
    """A system of ours: its ``traceparent`` continues the trace and its correlation
    ids are used as given. Untrusted keys start a new trace (linking the caller's)
    and have their correlation ids namespaced."""

    rate: PositiveFloat | None = None
    """Requests per second (default: ``CHOREO_GATEWAY_RATE``)."""

    burst: PositiveInt | None = None
    """Requests at once before ``rate`` applies (default: ``CHOREO_GATEWAY_BURST``)."""

    @model_validator(mode="after")
    def _grants_something(self) -> Self:
        if not self.types and not self.starts:
            raise ValueError("a key needs 'types' or 'starts': it could publish nothing")
        return self

    def may_publish(self, event_type: str) -> bool:
        """Whether the key may publish events of ``event_type`` (in any flow, or to start one).

        The toolkit's own types (:data:`~choreokit.events.TOOLKIT_TYPE_NAMESPACES`) need a
        grant that names their namespace: a wildcard does not cover them.
        """
        return _grants_type(self.types, event_type) or _grants_type(self.starts, event_type)

    def may_continue(self, event_type: str) -> bool:
        """Whether the key may publish ``event_type`` in a flow that already exists."""
        return _grants_type(self.types, event_type)

    def reserved_by_wildcard(self, event_type: str) -> bool:
        """Whether only a wildcard grant of the key would cover ``event_type``, a toolkit type."""
        if toolkit_namespace(event_type) is None or self.may_publish(event_type):
            return False
        return _matches(self.types, event_type) or _matches(self.starts, event_type)

    def may_use_source(self, source: str) -> bool:
        """Whether the key may publish events with this ``source`` (compared normalised)."""
        wanted = normalise_source(source)
        for pattern in self.sources:
            if pattern == "*":
                return True
            if pattern.endswith("*"):
                prefix = normalise_source(pattern[:-1]) if pattern[:-1] else ""
                if pattern[:-1].endswith("/") and not prefix.endswith("/"):
                    prefix += "/"
                if wanted.startswith(prefix):
                    return True
            elif wanted == normalise_source(pattern):
                return True
        return False

    def verify(self, secret: str) -> bool:
        """Whether ``secret`` is this key's secret (in constant time)."""
        _, salt, digest = self.hash.split("$")
        return hmac.compare_digest(_digest(salt, secret), digest)


def _digest(salt: str, secret: str) -> str:
    return hmac.new(salt.encode(), secret.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class MintedKey:
    """A new key: the token to hand over once, and the entry to store.

    Attributes:
        token: The bearer token (``ck_<id>.<secret>``); shown once, never stored.
        entry: The key's entry for the keys file; holds only a digest of the secret.
    """

    token: str
    entry: ApiKey


def mint_key(
    key_id: str,
    *,
    types: Sequence[str] = (),
    sources: Sequence[str] = ("*",),
    starts: Sequence[str] = (),
    trusted: bool = False,
    rate: float | None = None,
    burst: int | None = None,
) -> MintedKey:
    """Create a key with a fresh random secret.

    Raises:
        ConfigurationError: The id or the grants are not valid.
    """
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    salt = base64.urlsafe_b64encode(secrets.token_bytes(_SALT_BYTES)).decode().rstrip("=")
    try:
        entry = ApiKey(
            id=key_id,
            hash=f"{HASH_SCHEME}${salt}${_digest(salt, secret)}",
            types=tuple(types),
            sources=tuple(sources),
            starts=tuple(starts),
            trusted=trusted,
            rate=rate,
            burst=burst,
        )
    except ValidationError as exc:
        raise ConfigurationError(f"invalid key: {_describe(exc)}") from None
    return MintedKey(token=f"{TOKEN_PREFIX}{key_id}.{secret}", entry=entry)


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )


class KeyStore:
    """The configured keys, looked up by the id inside a presented token."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys: dict[str, ApiKey] = {}
        for key in keys:
            if key.id in self._keys:
                raise ConfigurationError(f"API key id {key.id!r} is configured twice")
            self._keys[key.id] = key
        # Unknown ids cost one digest too, so timing does not tell which ids exist.
        self._decoy = mint_key("decoy", types=("*",)).entry

    def __len__(self) -> int:
        return len(self._keys)

    def ids(self) -> tuple[str, ...]:
        """The configured key ids, sorted."""
        return tuple(sorted(self._keys))

    def entries(self) -> tuple[ApiKey, ...]:
        """The configured keys, by id (``choreo topics acls`` grants the topics they may write)."""
        return tuple(self._keys[key_id] for key_id in sorted(self._keys))

    def authenticate(self, token: str) -> ApiKey | None:
        """Return the key whose token this is, or ``None``."""
        if len(token) > _MAX_TOKEN or not token.startswith(TOKEN_PREFIX):
            return None
        key_id, dot, secret = token[len(TOKEN_PREFIX) :].partition(".")
        if not dot or not secret:
            return None
        key = self._keys.get(key_id)
        if key is None:
            self._decoy.verify(secret)
            return None
        return key if key.verify(secret) else None

    @classmethod
    def parse(cls, text: str, *, origin: str) -> list[ApiKey]:
        """Read key entries from YAML or JSON text: a list, or a mapping with ``keys:``.

        Raises:
            ConfigurationError: The text is not a valid keys document.
        """
        try:
            doc: Any = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{origin}: not YAML or JSON ({exc})") from None
        if isinstance(doc, dict):
            doc = doc.get("keys")
        if not isinstance(doc, list):
            raise ConfigurationError(
                f"{origin}: expected a list of keys, or a mapping with 'keys:'; "
                "see 'choreo gateway-key create --help'"
            )
        entries = []
        for number, item in enumerate(doc):
            try:
                entries.append(ApiKey.model_validate(item))
            except ValidationError as exc:
                raise ConfigurationError(
                    f"{origin}: key #{number + 1} is invalid: {_describe(exc)}"
                ) from None
        return entries

    @classmethod
    def load(cls, *, file: Path | None, inline: str | None) -> KeyStore:
        """Load the keys of a file and of inline text (both may be given).

        Raises:
            ConfigurationError: Neither is given, one cannot be read, or no key is left.
        """
        keys: list[ApiKey] = []
        if file is not None:
            try:
                text = file.read_text()
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read the keys file {file} ({exc.strerror}); "
                    "check CHOREO_GATEWAY_KEYS_FILE"
                ) from None
            keys += cls.parse(text, origin=str(file))
        if inline:
            keys += cls.parse(inline, origin="CHOREO_GATEWAY_KEYS")
        if not keys:
            raise ConfigurationError(
                "the gateway has no API keys, so it could accept nothing; set "
                "CHOREO_GATEWAY_KEYS_FILE or CHOREO_GATEWAY_KEYS "
                "('choreo gateway-key create' makes one)"
            )
        return cls(keys)


def entry_document(entry: ApiKey) -> dict[str, Any]:
    """The key's entry as it goes into a keys file (defaults left out)."""
    return entry.model_dump(mode="json", exclude_defaults=True)
