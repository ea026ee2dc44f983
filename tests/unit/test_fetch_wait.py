"""An idle consumer's fetch wait grows step by step to the idle wait; a record brings it back.

Driven by a fake clock and poll counts: no timing here (the integration test runs a
real consumer, ``tests/integration/test_fetch_wait.py``).
"""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from choreokit.events import FetchWait, KafkaSettings, Profile
from choreokit.events._fetch_wait import FetchWaitPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def policy(clock: Clock, *, idle_ms: int = 300) -> FetchWaitPolicy:
    return FetchWaitPolicy(
        busy=timedelta(milliseconds=20),
        idle=timedelta(milliseconds=idle_ms),
        idle_after=timedelta(seconds=3),
        clock=clock,
    )


def test_the_wait_stays_short_until_the_consumer_has_been_idle_for_idle_after() -> None:
    clock = Clock()
    wait = policy(clock)
    for _ in range(29):  # 2.9 s of empty polls
        clock.now += 0.1
        assert wait.polled(0) == 20
    clock.now += 0.1
    assert wait.polled(0) == 40


def test_an_idle_consumers_wait_doubles_at_each_empty_poll_up_to_the_idle_wait() -> None:
    clock = Clock()
    wait = policy(clock)
    clock.now += 3
    assert [wait.polled(0) for _ in range(6)] == [40, 80, 160, 300, 300, 300]


def test_the_first_record_brings_the_wait_back_at_once_and_restarts_the_idle_delay() -> None:
    clock = Clock()
    wait = policy(clock)
    clock.now += 10
    for _ in range(5):
        wait.polled(0)
    assert wait.wait_ms == 300
    assert wait.polled(1) == 20
    clock.now += 2.9
    assert wait.polled(0) == 20  # idle again, but not for idle_after yet
    clock.now += 0.1
    assert wait.polled(0) == 40


def test_steady_traffic_keeps_the_wait_short_however_long_it_runs() -> None:
    """Records every 2 s, with empty polls between, for a minute: never idle for 3 s."""
    clock = Clock()
    wait = policy(clock)
    for _ in range(30):
        for _ in range(19):
            clock.now += 0.1
            assert wait.polled(0) == 20
        clock.now += 0.1
        assert wait.polled(3) == 20


def test_an_idle_wait_no_longer_than_the_busy_one_keeps_the_wait_fixed() -> None:
    clock = Clock()
    wait = policy(clock, idle_ms=10)
    assert not wait.adaptive
    clock.now += 60
    assert wait.polled(0) == 20


def test_the_profiles_give_the_idle_wait_and_the_variables_override_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert KafkaSettings(profile=Profile.LOCAL).timing("fetch_idle_wait") == timedelta(
        milliseconds=300
    )
    assert KafkaSettings(profile=Profile.PRODUCTION).timing("fetch_idle_wait") == timedelta(
        milliseconds=500
    )
    assert KafkaSettings().fetch_idle_after == timedelta(seconds=10)
    monkeypatch.setenv("CHOREO_KAFKA_FETCH_IDLE_WAIT", "1s")
    monkeypatch.setenv("CHOREO_KAFKA_FETCH_IDLE_AFTER", "10s")
    settings = KafkaSettings()
    assert settings.timing("fetch_idle_wait") == timedelta(seconds=1)
    assert settings.fetch_idle_after == timedelta(seconds=10)


def test_an_idle_wait_as_long_as_the_request_timeout_is_refused() -> None:
    with pytest.raises(ValidationError, match="CHOREO_KAFKA_FETCH_IDLE_WAIT"):
        KafkaSettings(fetch_idle_wait=timedelta(seconds=30))


def consumer(wait_ms: int) -> SimpleNamespace:
    """What FetchWait touches of a started aiokafka consumer (the seam test pins it)."""
    return SimpleNamespace(_fetcher=SimpleNamespace(_fetch_max_wait_ms=wait_ms))


def test_fetch_wait_sets_the_wait_of_the_consumers_next_fetches() -> None:
    clock = Clock()
    applied = FetchWait(KafkaSettings(fetch_idle_after=timedelta(0)), clock=clock)
    target = consumer(20)
    applied.polled(target, 0)
    assert target._fetcher._fetch_max_wait_ms == 40
    for _ in range(5):
        applied.polled(target, 0)
    assert target._fetcher._fetch_max_wait_ms == 300
    applied.polled(target, 2)
    assert target._fetcher._fetch_max_wait_ms == 20


def test_a_consumer_not_started_yet_is_left_alone_and_adapted_once_it_is() -> None:
    applied = FetchWait(KafkaSettings(fetch_idle_after=timedelta(0)), clock=Clock())
    unstarted = SimpleNamespace(_fetcher=None)
    applied.polled(unstarted, 0)
    assert unstarted._fetcher is None
    started = consumer(20)
    applied.polled(started, 0)
    assert started._fetcher._fetch_max_wait_ms == 80  # the policy went on counting


def test_a_fetcher_that_no_longer_keeps_the_wait_is_warned_about_once_and_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    applied = FetchWait(KafkaSettings(fetch_idle_after=timedelta(0)), clock=Clock())
    moved = SimpleNamespace(_fetcher=SimpleNamespace(max_wait="elsewhere"))
    for _ in range(3):
        applied.polled(moved, 0)
    assert [r.getMessage() for r in caplog.records].count(
        "this aiokafka keeps no fetch wait where choreokit sets it; the fetch wait stays at "
        "20 ms (idle consumers fetch as often as busy ones)"
    ) == 1
    assert moved._fetcher.max_wait == "elsewhere"


def test_a_new_consumer_gets_the_current_wait_at_its_first_poll() -> None:
    """A consumer built anew (a reconnect) starts from its construction's wait: set it again."""
    applied = FetchWait(KafkaSettings(fetch_idle_after=timedelta(0)), clock=Clock())
    first = consumer(20)
    for _ in range(6):
        applied.polled(first, 0)
    assert first._fetcher._fetch_max_wait_ms == 300
    second = consumer(20)
    applied.polled(second, 0)
    assert second._fetcher._fetch_max_wait_ms == 300
