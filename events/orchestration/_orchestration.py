"""Running an orchestration: steps in order, retried, compensated in reverse, resumable."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events._context import current_context
from choreokit.events._envelope import Envelope
from choreokit.events._errors import ConfigurationError
from choreokit.events._retry import is_retriable
from choreokit.events.orchestration._steps import JSON, Await, Step, StepContext
from choreokit.events.orchestration._store import (
    OrchestrationStore,
    RunState,
    RunStatus,
    StepStatus,
)
from choreokit.events.orchestration.events import MAX_STEPS, OrchestrationRun, StepReport

logger = logging.getLogger("choreokit.orchestration")

SPAN_RUN = "orchestrate {name}"
SPAN_STEP = "step {name}"
SPAN_COMPENSATE = "compensate {name}"
ATTR_ORCHESTRATION = "choreo.orchestration.name"
ATTR_RUN_ID = "choreo.orchestration.run_id"
ATTR_STEP = "choreo.orchestration.step"
ATTR_ATTEMPTS = "choreo.orchestration.attempts"
ATTR_RESUMED = "choreo.orchestration.resumed"
ATTR_STATUS = "choreo.orchestration.status"


@dataclass(slots=True)
class _Tries:
    """What one step's tries took in this process (never its input, result or message)."""

    attempts: int = 0
    started: float | None = None
    ended: float | None = None
    error_type: str | None = None

    def millis(self) -> int | None:
        if self.started is None or self.ended is None:
            return None
        return max(0, round((self.ended - self.started) * 1000))

    def offset(self, origin: float) -> int | None:
        if self.started is None:
            return None
        return max(0, round((self.started - origin) * 1000))


