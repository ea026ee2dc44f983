"""``python -m bench.<scenario>``: shims over ``choreo bench <scenario>`` for a checkout.

The suite itself lives in the distribution (``choreokit.services.bench``, the
``bench`` extra), so an installed ``choreo bench`` runs it too.
"""

from __future__ import annotations

import sys


def run(scenario: str) -> None:
    """Run ``choreo bench SCENARIO`` with this process's arguments."""
    from choreokit.services.cli import cli

    cli.main(["bench", scenario, *sys.argv[1:]], prog_name="choreo")
