"""``python -m choreokit.services.cli`` is ``choreo`` (how ``choreo dev`` starts its children)."""

from choreokit.services.cli import main

main()