@dataclass(slots=True)
class _Tally:
    """One call of :meth:`Orchestration.run`: when it started, and each step's tries."""

    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    clock: float = field(default_factory=time.monotonic)
    actions: dict[str, _Tries] = field(default_factory=dict)
    compensations: dict[str, _Tries] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended.

    Attributes:
        run_id: The run.
        status: ``SUCCEEDED``, ``COMPENSATED`` or ``COMPENSATION_FAILED``.
        results: Results of the steps that completed, by name (an :class:`Await`
            step's: ``{"delivery_id": ..., "event": ...}``).
        failed_step: The step that failed, if one did.
        error: Why it failed.
        compensated: Steps undone after the failure, in the order undone.
        uncompensated: Steps whose compensation failed too.
    """

    run_id: str
    status: RunStatus
    results: Mapping[str, JSON]
    failed_step: str | None = None
    error: str | None = None
    compensated: tuple[str, ...] = ()
    uncompensated: tuple[str, ...] = ()
    report: OrchestrationRun | None = field(default=None, compare=False)
    """The run's steps, tries and timings as an event (see :meth:`Orchestration.run`);
    left out of comparisons: recalling a run gives an equal outcome, timed anew."""
    waiting_for: str | None = None
    """The :class:`Await` step the run waits at (status ``WAITING``)."""
    input: Mapping[str, JSON] = field(default_factory=dict)
    """The run's input (what :meth:`Orchestration.run` was first given)."""

    @property
    def succeeded(self) -> bool:
        """Whether every step completed."""
        return self.status is RunStatus.SUCCEEDED

    @property
    def waiting(self) -> bool:
        """Whether the run waits for an event (see :meth:`Orchestration.deliver`)."""
        return self.status is RunStatus.WAITING


@dataclass(frozen=True, slots=True)
class Delivery:
    """What :meth:`Orchestration.deliver` did with an event.

    Attributes:
        accepted: This event (by ``delivery_id``) is the one the step recorded: the
            first delivery, or a repeat of it. ``False``: another event ended the
            wait before, the run will never wait there, or it has not reached the
            step yet (``held``); act on nothing now.
        outcome: The run's outcome after the delivery (``None``: no such run yet).
        held: The run has not reached the step: the event is kept (durably, the
            first one per step) and ends the wait as soon as the run records it, so
            :meth:`Orchestration.run` then goes past the step at once.
    """

    accepted: bool
    outcome: Outcome | None
    held: bool = False


class Orchestration:
    """A fixed sequence of steps run inside one service: the hybrid pattern's inside.

    Each step gets a timeout per try and bounded retries. When a step fails for
    good, the steps completed before it are compensated in reverse order. Every
    completed step, failure and compensation is recorded in the service's
    database as it happens; running the same ``run_id`` again (after a crash, or
    because the triggering event was delivered again) skips what is recorded
    and continues where the run stopped, and a finished run just returns its
    outcome. Each run is a span with a child span per step and compensation.

    Publish the completion event from the handler that called :meth:`run`: it
    then carries the flow's correlation and names the triggering event as its
    cause, and the inbox makes it exactly one.

    Args:
        name: Names the orchestration in records and spans; keep it stable.
        steps: The steps, in order; names must be unique.
        engine: The database progress is recorded in.
        tracer_provider: Where spans go (default: the global provider).
        report: Publish an ``orchestration.run`` event (:class:`OrchestrationRun`) about
            each run when :meth:`run` is called inside a handler, so the saga observer
            draws the steps in the service's lane. ``False``: the outcome still
            carries the report, nothing is published.
    """

    def __init__(
        self,
        name: str,
        steps: Sequence[Step | Await],
        *,
        engine: AsyncEngine,
        tracer_provider: trace.TracerProvider | None = None,
        report: bool = True,
    ) -> None:
        names = [s.name for s in steps]
        if not steps or len(set(names)) != len(names):
            raise ConfigurationError(f"orchestration {name}: steps must be non-empty and unique")
        self.name = name
        self.steps = tuple(steps)
        self.store = OrchestrationStore(engine, name)
        self.report = report
        self._tracer = trace.get_tracer("choreokit.orchestration", tracer_provider=tracer_provider)

    async def create_tables(self) -> None:
        """Create the progress tables if they do not exist."""
        await self.store.create_tables()

    async def run(
        self, run_id: str, run_input: Mapping[str, JSON], *, cause: Envelope | None = None
    ) -> Outcome:
        """Run (or resume, or recall) the run ``run_id``.

        Called inside a handler with ``report`` on, it publishes the outcome's
        :attr:`~Outcome.report` through the handler's context: with the flow's
        correlation id, naming ``cause`` (default: the handled event) as its
        cause, and sent together with the handler's other events (the completion
        event) once the handler returns, or dropped with them if it raises. With
        the SQL inbox both are recorded in the inbox row of the same transaction.
        """
        tally = _Tally()
        state = await self.store.load_or_create(run_id, dict(run_input))
        resumed = bool(state.steps) or state.status is not RunStatus.RUNNING
        with self._tracer.start_as_current_span(
            SPAN_RUN.format(name=self.name),
            attributes={
                ATTR_ORCHESTRATION: self.name,
                ATTR_RUN_ID: run_id,
                ATTR_RESUMED: resumed,
            },
            record_exception=False,  # exception messages quote input: only types go in spans
            set_status_on_exception=False,
        ) as span:
            if resumed:
                logger.info("%s run %s resumed at status %s", self.name, run_id, state.status)
            outcome = await self._drive(state, tally)
            if state.status.finished:  # a run waiting at an Await step reports when it ends
                outcome = self._with_report(outcome, state, tally, resumed=resumed)
            span.set_attribute(ATTR_STATUS, outcome.status.value)
            if not outcome.succeeded and not outcome.waiting:
                failed = f"step {outcome.failed_step} failed" if outcome.failed_step else "failed"
                span.set_status(Status(StatusCode.ERROR, failed))
        if self.report and outcome.report is not None:
            await self._publish(outcome.report, cause)
        return outcome

    async def deliver(
        self, run_id: str, step: str, event: Mapping[str, JSON], *, delivery_id: str
    ) -> Delivery:
        """End the wait of run ``run_id`` at the :class:`Await` step ``step`` with ``event``.

        ``event`` (JSON-ready) becomes the step's result, with ``delivery_id``
        (the event's ``ce_id``) beside it; the steps after it then run. Exactly
        once: a second event for the same wait is not accepted, and a repeat of
        the accepted one (a redelivery after a crash) resumes the run again
        without recording anything twice.

        An event that arrives before the run recorded the wait (the run has not
        started, or not reached the step) is not lost: the first one is kept
        durably (:attr:`Delivery.held`) and ends the wait when the run reaches
        the step, inside that :meth:`run` call; the step's result then says
        ``"held": true``, so the code calling :meth:`run` knows that it, not the
        deliverer, acts on the event.
        """
        waiting = next((s for s in self.steps if s.name == step), None)
        if not isinstance(waiting, Await):
            raise ConfigurationError(f"orchestration {self.name}: {step!r} is not an Await step")
        recorded: dict[str, JSON] = {"delivery_id": delivery_id, "event": dict(event)}
        won = await self.store.deliver(run_id, step, recorded)
        state = await self.store.load(run_id)
        if not won and (state is None or (not state.status.finished and step not in state.steps)):
            # Early: the run has not recorded this wait yet (its trigger is still on its
            # way). Keep the event; the run takes it when it reaches the step. Should
            # the run have reached it meanwhile, end the wait with the kept one now.
            kept = await self.store.hold(run_id, step, {**recorded, "held": True})
            won = await self.store.deliver(run_id, step, kept)
            state = await self.store.load(run_id)
            if not won and (state is None or step not in state.steps):
                logger.info("%s run %s: %s held until the run waits", self.name, run_id, step)
                return Delivery(
                    accepted=False,
                    outcome=self._outcome(state) if state is not None else None,
                    held=kept.get("delivery_id") == delivery_id,
                )
        if state is None:
            return Delivery(accepted=False, outcome=None)
        status, result = state.steps.get(step, (None, None))
        accepted = won or (
            status is StepStatus.DONE
            and isinstance(result, dict)
            and result.get("delivery_id") == delivery_id
        )
        if not accepted:
            return Delivery(accepted=False, outcome=self._outcome(state))
        if won:
            logger.info("%s run %s: %s delivered", self.name, run_id, step)
        return Delivery(accepted=True, outcome=await self.run(run_id, state.input))

    async def _publish(self, report: OrchestrationRun, cause: Envelope | None) -> None:
        context = current_context.get()
        if context is None:
            return  # not inside a handler: the caller publishes outcome.report if it wants
        try:
            await context.publish(report, cause=cause)
        except ConfigurationError as exc:
            # An undeclared type must not cost the completion event: say what to do instead.
            logger.warning(
                "%s run %s: its orchestration.run report is not published (%s); declare "
                "OrchestrationRun in the service's publishes=..., or pass report=False",
                self.name,
                report.run_id,
                exc,
            )

    def _with_report(
        self, outcome: Outcome, state: RunState, tally: _Tally, *, resumed: bool
    ) -> Outcome:
        steps: list[StepReport] = []
        for step in self.steps[:MAX_STEPS]:
            recorded = state.steps.get(step.name, (None, None))[0]
            tries = tally.actions.get(step.name, _Tries())
            undo = tally.compensations.get(step.name, _Tries())
            steps.append(
                StepReport(
                    name=step.name[:128],
                    # A wait that a finished run never got past did not run either.
                    status="not_run"
                    if recorded is None or recorded is StepStatus.WAITING
                    else recorded.value,  # type: ignore[arg-type]  # the other statuses
                    attempts=tries.attempts,
                    offset_ms=tries.offset(tally.clock),
                    duration_ms=tries.millis(),
                    error_type=tries.error_type,
                    compensation_attempts=undo.attempts,
                    compensation_ms=undo.millis(),
                    compensation_error_type=undo.error_type,
                )
            )
        assert state.status.finished
        error_type = (state.error or "").split(":", 1)[0][:128] or None
        report = OrchestrationRun(
            orchestration=self.name[:128],
            run_id=state.run_id[:1024],
            status=state.status.value,  # type: ignore[arg-type]  # a finished status
            resumed=resumed,
            started_at=tally.started_at,
            ended_at=datetime.now(UTC),
            duration_ms=max(0, round((time.monotonic() - tally.clock) * 1000)),
            failed_step=(state.failed_step or "")[:128] or None,
            error_type=error_type,
            steps=tuple(steps),
        )
        return Outcome(
            run_id=outcome.run_id,
            status=outcome.status,
            results=outcome.results,
            failed_step=outcome.failed_step,
            error=outcome.error,
            compensated=outcome.compensated,
            uncompensated=outcome.uncompensated,
            waiting_for=outcome.waiting_for,
            input=outcome.input,
            report=report,
        )

    async def _drive(self, state: RunState, tally: _Tally) -> Outcome:
        if state.status is RunStatus.RUNNING:
            for step in self.steps:
                recorded = state.steps.get(step.name)
                if recorded is not None and recorded[0] is StepStatus.DONE:
                    continue
                if isinstance(step, Await):
                    await self.store.record_step(
                        state.run_id, step.name, StepStatus.WAITING, None, 0
                    )
                    await self.store.record_run(state.run_id, RunStatus.WAITING)
                    # An event delivered before the wait was recorded ends it at once
                    # (checked after recording it: a delivery meanwhile finds it waiting).
                    kept = await self.store.held(state.run_id, step.name)
                    if kept is not None and await self.store.deliver(state.run_id, step.name, kept):
                        logger.info(
                            "%s run %s: %s delivered before it waited",
                            self.name,
                            state.run_id,
                            step.name,
                        )
                        state.steps[step.name] = (StepStatus.DONE, kept)
                        continue
                    state.status = RunStatus.WAITING
                    state.steps[step.name] = (StepStatus.WAITING, None)
                    break
                try:
                    result, attempts = await self._attempt(
                        step, state, tally.actions, compensation=False
                    )
                except Exception as exc:  # noqa: BLE001 - every failure leads to compensation
                    error = f"{type(exc).__name__}: {exc}"
                    logger.warning(
                        "%s run %s: step %s failed: %s", self.name, state.run_id, step.name, error
                    )
                    await self.store.record_step(
                        state.run_id, step.name, StepStatus.FAILED, None, 0
                    )
                    await self.store.record_run(
                        state.run_id, RunStatus.COMPENSATING, failed_step=step.name, error=error
                    )
                    state.status, state.failed_step, state.error = (
                        RunStatus.COMPENSATING,
                        step.name,
                        error,
                    )
                    state.steps[step.name] = (StepStatus.FAILED, None)
                    break
                await self.store.record_step(
                    state.run_id, step.name, StepStatus.DONE, result, attempts
                )
                state.steps[step.name] = (StepStatus.DONE, result)
            else:
                await self.store.record_run(state.run_id, RunStatus.SUCCEEDED)
                state.status = RunStatus.SUCCEEDED
        if state.status is RunStatus.COMPENSATING:
            await self._compensate(state, tally)
        return self._outcome(state)

    async def _compensate(self, state: RunState, tally: _Tally) -> None:
        failed = False
        for step in reversed(self.steps):
            status, result = state.steps.get(step.name, (None, None))
            if status is not StepStatus.DONE:
                continue  # never completed, already compensated, or already given up on
            if isinstance(step, Await) or step.compensate is None:
                continue  # an event that happened cannot be undone
            try:
                await self._attempt(
                    step, state, tally.compensations, compensation=True, result=result
                )
            except Exception:
                # Recorded below; the run ends as compensation_failed.
                logger.exception(
                    "%s run %s: compensation of %s failed", self.name, state.run_id, step.name
                )
                await self.store.record_step(
                    state.run_id, step.name, StepStatus.COMPENSATION_FAILED, result, 0
                )
                state.steps[step.name] = (StepStatus.COMPENSATION_FAILED, result)
                failed = True
                continue
            await self.store.record_step(state.run_id, step.name, StepStatus.COMPENSATED, result, 0)
            state.steps[step.name] = (StepStatus.COMPENSATED, result)
        failed = failed or any(
            status is StepStatus.COMPENSATION_FAILED for status, _ in state.steps.values()
        )
        final = RunStatus.COMPENSATION_FAILED if failed else RunStatus.COMPENSATED
        await self.store.record_run(state.run_id, final)
        state.status = final

    async def _attempt(
        self,
        step: Step,
        state: RunState,
        tally: dict[str, _Tries],
        *,
        compensation: bool,
        result: Any = None,
    ) -> tuple[Any, int]:
        results = {
            name: value
            for name, (status, value) in state.steps.items()
            if status is StepStatus.DONE
        }
        backoffs = step.retry.backoffs()
        attempt = 0
        tries = tally.setdefault(step.name, _Tries())
        tries.started = time.monotonic()
        span_name = (SPAN_COMPENSATE if compensation else SPAN_STEP).format(name=step.name)
        with self._tracer.start_as_current_span(
            span_name,
            attributes={
                ATTR_ORCHESTRATION: self.name,
                ATTR_RUN_ID: state.run_id,
                ATTR_STEP: step.name,
            },
            record_exception=False,  # the type is recorded below; the message may quote input
            set_status_on_exception=False,
        ) as span:
            while True:
                attempt += 1
                tries.attempts = attempt
                context = StepContext(state.run_id, step.name, attempt, state.input, results)
                try:
                    async with asyncio.timeout(step.timeout.total_seconds()):
                        if compensation:
                            assert step.compensate is not None
                            await step.compensate(context, result)
                            value = None
                        else:
                            value = await step.action(context)
                except Exception as exc:
                    tries.ended = time.monotonic()
                    tries.error_type = type(exc).__name__[:128]
                    backoff = next(backoffs, None) if is_retriable(exc) else None
                    span.add_event(
                        "attempt failed",
                        {"exception.type": type(exc).__name__, ATTR_ATTEMPTS: attempt},
                    )
                    if backoff is None:
                        span.set_attribute(ATTR_ATTEMPTS, attempt)
                        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                        raise
                    await asyncio.sleep(backoff)
                    continue
                tries.ended = time.monotonic()
                span.set_attribute(ATTR_ATTEMPTS, attempt)
                return value, attempt

    def _outcome(self, state: RunState) -> Outcome:
        results = {n: v for n, (s, v) in state.steps.items() if s is StepStatus.DONE}
        order = [s.name for s in reversed(self.steps)]
        return Outcome(
            run_id=state.run_id,
            status=state.status,
            results=results,
            failed_step=state.failed_step,
            error=state.error,
            compensated=tuple(
                n for n in order if state.steps.get(n, (None,))[0] is StepStatus.COMPENSATED
            ),
            uncompensated=tuple(
                n for n in order if state.steps.get(n, (None,))[0] is StepStatus.COMPENSATION_FAILED
            ),
            input=state.input,
            waiting_for=next(
                (n for n, (s, _) in state.steps.items() if s is StepStatus.WAITING), None
            )
            if state.status is RunStatus.WAITING
            else None,
        )
