"""Forwarding admitted events to Kafka: deduplicated, traced, all acknowledged or a 503."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from aiokafka.structs import RecordMetadata
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from choreokit.events import BrokerUnavailableError, ChoreoError, Outbound, Publisher, SendFuture
from choreokit.services.gateway._admission import Admitted
from choreokit.services.gateway._dedup import DedupWindow, Receipt, Seen
from choreokit.services.gateway._keys import ApiKey
from choreokit.services.gateway._link import KafkaLink
from choreokit.services.gateway._problems import ErrorItem, Problem, ProblemKind
from choreokit.services.gateway._ratelimit import retry_after
from choreokit.services.gateway._tracecontext import TraceBridge


@dataclass(slots=True)
class _Send:
    index: int
    admitted: Admitted
    span: Span
    future: SendFuture | None = None


class Forwarder:
    """Publishes a request's admitted events and answers only once every one is acknowledged."""

    def __init__(
        self,
        link: KafkaLink,
        dedup: DedupWindow,
        traces: TraceBridge,
        *,
        timeout: timedelta,
        retry_after: timedelta,
    ) -> None:
        self._link = link
        self._dedup = dedup
        self._traces = traces
        self._timeout = timeout.total_seconds()
        self._retry_after = retry_after.total_seconds()

    async def forward(self, events: Sequence[Admitted], key: ApiKey) -> list[Receipt]:
        """Publish ``events`` (skipping ones already published) and return a receipt for each.

        Raises:
            Problem: 409 if an id was used for different content; 503 if the
                broker is unreachable or does not acknowledge every event in
                time (events acknowledged before that stay published, and a
                retry of the same request publishes only the rest).
        """
        try:
            publisher = self._link.publisher()
        except BrokerUnavailableError as exc:
            raise self._unavailable(str(exc)) from None
        receipts: dict[int, Receipt] = {}
        sends: list[_Send] = []
        sending = False
        try:
            async with asyncio.timeout(self._timeout):
                await self._claim(events, receipts, sends)
                sending = True
                for send in sends:
                    send.span = self._traces.start(send.admitted, key)
                    with trace.use_span(send.span, end_on_exit=False):
                        send.future = await publisher.send(self._outbound(publisher, send))
                pending = [s.future for s in sends if s.future is not None]
                if pending:
                    await asyncio.wait(pending)
        except TimeoutError:
            self._fail(sends, "no acknowledgement in time")
            if sending:  # not when it only waited for another request's send of the same id
                self._link.mark_down(f"no acknowledgement within {self._timeout:g}s")
            raise self._unavailable(
                f"the broker did not acknowledge within {self._timeout:g}s"
            ) from None
        except Problem:
            raise
        except ChoreoError as exc:
            self._fail(sends, str(exc))
            self._link.mark_down(str(exc))
            raise self._unavailable(str(exc)) from None
        except BaseException:
            self._fail(sends, "request aborted")
            raise
        failed = self._settle(sends, receipts)
        if failed:
            self._link.mark_down(failed)
            raise self._unavailable(f"the broker refused an event: {failed}")
        return [receipts[i] for i in range(len(events))]

    async def _claim(
        self, events: Sequence[Admitted], receipts: dict[int, Receipt], sends: list[_Send]
    ) -> None:
        for index, admitted in enumerate(events):
            while True:
                seen, earlier = self._dedup.claim(admitted.event_id, admitted.fingerprint)
                if seen is not Seen.IN_FLIGHT:
                    break
                await self._dedup.settled(admitted.event_id)
            if seen is Seen.CONFLICT:
                for send in sends:
                    self._dedup.release(send.admitted.event_id)
                sends.clear()
                raise Problem.of(
                    ErrorItem(
                        f"id {admitted.received_id!r} was already used for an event with other "
                        "content within the dedup window; give a new event a new id",
                        ProblemKind.ID_REUSED,
                        index=index,
                        attribute="id",
                    )
                )
            if seen is Seen.DONE:
                assert earlier is not None
                receipts[index] = dataclasses.replace(
                    earlier, received_id=admitted.received_id, duplicate=True
                )
            else:
                sends.append(_Send(index, admitted, trace.INVALID_SPAN))

    def _outbound(self, publisher: Publisher, send: _Send) -> Outbound:
        admitted = send.admitted
        traceparent, tracestate = self._traces.context_of(send.span)
        return publisher.prepare(
            admitted.event,
            event_id=admitted.event_id,
            correlation_id=admitted.correlation_id,
            causation_id=admitted.causation_id,
            time=admitted.time,
            source=admitted.source,
            traceparent=traceparent,
            tracestate=tracestate,
            payload=admitted.payload,
        )

    def _settle(self, sends: list[_Send], receipts: dict[int, Receipt]) -> str:
        failed = ""
        for send in sends:
            outcome = self._conclude(send)
            if isinstance(outcome, Receipt):
                receipts[send.index] = outcome
            else:
                failed = failed or outcome
        return failed

    def _conclude(self, send: _Send) -> Receipt | str:
        """Record a finished send: commit its id if acknowledged, release it if not."""
        future = send.future
        assert future is not None
        error = "cancelled" if future.cancelled() else future.exception()
        if error is not None:
            reason = str(error) or type(error).__name__
            self._dedup.release(send.admitted.event_id)
            send.span.set_status(Status(StatusCode.ERROR, reason))
            send.span.end()
            return reason
        meta: RecordMetadata = future.result()
        admitted = send.admitted
        receipt = Receipt(
            id=admitted.event_id,
            received_id=admitted.received_id,
            correlation_id=admitted.correlation_id,
            topic=meta.topic,
            partition=meta.partition,
            offset=meta.offset,
        )
        self._dedup.commit(admitted.event_id, receipt)
        send.span.end()
        return receipt

    def _fail(self, sends: list[_Send], reason: str) -> None:
        """Conclude a request that will be answered 503.

        A record the producer already holds may still reach the broker: its id
        stays claimed until the producer knows (then it is committed, or
        released), so a retry in the meantime waits instead of publishing twice.
        """
        for send in sends:
            future = send.future
            if future is None:
                self._dedup.release(send.admitted.event_id)
                send.span.set_status(Status(StatusCode.ERROR, reason))
                send.span.end()
            elif future.done():
                self._conclude(send)
            else:
                future.add_done_callback(partial(self._conclude_later, send))

    def _conclude_later(self, send: _Send, _future: object) -> None:
        self._conclude(send)

    def _unavailable(self, detail: str) -> Problem:
        return Problem(
            ProblemKind.UNAVAILABLE,
            f"{detail}; nothing from this request is confirmed published: retry with the "
            "same ids (already published events are not published twice)",
            headers={"Retry-After": retry_after(self._retry_after)},
        )
