"""Dead-letter operations: list, group, show, replay to the group that failed, purge.

A consumer group that gives up on a record writes it to ``<topic>.dlq`` with
the error (see ``docs/events.md``). This package reads those topics back for
an operator (the ``choreo dlq`` commands and the saga observer use it):

* :class:`DeadLetterStore` reads every ``*.dlq`` topic and the audit topic
  ``choreo.dlq.audit``, and replays or purges dead letters, auditing each act;
* :class:`DeadLetterFilter` selects by topic, group, error, event type, flow,
  failure group and time; :func:`failure_groups` groups by fingerprint (error
  type, normalised message, top frame).

A replay goes back to the original topic with a ``choreo_replay_group`` header
naming the failed group: that group's consumers handle it and report the
outcome to the audit topic, every other group's consumers skip and count it.
See ``docs/reliability.md``.
"""

from choreokit.events._dead_letter import AUDIT_TOPIC
from choreokit.events.dlq._letters import (
    DeadLetter,
    DeadLetterFilter,
    FailureGroup,
    Replay,
    Status,
    failure_groups,
    fingerprint,
    normalise_message,
    parse,
)
from choreokit.events.dlq._operations import (
    OPERATOR_ENV,
    DeadLetterNotFoundError,
    DeadLetterStore,
    ReplayRefusedError,
    ReplayResult,
    default_operator,
)

__all__ = [
    "AUDIT_TOPIC",
    "OPERATOR_ENV",
    "DeadLetter",
    "DeadLetterFilter",
    "DeadLetterNotFoundError",
    "DeadLetterStore",
    "FailureGroup",
    "Replay",
    "ReplayRefusedError",
    "ReplayResult",
    "Status",
    "default_operator",
    "failure_groups",
    "fingerprint",
    "normalise_message",
    "parse",
]
