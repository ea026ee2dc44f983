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
from functools import cached_property


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

    Args:
        correlation_id: The flow's id.
        nodes: Its events, in any order.
    """

    def __init__(self, correlation_id: str, nodes: Iterable[Node]) -> None:
        self.correlation_id = correlation_id
        ordered = sorted(nodes, key=lambda n: (n.time_us, n.id))
        self.nodes: dict[str, Node] = {n.id: n for n in ordered}
        children: dict[str, list[str]] = defaultdict(list)
        edges: list[tuple[str, str]] = []
        for node in ordered:
            parents = (node.causation_id, *node.joined) if node.causation_id else node.joined
            for parent in dict.fromkeys(parents):
                if parent in self.nodes and parent != node.id:
                    children[parent].append(node.id)
                    edges.append((parent, node.id))
        self.children: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in children.items()}
        self._edges = tuple(edges)

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        """The events by time, then id."""
        return iter(self.nodes.values())

    @cached_property
    def types(self) -> Counter[str]:
        """How many events of each type the flow has."""
        return Counter(n.type for n in self.nodes.values())

    @cached_property
    def roots(self) -> tuple[Node, ...]:
        """Events that name no cause (normally exactly one: the start event)."""
        return tuple(n for n in self.nodes.values() if n.causation_id is None)

    @cached_property
    def orphans(self) -> tuple[Node, ...]:
        """Events whose named cause is not (yet) part of the flow."""
        return tuple(
            n
            for n in self.nodes.values()
            if n.causation_id is not None and n.causation_id not in self.nodes
        )

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
