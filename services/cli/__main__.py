"""``python -m services.cli`` is ``choreo`` (how ``choreo dev`` starts its children)."""

from services.cli import main

main()
