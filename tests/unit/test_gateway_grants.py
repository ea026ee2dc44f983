"""Gateway grants: sources matched normalised, start-only types, and flow-ending types that
untrusted keys publish only inside flows of their own; attribute bounds as consumers have."""

from __future__ import annotations

import pytest

from choreokit.services.gateway import mint_key
from choreokit.services.gateway._admission import RefusedError, admit
from choreokit.services.gateway._binding import Mode, RawEvent, parse
from choreokit.services.gateway._keys import normalise_source
from choreokit.services.gateway._problems import Problem, ProblemKind
from tests.support import catalog
from tests.unit.test_gateway_admission import ce, raw

ACME = mint_key("acme", types=("item.*",), sources=("/partners/acme/*",)).entry
STARTER = mint_key("starter", starts=("item.added",)).entry
ENDERS = frozenset({"item.counted"})


@pytest.mark.parametrize(
    ("source", "normal"),
    [
        ("/partners/acme/../../services/orders", "/services/orders"),
        ("/partners/acme/%2e%2e/%2E%2E/services/orders", "/services/orders"),
        ("/partners/acme/%252e%252e/%252e%252e/services/orders", "/services/orders"),
        ("/partners//acme///eu", "/partners/acme/eu"),
        ("/partners/acme/./eu/", "/partners/acme/eu/"),
        ("/../../../etc", "/etc"),
        ("https://Example.COM/a/../b", "https://example.com/b"),
        ("/partners/acme%2F..%2F..%2Fservices", "/services"),
    ],
)
def test_sources_are_normalised(source: str, normal: str) -> None:
    assert normalise_source(source) == normal


@pytest.mark.parametrize(
    "source",
    [
        "/partners/acme/../../services/orders",
        "/partners/acme/%2e%2e/%2e%2e/services/orders",
        "/partners/acme/..%2f..%2fservices/orders",
        "/partners//acme/..//../services/orders",
        "/partners/acme",  # the prefix grant is for what lies under /partners/acme/
        "/partners/acmecorp/x",
    ],
)
def test_a_source_that_climbs_out_of_its_grant_is_forbidden(source: str) -> None:
    with pytest.raises(RefusedError) as caught:
        admit(raw(source=source), ACME, catalog().registry)
    assert caught.value.items[0].attribute == "source"


def test_a_granted_source_is_forwarded_normalised() -> None:
    admitted = admit(raw(source="/partners//acme/eu/./x"), ACME, catalog().registry)
    assert admitted.source == "/partners/acme/eu/x"


def test_a_start_only_grant_starts_flows_and_never_joins_one() -> None:
    registry = catalog().registry
    assert admit(raw(), STARTER, registry).correlation_id == "starter:e-1"
    for joining in (raw(correlationid="flow"), raw(causationid="e-0")):
        with pytest.raises(RefusedError) as caught:
            admit(joining, STARTER, registry)
        assert "only to start a flow" in caught.value.items[0].message
    with pytest.raises(RefusedError):
        admit(raw("item.counted", version=1), STARTER, registry)


def test_an_untrusted_key_ends_or_compensates_only_flows_of_its_own() -> None:
    registry = catalog().registry
    ender = raw("item.counted", version=1, source="/partners/acme/x")
    with pytest.raises(RefusedError) as caught:
        admit(ender, ACME, registry, ENDERS)
    assert caught.value.items[0].attribute == "correlationid"
    own = raw("item.counted", version=1, source="/partners/acme/x", correlationid="mine")
    assert admit(own, ACME, registry, ENDERS).correlation_id == "acme:mine"
    trusted = mint_key("core", types=("item.*",), trusted=True).entry
    assert admit(raw("item.counted", version=1), trusted, registry, ENDERS).correlation_id


def test_a_key_must_grant_something() -> None:
    with pytest.raises(Exception, match="types' or 'starts'"):
        mint_key("nothing", types=())


