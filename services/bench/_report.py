"""Where a result document goes: the JSON file, the plots and the benchmarks page."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from choreokit.services.bench._markdown import render, replace_section
from choreokit.services.bench._plots import draw


def save_json(document: dict[str, Any], path: Path) -> None:
    """Write the document as indented JSON (keys in the order they were measured)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_json(path: Path) -> dict[str, Any]:
    """Read a result document written by :func:`save_json`."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def write_docs(document: dict[str, Any], page: Path) -> dict[str, Path]:
    """Regenerate ``page``'s generated section, its plots and ``bench/results.json`` beside it.

    The plots and the JSON go to ``<page's folder>/bench/``; the page's
    hand-written text outside the generated section stays as it is.

    Returns:
        What was written, by name.
    """
    directory = page.parent / "bench"
    results = directory / "results.json"
    save_json(document, results)
    plots = draw(document, directory)
    relative = {name: os.path.relpath(path, page.parent) for name, path in plots.items()}
    section = render(document, relative)
    existing = page.read_text(encoding="utf-8") if page.exists() else "# Benchmarks\n"
    page.write_text(replace_section(existing, section), encoding="utf-8")
    return {"page": page, "json": results, **plots}
