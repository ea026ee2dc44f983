"""The demo: drive orders with a deterministic mix of failures and judge every flow."""

from services.demo.plan import Kind, Outcome, PlannedOrder, plan
from services.demo.report import Summary, summarise
from services.demo.tracker import FlowTracker

__all__ = ["FlowTracker", "Kind", "Outcome", "PlannedOrder", "Summary", "plan", "summarise"]
