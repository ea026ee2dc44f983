"""Who uses a contract: the services that publish and that handle an event type and version.

Read from AsyncAPI documents (``schemas/asyncapi.yaml`` as committed, and the one
the declared services make now): a ``send`` operation whose message is
``TYPE.vN`` publishes it; a ``receive`` operation that lists it handles it (a
handler of version K lists every version up to K, which arrive upcast). So an
incompatible change names the services it breaks, including those whose code
is not at hand but whose operations the committed document records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_TAG = "service:"


@dataclass(frozen=True, slots=True)
class ContractUsers:
    """The services that publish and that handle one event type and version.

    Attributes:
        publishers: Services with a ``send`` operation of the version, sorted.
        handlers: Services with a ``receive`` operation that takes it, sorted.
    """

    publishers: tuple[str, ...]
    handlers: tuple[str, ...]

    def __str__(self) -> str:
        return (
            f"published by {', '.join(self.publishers) or 'no declared service'}; "
            f"handled by {', '.join(self.handlers) or 'no declared service'}"
        )


def _service(key: str, operation: Mapping[str, Any]) -> str:
    for tag in operation.get("tags") or ():
        name = tag.get("name") if isinstance(tag, Mapping) else None
        if isinstance(name, str) and name.startswith(_TAG):
            return name[len(_TAG) :]
    return key.split(".", 1)[0]


def contract_users(
    documents: Iterable[Mapping[str, Any]], event_type: str, version: int
) -> ContractUsers:
    """The services of ``documents``' operations that publish or handle ``event_type`` v``version``.

    Malformed parts of a document (a hand-edited file) are skipped, never fatal.
    """
    message = f"/messages/{event_type}.v{version}"
    publishers: set[str] = set()
    handlers: set[str] = set()
    for document in documents:
        operations = document.get("operations")
        if not isinstance(operations, Mapping):
            continue
        for key, operation in operations.items():
            if not isinstance(operation, Mapping):
                continue
            refs = [
                m.get("$ref") for m in operation.get("messages") or () if isinstance(m, Mapping)
            ]
            if not any(isinstance(r, str) and r.endswith(message) for r in refs):
                continue
            action = operation.get("action")
            if action == "send":
                publishers.add(_service(str(key), operation))
            elif action == "receive":
                handlers.add(_service(str(key), operation))
    return ContractUsers(tuple(sorted(publishers)), tuple(sorted(handlers)))
