"""The demo's traces in a real Jaeger v2 (built from its Go module by tests/rig/jaeger.py).

`choreo dev` exports over OTLP/gRPC to the session's Jaeger, `choreo demo --bootstrap` drives a
dozen orders with every kind of injected failure, and Jaeger's own query API must then hold one
trace per order, with every service that handled one of its events, and every consumer span
parented (or linked) inside that trace, the observer's saga.* announcements included. The
observer's "open in Jaeger" link for a flow is then followed in Chromium: it names that trace, and
the Jaeger it points at serves that trace. A go-install build of Jaeger embeds no UI, so the link
shows Jaeger's placeholder page (asserted, with its version) and the trace is asserted on the
query API at the link's origin, the API the UI would draw it from. Screenshots: test-artifacts/.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from choreokit.tracing import flow_label
from tests.e2e.system import run_demo, running_dev
from tests.observer_fixtures import ARTIFACTS
from tests.rig.jaeger import RELEASE, UI_PLACEHOLDER, Jaeger
from tests.support import wait_until

pytestmark = pytest.mark.slow

ORDERS = 12
SEED = 4  # 12 orders of seed 4: every kind of injected failure, both order.placed versions
CONVERSATION = "messaging.message.conversation_id"
MESSAGE_ID = "messaging.message.id"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass(frozen=True)
class Span:
    """One span as Jaeger's API v3 (OTLP JSON) returns it."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    service: str
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...]
    event_attributes: frozenset[str]
    """Every attribute name on the span's events (``exception.type``, ...)."""


@dataclass(frozen=True)
class TracedDemo:
    jaeger: Jaeger
    observer: str
    summary: dict[str, Any]
    flows: list[dict[str, Any]]
    """The observer's detail of every flow (events, traces, links to Jaeger)."""


def _value(attribute: dict[str, Any]) -> Any:
    value = attribute["value"]
    for kind in ("stringValue", "intValue", "boolValue", "doubleValue"):
        if kind in value:
            return value[kind]
    return value


def _kind(raw: object) -> str:
    names = {2: "server", 3: "client", 4: "producer", 5: "consumer"}
    if isinstance(raw, int):
        return names.get(raw, "internal")
    return str(raw).removeprefix("SPAN_KIND_").lower()


def _span(raw: dict[str, Any], service: str) -> Span:
    return Span(
        trace_id=raw["traceId"],
        span_id=raw["spanId"],
        parent_id=raw.get("parentSpanId", ""),
        name=raw["name"],
        kind=_kind(raw.get("kind", 0)),
        service=service,
        attributes={a["key"]: _value(a) for a in raw.get("attributes", [])},
        links=tuple((link["traceId"], link["spanId"]) for link in raw.get("links", [])),
        event_attributes=frozenset(
            a["key"] for e in raw.get("events", []) for a in e.get("attributes", [])
        ),
    )


def spans_of(jaeger: Jaeger, trace_id: str) -> list[Span]:
    """Every span of one trace, from ``GET /api/v3/traces/{trace_id}`` (empty if unknown)."""
    response = httpx.get(f"{jaeger.url}/api/v3/traces/{trace_id}", timeout=10)
    if response.status_code == 404:
        return []
    response.raise_for_status()
    spans: list[Span] = []
    for resource in response.json()["result"]["resourceSpans"]:
        attrs = {a["key"]: _value(a) for a in resource["resource"].get("attributes", [])}
        service = str(attrs.get("service.name"))
        for scope in resource.get("scopeSpans", []):
            spans.extend(_span(raw, service) for raw in scope.get("spans", []))
    return spans


def traces_of_flow(jaeger: Jaeger, correlation_id: str, since_us: int) -> set[str]:
    """Ids of every trace with a span of this flow, in any service: ``GET /api/traces``."""
    found: set[str] = set()
    for service in jaeger.get("/api/services")["data"] or []:
        traces = jaeger.get(
            "/api/traces",
            service=service,
            tags=json.dumps({CONVERSATION: flow_label(correlation_id)}),
            start=str(since_us),
            end=str(int(time.time() * 1e6) + 60_000_000),
            limit="50",
        )
        found.update(str(t["traceID"]) for t in traces["data"] or [])
    return found


