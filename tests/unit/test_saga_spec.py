"""Saga specs: declared in Python with event classes or in YAML, validated with clear errors."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from choreokit.events import ConfigurationError, SagaSpec, sagas_from_entry_points, sagas_from_yaml
from choreokit.services.example.contracts.inventory import StockReleased, StockReserved
from choreokit.services.example.contracts.orders import OrderCancelled, OrderConfirmed, OrderPlaced
from choreokit.services.example.contracts.saga import ORDER_SAGA
from choreokit.services.runtime.discovery import EXAMPLE_ENV, declared_sagas
from choreokit.services.saga_observer import SagaCatalog, load_catalog

DOCS = Path(__file__).resolve().parents[2] / "docs" / "saga-observer.md"


def _minimal(**changes: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "name": "order",
        "start": "order.placed",
        "success": ["order.confirmed"],
        "failure": ["order.cancelled"],
    }
    spec.update(changes)
    return spec


def test_a_spec_is_declared_with_the_event_classes() -> None:
    spec = SagaSpec.declare(
        "order",
        start=OrderPlaced,
        success=[OrderConfirmed],
        failure=[OrderCancelled],
        steps={OrderPlaced: [StockReserved]},
        compensations={StockReserved: StockReleased},
        timeout=timedelta(seconds=5),
    )
    assert spec.start == "order.placed"
    assert spec.success == ("order.confirmed",)
    assert spec.steps == {"order.placed": ("stock.reserved",)}
    assert spec.compensations == {"stock.reserved": "stock.released"}
    assert spec.types == {
        "order.placed",
        "order.confirmed",
        "order.cancelled",
        "stock.reserved",
        "stock.released",
    }


def test_the_order_saga_requires_the_compensations_of_what_happened() -> None:
    assert ORDER_SAGA.required_compensations({"order.placed", "stock.rejected"}) == ()
    assert ORDER_SAGA.required_compensations({"stock.reserved", "payment.declined"}) == (
        "stock.released",
    )
    assert set(ORDER_SAGA.required_compensations({"stock.reserved", "payment.authorized"})) == {
        "stock.released",
        "payment.refunded",
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"success": []}, "success"),
        ({"failure": ["order.confirmed"]}, "both a success and a failure end"),
        ({"success": ["order.placed"]}, "cannot also end the flow"),
        ({"compensations": {"stock.reserved": "stock.reserved"}}, "cannot compensate itself"),
        ({"start": "order placed!"}, "is not an event type"),
        ({"steps": {"order.placed": []}}, "lists no following type"),
        ({"timeout": "0s"}, "must be positive"),
        ({"name": "Order Saga"}, "name"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_an_inconsistent_spec_is_refused_saying_where(
    changes: dict[str, object], message: str, tmp_path: Path
) -> None:
    path = tmp_path / "saga.yaml"
    path.write_text(yaml.safe_dump(_minimal(**changes)))
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        sagas_from_yaml(path)


def test_a_python_declaration_is_checked_the_same_way() -> None:
    with pytest.raises(ConfigurationError, match=r"saga 'order' is invalid: .*cannot also end"):
        SagaSpec.declare("order", start=OrderPlaced, success=[OrderPlaced])


def test_yaml_specs_load_in_every_accepted_shape(tmp_path: Path) -> None:
    single = tmp_path / "single.yaml"
    single.write_text("name: order\nstart: order.placed\nsuccess: [order.confirmed]\n")
    listed = tmp_path / "listed.yaml"
    listed.write_text(
        "- name: a\n  start: a.started\n  success: [a.done]\n"
        "- name: b\n  start: b.started\n  success: [b.done]\n  timeout: 90s\n"
    )
    wrapped = tmp_path / "wrapped.yaml"
    wrapped.write_text("sagas:\n  - name: c\n    start: c.started\n    success: [c.done]\n")
    assert [s.name for s in sagas_from_yaml(single)] == ["order"]
    a, b = sagas_from_yaml(listed)
    assert b.timeout == timedelta(seconds=90)
    assert a.timeout == timedelta(seconds=60)
    assert [s.name for s in sagas_from_yaml(wrapped)] == ["c"]


def test_bad_yaml_is_refused_naming_the_file_and_the_saga(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigurationError, match="cannot read saga specs"):
        sagas_from_yaml(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("sagas: [\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        sagas_from_yaml(broken)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigurationError, match="expected a saga spec"):
        sagas_from_yaml(empty)
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("- name: order\n  start: order.placed\n  success: []\n")
    with pytest.raises(ConfigurationError, match=r"invalid\.yaml: saga order is invalid: success"):
        sagas_from_yaml(invalid)


def test_the_yaml_example_in_the_docs_is_the_order_saga(tmp_path: Path) -> None:
    text = DOCS.read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert block, "docs/saga-observer.md shows the order saga in YAML"
    path = tmp_path / "order.yaml"
    path.write_text(block.group(1))
    (spec,) = sagas_from_yaml(path)
    assert spec == ORDER_SAGA


def test_the_order_saga_is_declared_only_when_the_example_is_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(EXAMPLE_ENV, "0")
    assert ORDER_SAGA not in declared_sagas()
    assert ORDER_SAGA not in sagas_from_entry_points()  # the distribution does not register it
    monkeypatch.setenv(EXAMPLE_ENV, "1")
    assert ORDER_SAGA in declared_sagas()


def test_yaml_replaces_a_declared_saga_of_the_same_name(tmp_path: Path) -> None:
    path = tmp_path / "order.yaml"
    path.write_text("name: order\nstart: order.placed\nsuccess: [order.confirmed]\ntimeout: 5s\n")
    catalog = load_catalog([path])
    spec = catalog.get("order")
    assert spec is not None
    assert spec.timeout == timedelta(seconds=5)
    assert spec.steps == {}


def test_a_catalog_refuses_ambiguity_and_finds_a_flows_saga() -> None:
    other = SagaSpec.declare("refund", start="refund.requested", success=["refund.paid"])
    catalog = SagaCatalog([ORDER_SAGA, other])
    assert catalog.for_flow("order.placed", ["order.placed"]) is ORDER_SAGA
    assert catalog.for_flow(None, ["stock.reserved"]) is ORDER_SAGA  # start not seen yet
    assert catalog.for_flow(None, ["refund.paid"]) is other
    assert catalog.for_flow("user.signed_up", ["user.signed_up"]) is None
    with pytest.raises(ConfigurationError, match="two sagas are named 'order'"):
        SagaCatalog([ORDER_SAGA, ORDER_SAGA])
    twin = SagaSpec.declare("twin", start="order.placed", success=["x.done"])
    with pytest.raises(ConfigurationError, match=r"both start with 'order\.placed'"):
        SagaCatalog([ORDER_SAGA, twin])
    quick = catalog.with_timeout(timedelta(seconds=2))
    assert {s.timeout for s in quick} == {timedelta(seconds=2)}
    assert catalog.with_timeout(None) is catalog


def test_a_step_gets_a_deadline_of_its_own_in_python_and_yaml(tmp_path: Path) -> None:
    from choreokit.events import SagaStep
    from choreokit.services.example.contracts.payments import PaymentAuthorized, PaymentDeclined

    declared = SagaSpec.declare(
        "order",
        start=OrderPlaced,
        success=[OrderConfirmed],
        steps={
            OrderPlaced: [StockReserved],
            StockReserved: SagaStep(
                [PaymentAuthorized, PaymentDeclined], deadline=timedelta(seconds=30)
            ),
        },
    )
    assert declared.steps["stock.reserved"] == ("payment.authorized", "payment.declined")
    assert declared.deadline_of("stock.reserved") == timedelta(seconds=30)
    assert declared.deadline_of("order.placed") is None
    path = tmp_path / "sagas.yaml"
    path.write_text(
        yaml.safe_dump(
            _minimal(
                steps={
                    "order.placed": ["stock.reserved"],
                    "stock.reserved": {
                        "next": ["payment.authorized", "payment.declined"],
                        "deadline": "30s",
                    },
                }
            )
        )
    )
    (from_yaml,) = sagas_from_yaml(path)
    assert from_yaml.steps == {
        "order.placed": ("stock.reserved",),
        "stock.reserved": ("payment.authorized", "payment.declined"),
    }
    assert from_yaml.deadlines == {"stock.reserved": timedelta(seconds=30)}
    # a spec without deadlines reads as before
    assert SagaSpec.model_validate(_minimal()).deadlines == {}


def test_a_step_deadline_must_be_positive_bounded_and_belong_to_a_step() -> None:
    from choreokit.events import SagaStep

    with pytest.raises(ConfigurationError, match="must be positive and at most 30 days"):
        SagaSpec.declare(
            "order",
            start=OrderPlaced,
            success=[OrderConfirmed],
            steps={OrderPlaced: SagaStep([OrderConfirmed], deadline=timedelta(0))},
        )
    with pytest.raises(ConfigurationError, match="must be positive and at most 30 days"):
        SagaSpec.declare(
            "order",
            start=OrderPlaced,
            success=[OrderConfirmed],
            steps={OrderPlaced: SagaStep([OrderConfirmed], deadline=timedelta(days=31))},
        )
    with pytest.raises(ValueError, match=re.escape("deadlines name ['stock.reserved']")):
        SagaSpec.model_validate(_minimal(deadlines={"stock.reserved": "5s"}))
    with pytest.raises(ValueError, match="given twice"):
        SagaSpec.model_validate(
            _minimal(
                steps={"order.placed": {"next": ["order.confirmed"], "deadline": "1s"}},
                deadlines={"order.placed": "2s"},
            )
        )
    with pytest.raises(ValueError, match="at least 1 item"):
        SagaSpec.model_validate(_minimal(steps={"order.placed": {"next": []}}))
