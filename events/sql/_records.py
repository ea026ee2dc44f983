"""Outbound records as JSON, so the inbox and the outbox can keep them."""

from __future__ import annotations

import json
from typing import Any

from choreokit.events._envelope import Envelope
from choreokit.events._outbound import Outbound
from choreokit.events._registry import Registry


def dump(outbound: Outbound) -> dict[str, Any]:
    """Return ``outbound`` as JSON-ready values (the trace context is not kept)."""
    return {
        "topic": outbound.topic,
        "key": outbound.key.decode(),
        "value": outbound.value.decode(),
        "envelope": outbound.envelope.with_trace(None, None).to_dict(),
    }


def load(data: dict[str, Any], registry: Registry) -> Outbound:
    """Rebuild an outbound record kept by :func:`dump`, its payload validated again."""
    envelope = Envelope.from_dict(data["envelope"])
    model = registry.model(envelope.type, envelope.dataversion)
    value = data["value"].encode()
    return Outbound(
        topic=data["topic"],
        key=data["key"].encode(),
        value=value,
        envelope=envelope,
        event=model.model_validate_json(value),
    )


def dumps_all(outbounds: list[Outbound]) -> str:
    """Serialise a list of records."""
    return json.dumps([dump(o) for o in outbounds], separators=(",", ":"))


def loads_all(text: str, registry: Registry) -> list[Outbound]:
    """Deserialise what :func:`dumps_all` wrote."""
    return [load(item, registry) for item in json.loads(text)]
