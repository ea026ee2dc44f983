"""The rig's KRaft cluster ids never start with ``-``, which the storage tool would read as an
option: one random id in 64 did, and ``choreo broker --engine kafka`` failed to format."""

from __future__ import annotations

import uuid

import pytest

from choreokit.services.runtime import kafka_cluster

DASH_FIRST = uuid.UUID(bytes=b"\xf8" + bytes(15))
"""Its first six bits are 62: URL-safe base64 writes them as ``-``."""


def test_an_id_that_would_start_with_a_dash_is_drawn_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn = iter([DASH_FIRST, DASH_FIRST, uuid.UUID(int=1)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(drawn))
    found = kafka_cluster._cluster_id()
    assert not found.startswith("-")
    assert found == "AAAAAAAAAAAAAAAAAAAAAQ"  # the third draw, as Kafka's Uuid writes it


def test_an_id_is_a_kafka_uuid() -> None:
    found = kafka_cluster._cluster_id()
    assert len(found) == 22
    assert set(found) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
