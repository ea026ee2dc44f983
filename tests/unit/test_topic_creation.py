"""What ``ensure_topics`` says of the broker's per-topic answers to a CreateTopics request."""

from __future__ import annotations

import logging

import pytest

from choreokit.events import ConfigurationError
from choreokit.events._kafka import _report_created

CREATED, EXISTS, NOT_AUTHORIZED, BAD_REPLICATION = 0, 36, 29, 38


def test_created_and_existing_topics_are_logged_as_created(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, "choreokit.kafka"):
        _report_created(["a", "b"], [("a", CREATED), ("b", EXISTS, None)])
    assert [r.getMessage() for r in caplog.records] == ["created topics a, b"]


def test_a_refused_creation_is_a_warning_naming_the_topics_not_a_claim_of_success(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, "choreokit.kafka"):
        _report_created(["a", "b"], [("a", CREATED), ("b", NOT_AUTHORIZED, "denied")])
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages[0] == (logging.INFO, "created topics a")
    level, text = messages[1]
    assert level == logging.WARNING
    assert "not allowed to create topics b" in text
    assert "choreo topics create" in text


def test_another_refusal_is_an_error_naming_the_topic_and_the_settings() -> None:
    with pytest.raises(ConfigurationError, match=r"c: InvalidReplicationFactor") as caught:
        _report_created(["c"], [("c", BAD_REPLICATION, "replication factor 3 > 1 broker")])
    assert "CHOREO_KAFKA_TOPIC_REPLICATION" in str(caught.value)