def flow_problems(jaeger: Jaeger, flow: dict[str, Any], since_us: int) -> list[str]:
    """What Jaeger lacks for this flow to be one whole trace; empty when it is."""
    cid = flow["correlation_id"]
    label = flow_label(cid)  # what spans call the flow
    expected = {t["trace_id"] for t in flow["traces"]}
    found = traces_of_flow(jaeger, cid, since_us)
    if found != expected:
        return [f"flow {cid}: Jaeger finds traces {sorted(found)}, its events carry {expected}"]
    (trace_id,) = found
    spans = spans_of(jaeger, trace_id)
    ids = {s.span_id for s in spans}
    problems = [
        f"flow {cid}: {s.service} span {s.name!r} belongs to flow {s.attributes[CONVERSATION]}"
        for s in spans
        if s.attributes.get(CONVERSATION, label) != label
    ]
    by_kind: dict[tuple[str, str, str], list[Span]] = defaultdict(list)
    for s in spans:
        by_kind[s.kind, s.service, str(s.attributes.get(MESSAGE_ID))].append(s)
    events = {e["id"]: e for e in flow["events"]}
    for event in flow["events"]:
        if not by_kind["producer", event["service"], event["id"]]:
            problems.append(f"flow {cid}: no 'send' span of {event['type']} in {event['service']}")
        cause = event["causation_id"]
        if cause in events and not by_kind["consumer", event["service"], cause]:
            problems.append(
                f"flow {cid}: {event['service']} published {event['type']} but has no 'process' "
                f"span of its cause {events[cause]['type']}"
            )
    problems.extend(  # the observer's saga.* events go out in the same trace
        f"flow {cid}: no 'send' span of the observer's {announced['type']}"
        for announced in flow["lifecycle"]
        if announced["sent_at"] and not by_kind["producer", "saga-observer", announced["id"]]
    )
    problems.extend(  # docs/tracing.md: exception types only, never their messages
        f"flow {cid}: {s.name!r} in {s.service} records an exception's message or stacktrace"
        for s in spans
        if s.event_attributes & {"exception.message", "exception.stacktrace"}
    )
    for s in spans:
        if s.kind == "consumer":
            linked = any(t == trace_id and span in ids for t, span in s.links)
            if s.parent_id not in ids and not linked:
                problems.append(
                    f"flow {cid}: consumer span {s.name!r} in {s.service} has parent "
                    f"{s.parent_id or 'none'} and links {s.links}, none inside trace {trace_id}"
                )
        elif s.parent_id and s.parent_id not in ids:
            problems.append(f"flow {cid}: {s.name!r} in {s.service} names a missing parent")
    return problems


@pytest.fixture(scope="module")
def traced_demo(jaeger: Jaeger, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedDemo]:
    """One `choreo dev` exporting to the session's Jaeger, driven once by `choreo demo`."""
    tmp_path = tmp_path_factory.mktemp("jaeger-demo")
    env = {**jaeger.exporting_env(), "CHOREO_JAEGER_URL": jaeger.url}
    with running_dev(tmp_path / "dev", env) as dev:
        observer = f"http://127.0.0.1:{dev.env['CHOREO_OBSERVER_PORT']}"
        summary = run_demo(
            "--orders",
            str(ORDERS),
            "--seed",
            str(SEED),
            "--bootstrap",
            dev.bootstrap,
            "--orders-url",
            dev.orders_url,
        )
        assert summary["exit_code"] == 0, summary["stderr"]

        def judged() -> bool:
            counts = httpx.get(f"{observer}/api/counts", params={"saga": "order"}, timeout=10)
            body = counts.json()
            return bool(body["total"] == ORDERS and body["by_status"]["running"] == 0)

        wait_until(judged, timeout=120, what=f"the observer to judge all {ORDERS} flows")
        page = httpx.get(
            f"{observer}/api/flows", params={"saga": "order", "limit": 100}, timeout=10
        ).json()
        flows = [
            httpx.get(f"{observer}/api/flows/{item['correlation_id']}", timeout=10).json()
            for item in page["items"]
        ]
        yield TracedDemo(jaeger, observer, summary, flows)