@pytest.mark.parametrize(
    "header",
    [
        {"ce_time": "9999-12-31T23:59:59Z"},
        {"ce_time": "1969-12-31T23:59:59Z"},
        {"ce_time": "0001-01-01T00:00:00-23:59"},
        {"ce_source": "/partners/acme/%E2%80%AEsredro"},  # a percent-encoded bidi override
        {"ce_id": "a%E2%80%8Bb"},  # a zero-width space
    ],
)
def test_the_gateway_refuses_what_consumers_would_dead_letter(header: dict[str, str]) -> None:
    with pytest.raises(Problem) as caught:
        parse(Mode.BINARY, ce(**header), b'{"n": 1, "label": "x"}')
    assert caught.value.kind is ProblemKind.MALFORMED


def test_a_trusted_key_granted_approvals_decides_a_waiting_flow_through_the_gateway() -> None:
    """The gateway is one of the ways an approval arrives (docs/saga-observer.md)."""
    from choreokit.events import default_registry

    approver = mint_key("approver", types=("approval.*",), trusted=True).entry
    decision = RawEvent(
        {
            "specversion": "1.0",
            "id": "d-1",
            "source": "/partners/approver",
            "type": "approval.granted",
            "correlationid": "flow-7",
            "causationid": "req-1",
        },
        data={"flow": "flow-7", "step": "payment", "actor": "ops-lea", "reason": "ok"},
    )
    admitted = admit(decision, approver, default_registry)
    assert (admitted.correlation_id, admitted.causation_id) == ("flow-7", "req-1")
    # An untrusted key's events live in flows of its own: it cannot decide another's flow.
    outsider = mint_key("outsider", types=("approval.*",)).entry
    assert admit(decision, outsider, default_registry).correlation_id == "outsider:flow-7"


TOOLKIT_TYPES = ("approval.granted", "orchestration.run", "saga.stalled")


@pytest.mark.parametrize("grant", ["*", "a*", "approval*", "o*", "s*"])
def test_a_wildcard_grant_does_not_cover_the_toolkits_own_report_types(grant: str) -> None:
    """Approvals, orchestration reports and lifecycle events are trusted by the observer."""
    for wide in (
        mint_key("wide", types=(grant,), trusted=True).entry,
        mint_key("wide", starts=(grant,), trusted=True).entry,
    ):
        for event_type in TOOLKIT_TYPES:
            if not event_type.startswith(grant.rstrip("*")):
                continue
            assert not wide.may_publish(event_type)
            with pytest.raises(RefusedError) as caught:
                admit(raw(event_type, version=1), wide, catalog().registry)
            (item,) = caught.value.items
            assert (item.kind, item.attribute, item.rule) == (
                ProblemKind.FORBIDDEN,
                "type",
                "toolkit_type",
            )
            namespace = event_type.split(".")[0]
            assert f"'{namespace}.*'" in item.message
            assert "wildcard grant does not cover" in item.message
    assert mint_key("wide", types=("*",)).entry.may_publish("item.added")


def test_a_grant_naming_a_toolkit_type_or_its_namespace_covers_it_and_no_more() -> None:
    one = mint_key("one", types=("approval.granted",), trusted=True).entry
    assert one.may_publish("approval.granted")
    assert not one.may_publish("approval.rejected")
    assert not one.reserved_by_wildcard("approval.rejected")  # plainly not granted
    spaced = mint_key("spaced", types=("approval.*", "saga.stalled"), trusted=True).entry
    assert spaced.may_publish("approval.rejected")
    assert spaced.may_publish("saga.stalled")
    assert not spaced.may_publish("saga.completed")
    assert not spaced.may_publish("orchestration.run")


def test_every_type_the_toolkit_publishes_is_in_a_toolkit_namespace() -> None:
    """A new report type outside these namespaces would be open to wildcard grants again."""
    from choreokit.events import APPROVAL_EVENTS, TOOLKIT_TYPE_NAMESPACES, Event, toolkit_namespace
    from choreokit.events.orchestration import OrchestrationRun
    from choreokit.services.saga_observer.events import LIFECYCLE_EVENTS

    models: list[type[Event]] = [*APPROVAL_EVENTS, OrchestrationRun, *LIFECYCLE_EVENTS]
    for model in models:
        namespace = toolkit_namespace(model.event_info().type)
        assert namespace is not None, model
        assert namespace in TOOLKIT_TYPE_NAMESPACES
    assert toolkit_namespace("order.placed") is None
    assert toolkit_namespace("sagas.x") is None  # a namespace is its prefix with the dot
