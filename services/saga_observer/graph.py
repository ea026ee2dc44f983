"""A flow as a causation graph: events are nodes, ``causation id -> id`` are the edges.

A join's output (``ce_joined``) also has an edge from each other input it joined.

The graph is built from the *set* of a flow's events, never from the order in
which they arrived: an effect that arrives before its cause is an orphan until
the cause arrives, and is then simply placed under it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Node:
    """One event of a flow, as far as the graph and the judgement need it.

    Attributes:
        id: The event's ``ce_id``.
        type: Its type.
        time_us: Its ``ce_time`` in microseconds since the epoch.
        causation_id: The ``ce_id`` of its cause, if it names one.
        service: The service that published it (from ``ce_source``).
        joined: For a join's output, the other inputs it joined (``ce_joined``):
            besides its cause, each is a parent of it in the graph.
    """

    id: str
    type: str
    time_us: int
    causation_id: str | None
    service: str
    joined: tuple[str, ...] = ()


class FlowGraph:
    """The causation graph of one flow (one correlation id).

    A graph is not changed once built: :meth:`extended` builds the graph with more
    events from this one, sharing nothing mutable with it.

    Args:
        correlation_id: The flow's id.
        nodes: Its events, in any order.
    """

    __slots__ = (
        "_edges",
        "_first_of",
        "_missing",
        "_services",
        "children",
        "correlation_id",
        "nodes",
        "orphans",
        "roots",
        "types",
    )

    correlation_id: str
    nodes: dict[str, Node]
    """The events by id, in order of time, then id."""
    children: dict[str, tuple[str, ...]]
    """Each cause's effects present, in order of the effects' time, then id."""
    types: Counter[str]
    """How many events of each type the flow has."""
    roots: tuple[Node, ...]
    """Events that name no cause (normally exactly one: the start event)."""
    orphans: tuple[Node, ...]
    """Events whose named cause is not (yet) part of the flow."""

    def __init__(self, correlation_id: str, nodes: Iterable[Node]) -> None:
        self.correlation_id = correlation_id
        ordered = sorted(nodes, key=_order)
        self.nodes = {n.id: n for n in ordered}
        self.children = {}
        self._edges: tuple[tuple[str, str], ...] = ()
        self._missing: frozenset[str] = frozenset()
        self._first_of: dict[str, Node] = {}
        self.types = Counter()
        self.roots = ()
        self.orphans = ()
        self._services: tuple[str, ...] | None = None
        if len(self.nodes) == len(ordered):
            self._add(ordered)
        else:  # the same id twice: each copy is a child of its cause, the last copy the node
            self._add(list(self.nodes.values()))
            children: dict[str, list[str]] = defaultdict(list)
            edges: list[tuple[str, str]] = []
            for node in ordered:
                parents = (node.causation_id, *node.joined) if node.causation_id else node.joined
                for parent in dict.fromkeys(parents):
                    if parent in self.nodes and parent != node.id:
                        children[parent].append(node.id)
                        edges.append((parent, node.id))
            self.children = {k: tuple(v) for k, v in children.items()}
            self._edges = tuple(edges)

    def _add(self, ordered: list[Node]) -> None:
        """Place ``ordered`` (each after every event already here) into the graph."""
        present = self.nodes
        children = self.children
        first_of = self._first_of
        types = self.types
        edges: list[tuple[str, str]] = []
        missing: list[str] = []
        roots: list[Node] = []
        orphans: list[Node] = []
        for node in ordered:
            if node.type not in first_of:
                first_of[node.type] = node
            types[node.type] = types.get(node.type, 0) + 1
            cause = node.causation_id
            if cause is None:
                roots.append(node)
            elif cause not in present:
                orphans.append(node)
            for parent in _parents(node):
                if parent in present:
                    if parent != node.id:
                        children[parent] = (*children.get(parent, ()), node.id)
                        edges.append((parent, node.id))
                else:
                    missing.append(parent)
        if edges:
            self._edges = (*self._edges, *edges)
        if missing:
            self._missing = self._missing.union(missing)
        if roots:
            self.roots = (*self.roots, *roots)
        if orphans:
            self.orphans = (*self.orphans, *orphans)

    def extended(self, nodes: Iterable[Node]) -> FlowGraph:
        """The graph of this flow's events and ``nodes``: ``FlowGraph(id, [*self, *nodes])``.

        When the new events all come after the ones here (by time, then id) and none
        is a cause an event here names, the graph grows from a copy of this one: the
        work in Python is proportional to the new events (the containers are copied
        whole, but by C code); otherwise it is built anew.
        """
        new = list(nodes)
        if not new:
            return self
        if len(new) > 1:
            new.sort(key=_order)
        ids = {n.id for n in new}
        last = next(reversed(self.nodes.values()), None)
        if (
            len(ids) != len(new)
            or not ids.isdisjoint(self.nodes)
            or (self._missing and not ids.isdisjoint(self._missing))
            or (last is not None and _order(new[0]) <= _order(last))
        ):
            return FlowGraph(self.correlation_id, [*self.nodes.values(), *new])
        grown = object.__new__(FlowGraph)
        grown.correlation_id = self.correlation_id
        grown.nodes = self.nodes | {n.id: n for n in new}
        grown.children = dict(self.children)
        grown._edges = self._edges
        grown._missing = self._missing
        grown._first_of = dict(self._first_of)
        grown.types = Counter()
        dict.update(grown.types, self.types)  # a copy without Counter's slower update
        grown.roots = self.roots
        grown.orphans = self.orphans
        grown._services = None
        grown._add(new)
        return grown

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        """The events by time, then id."""
        return iter(self.nodes.values())

    @property
    def first(self) -> Node:
        """The earliest event (by time, then id); the graph must not be empty."""
        return next(iter(self.nodes.values()))

    @property
    def last(self) -> Node:
        """The latest event (by time, then id); the graph must not be empty."""
        return next(reversed(self.nodes.values()))

    def first_of(self, event_type: str) -> Node | None:
        """The earliest event of ``event_type`` (by time, then id), if any."""
        return self._first_of.get(event_type)

    @property
    def services(self) -> tuple[str, ...]:
        """The services that published the flow's events, sorted."""
        if self._services is None:
            self._services = tuple(sorted({n.service for n in self.nodes.values()}))
        return self._services

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        """``(cause id, effect id)`` for every effect whose cause is present.

        A join's output has an edge from its cause and from every other input it
        joined (one node, several parents).
        """
        return self._edges

    def root(self, start_type: str | None = None) -> Node | None:
        """The flow's root: the event whose id is the correlation id, else the earliest root.

        With ``start_type``, an earliest root of that type is preferred.
        """
        by_id = self.nodes.get(self.correlation_id)
        if by_id is not None and by_id.causation_id is None:
            return by_id
        if start_type is not None:
            for node in self.roots:
                if node.type == start_type:
                    return node
        return self.roots[0] if self.roots else None

    def reachable(self, root_id: str) -> set[str]:
        """Every event reachable from ``root_id`` by following causation edges."""
        seen = {root_id}
        stack = [root_id]
        while stack:
            for child in self.children.get(stack.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return seen

    def is_connected_tree(self, start_type: str | None = None) -> bool:
        """Whether the flow is one tree: a single root (of ``start_type``) reaching every event."""
        if len(self.roots) != 1 or self.orphans:
            return False
        root = self.roots[0]
        if start_type is not None and root.type != start_type:
            return False
        return len(self.reachable(root.id)) == len(self.nodes)

    def depth(self) -> dict[str, int]:
        """Each event's distance from its root (orphans and their effects count from 0)."""
        depth: dict[str, int] = {}
        starts = [*self.roots, *self.orphans]
        for start in starts:
            depth[start.id] = 0
            stack = [start.id]
            while stack:
                current = stack.pop()
                for child in self.children.get(current, ()):
                    if child not in depth:
                        depth[child] = depth[current] + 1
                        stack.append(child)
        for node_id in self.nodes:  # cycles have no way in: show them at the top
            depth.setdefault(node_id, 0)
        return depth


def _parents(node: Node) -> Iterable[str]:
    """The ids of ``node``'s causes: its causation id, then the other inputs it joined."""
    cause, joined = node.causation_id, node.joined
    if cause:
        return dict.fromkeys((cause, *joined)) if joined else (cause,)
    return dict.fromkeys(joined) if joined else ()


def _order(node: Node) -> tuple[int, str]:
    return (node.time_us, node.id)
