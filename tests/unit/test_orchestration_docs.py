"""docs/orchestration.md's examples of the orchestration.run report: the JSON is a valid report
(by the model, with the exported schema's fields), and the Python example runs as shown."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from choreokit.events.orchestration import OrchestrationRun

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "orchestration.md"
SECTION = "## Seeing the steps in the flow"


def block(language: str) -> str:
    text = DOCS.read_text().split(SECTION, 1)[1]
    found = re.search(rf"```{language}\n(.*?)```", text, re.DOTALL)
    assert found, f"{DOCS.name} shows a {language} example under {SECTION!r}"
    return found.group(1)


def test_the_json_example_is_a_valid_report() -> None:
    example = json.loads(block("json"))
    report = OrchestrationRun.model_validate(example)
    assert [s.name for s in report.steps] == ["quote", "label", "pickup"]
    assert set(example) <= set(OrchestrationRun.model_fields)
    schema = json.loads((ROOT / "schemas" / "orchestration.run" / "v1.json").read_text())
    assert set(schema["required"]) <= set(example) <= set(schema["properties"])


def test_the_python_example_prints_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace: dict[str, object] = {}
    exec(compile(block("python"), str(DOCS), "exec"), namespace)
    asyncio.run(namespace["main"](f"sqlite:///{tmp_path / 'shipping.sqlite3'}"))  # type: ignore[operator]
    assert capsys.readouterr().out.strip() == "succeeded [('quote', 'done', 1)]"
