"""Derived event ids are standard name-based UUIDs (v5), stable across releases."""

from __future__ import annotations

import uuid

from choreokit.events._ids import derived_event_id


def test_derived_ids_are_the_standard_uuid5_of_cause_producer_and_index() -> None:
    """A redelivery handled by a newer release must publish the very same ids."""
    namespace = uuid.UUID("6c1d5b0e-6b0c-4d4f-9a63-1f6c1f0a8e51")
    for cause, producer, index in [("c-1", "svc/handle", 0), ("0193f0b2-7c1e", "é/ü", 12)]:
        expected = uuid.uuid5(namespace, f"{cause}\x1f{producer}\x1f{index}")
        assert derived_event_id(cause, producer, index) == str(expected)
