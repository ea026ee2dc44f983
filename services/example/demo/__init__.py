"""The demo: drive orders with a deterministic mix of failures and judge every flow."""

from choreokit.services.example.demo.plan import Kind, Outcome, PlannedOrder, plan
from choreokit.services.example.demo.report import Summary, summarise
from choreokit.services.example.demo.tracker import FlowTracker

__all__ = ["FlowTracker", "Kind", "Outcome", "PlannedOrder", "Summary", "plan", "summarise"]
