"""Deadlines: flows that nothing happens to are judged again once their timeout passes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from choreokit.services.saga_observer.catalog import SpecFiles
from choreokit.services.saga_observer.lifecycle import Transition
from choreokit.services.saga_observer.metrics import ObserverMetrics
from choreokit.services.saga_observer.store import Store

logger = logging.getLogger("choreokit.observer.sweeper")


class Sweeper:
    """Every ``interval``, judges the running flows past their deadline.

    Such a flow becomes ``stalled`` (no end) or ``failed-uncompensated`` (a
    required compensation missing). Then a flow waiting at a step past the
    step's own deadline gets its ``saga.step_overdue`` (once per flow and step).
    Several instances may sweep one database: each skips the flows another holds
    locked, and judging twice changes nothing. With ``spec_files``, each sweep
    first reloads the spec files that changed and judges their sagas' open
    flows again. With ``caught_up``, deadlines are judged only while it says the
    instance has read (nearly) all there is: an observer behind its topics has
    not seen the events that may have met them.

    Args:
        store: The observer's store.
        clock: Microseconds since the epoch, now.
        interval: How often to look.
        metrics: The instance's metrics.
        on_transitions: Called with the transitions each sweep recorded.
        spec_files: The YAML spec files to watch, if any.
        caught_up: Whether the instance has read (nearly) all there is (default: always).
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], int],
        interval: timedelta,
        metrics: ObserverMetrics,
        on_transitions: Callable[[Sequence[Transition]], None],
        spec_files: SpecFiles | None = None,
        caught_up: Callable[[], bool] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval.total_seconds()
        self._metrics = metrics
        self._on_transitions = on_transitions
        self._spec_files = spec_files
        self._caught_up = caught_up
        self.deferred = 0
        """Sweeps whose deadline judgement waited for the instance to catch up."""

    async def sweep(self, limit: int = 500) -> int:
        """Judge every overdue running flow, then record overdue steps; return flows judged."""
        total = 0
        changed = self._spec_files.reload_if_changed() if self._spec_files else frozenset()
        if changed:
            judged, transitions = await self._store.rejudge_sagas(changed, self._clock(), limit)
            logger.info("judged %d open flows again by the reloaded specs", judged)
            total += judged
            self._recorded(transitions)
        if self._caught_up is not None and not self._caught_up():
            self.deferred += 1
            logger.debug("deadlines not judged: the observer is behind its topics")
            return total
        while True:
            judged, transitions = await self._store.sweep(self._clock(), limit)
            total += judged
            self._recorded(transitions)
            if judged < limit:
                break
        while True:
            overdue = await self._store.sweep_steps(self._clock(), limit)
            self._recorded(overdue)
            if len(overdue) < limit:
                return total

    def _recorded(self, transitions: Sequence[Transition]) -> None:
        for change in transitions:
            self._metrics.transitions.labels(change.type).inc()
        if transitions:
            self._on_transitions(transitions)

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep until ``stop`` is set; database errors are logged and the sweep retried."""
        while not stop.is_set():
            try:
                await self.sweep()
            except (SQLAlchemyError, OSError) as exc:
                self._metrics.database_errors.inc()
                logger.warning("deadline sweep failed (%s); trying again", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
