"""The event types the toolkit's own components publish, which its saga observer trusts.

Approval decisions (``approval.*``), in-service orchestration reports
(``orchestration.*``) and the saga observer's lifecycle events (``saga.*``) are
reports the observer builds its view from, and other services react to. A system
outside (through the gateway) must not forge them by accident of a broad grant:
the gateway's wildcard grants do not cover these namespaces; only a grant that
names one (``approval.granted``, ``approval.*``) does.
"""

from __future__ import annotations

TOOLKIT_TYPE_NAMESPACES: tuple[str, ...] = ("approval.", "orchestration.", "saga.")
"""Prefixes of the toolkit's own report and lifecycle event types."""


def toolkit_namespace(event_type: str) -> str | None:
    """The toolkit namespace ``event_type`` belongs to (``"approval."``), or ``None``."""
    for namespace in TOOLKIT_TYPE_NAMESPACES:
        if event_type.startswith(namespace):
            return namespace
    return None
