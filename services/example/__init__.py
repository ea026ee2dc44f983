"""The example domain: an order saga choreographed by four services, and its demo.

``contracts`` holds every event and the saga spec; ``orders``, ``inventory``,
``payments`` and ``shipping`` are services that import only the contracts and
choreokit's public names; ``demo`` drives orders through them. It is what
``choreo dev`` and ``choreo demo`` run by default (when a project declares no
services of its own), and nothing else loads it; it needs the ``example`` extra.
"""

from choreokit.events.extras import require_extra

require_extra("example", "the example domain (choreokit.services.example)")

__all__: list[str] = []