def test_each_order_is_one_trace_in_jaeger_with_every_service_that_handled_it(
    traced_demo: TracedDemo,
) -> None:
    jaeger, flows = traced_demo.jaeger, traced_demo.flows
    assert len(flows) == ORDERS
    assert set(traced_demo.summary["outcomes"]) == {"completed", "failed", "compensated"}
    for flow in flows:  # the events' own traceparent headers: one trace per flow
        assert len(flow["traces"]) == 1, (flow["correlation_id"], flow["traces"])
    assert len({flow["traces"][0]["trace_id"] for flow in flows}) == ORDERS
    since_us = int((time.time() - 3600) * 1e6)

    deadline = time.monotonic() + 90
    while True:  # spans reach Jaeger in batches: poll its API until every flow is whole
        problems = [p for flow in flows for p in flow_problems(jaeger, flow, since_us)]
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # noqa: sleep-ok - polls Jaeger's query API between checks
    assert problems == [], "\n".join(problems[:30])

    services = {s.service for f in flows for s in spans_of(jaeger, f["traces"][0]["trace_id"])}
    assert {"orders", "inventory", "payments", "shipping"} <= services
    assert {"orders", "inventory", "payments", "shipping"} <= set(
        jaeger.get("/api/services")["data"]
    )


def test_the_observers_jaeger_link_opens_that_trace(
    traced_demo: TracedDemo, capsys: pytest.CaptureFixture[str]
) -> None:
    jaeger = traced_demo.jaeger
    flow = next(f for f in traced_demo.flows if f["status"] == "compensated")
    cid, trace_id = flow["correlation_id"], flow["traces"][0]["trace_id"]
    link = f"{jaeger.url}/trace/{trace_id}"
    assert flow["traces"][0]["jaeger_url"] == link
    wait_until(
        lambda: not flow_problems(jaeger, flow, int((time.time() - 3600) * 1e6)),
        timeout=90,
        what=f"flow {cid} whole in Jaeger",
    )
    services = sorted({e["service"] for e in flow["events"]})
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: scripts/test installs Debian's 'chromium' package")
    ARTIFACTS.mkdir(exist_ok=True)
    shots = (
        ARTIFACTS / "observer-jaeger-link.png",
        ARTIFACTS / "jaeger-trace-link.png",
        ARTIFACTS / "jaeger-trace-api.png",
    )
    with sync_playwright() as playwright:
        browser: Browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{traced_demo.observer}/#/flow/{cid}")
            expect(page.get_by_test_id("flow-status")).to_have_text("compensated")
            anchor = page.get_by_test_id("jaeger-link").first
            expect(anchor).to_contain_text(f"Trace {trace_id[:12]}")
            assert anchor.get_attribute("href") == link
            page.screenshot(path=str(shots[0]), full_page=True)

            with page.expect_popup() as popup:
                anchor.click()
            opened = popup.value
            opened.wait_for_load_state()
            assert opened.url == link
            # A go-install build embeds no UI assets: Jaeger answers the link with its
            # placeholder page (stamped with its version) and serves the trace to the API the
            # UI would call. A binary with the UI would fail here: assert on the drawn trace.
            expect(opened.locator("body")).to_contain_text(UI_PLACEHOLDER)
            expect(opened.locator("body")).to_contain_text(f"v{RELEASE}")
            served = opened.evaluate(
                "async (id) => (await fetch('/api/traces/' + id)).json()", trace_id
            )
            opened.screenshot(path=str(shots[1]), full_page=True)
            # What the UI would draw, as the query API gives it at the same origin.
            opened.goto(f"{jaeger.url}/api/traces/{trace_id}")
            for text in (trace_id, *services):
                expect(opened.locator("body")).to_contain_text(text)
            opened.screenshot(path=str(shots[2]))
        finally:
            browser.close()
    (trace,) = served["data"]
    assert trace["traceID"] == trace_id
    drawn = {p["serviceName"] for p in trace["processes"].values()}
    assert set(services) <= drawn, (services, drawn)
    conversation = {
        t["value"] for s in trace["spans"] for t in s["tags"] if t["key"] == CONVERSATION
    }
    assert conversation == {flow_label(cid)}
    with capsys.disabled():
        print("\nscreenshots:", *shots)
