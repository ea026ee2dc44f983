"""Finding Java and Apache Kafka's jars: the pom's cached classpath, CHOREO_KAFKA_HOME, and
errors that say what to install or set. No network, no Maven run: a PATH without ``mvn``
proves the cached path never calls it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from choreokit.services.runtime import (
    KAFKA_VERSION,
    KafkaRigError,
    pinned_version,
    resolve_artifacts,
)
from choreokit.services.runtime.kafka_artifacts import classpath_cache


@pytest.fixture
def only_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding a stand-in ``java`` and nothing else (no ``mvn``), and an empty cache."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text("#!/bin/sh\nexit 0\n")
    java.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("CHOREO_KAFKA_HOME", raising=False)
    monkeypatch.delenv("CHOREO_KAFKA_POM", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return java


def jars(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made = [folder / name for name in names]
    for jar in made:
        jar.write_bytes(b"PK")
    return made


def test_the_pom_pins_the_version_the_code_names() -> None:
    assert pinned_version() == KAFKA_VERSION == "4.1.1"


def test_a_cached_classpath_is_used_without_maven(only_java: Path, tmp_path: Path) -> None:
    cached = jars(tmp_path / "m2", f"kafka_2.13-{KAFKA_VERSION}.jar", "kafka-clients.jar")
    cache = classpath_cache()
    assert cache.is_relative_to(tmp_path / "cache" / "choreokit")
    assert cache.parent.name.startswith(f"kafka-{KAFKA_VERSION}-")
    cache.parent.mkdir(parents=True)
    cache.write_text(os.pathsep.join(map(str, cached)))

    artifacts = resolve_artifacts(offline=True)
    assert artifacts.java == str(only_java)
    assert list(artifacts.classpath) == cached
    assert artifacts.classpath_arg == os.pathsep.join(map(str, cached))


def test_without_a_cache_or_maven_the_error_says_what_to_install(only_java: Path) -> None:
    with pytest.raises(
        KafkaRigError, match=r"needs Maven .* apt-get install maven.*CHOREO_KAFKA_HOME"
    ):
        resolve_artifacts()


def test_a_jar_gone_from_the_cache_means_resolving_again(only_java: Path, tmp_path: Path) -> None:
    """A cleaned ~/.m2 leaves a stale list: it is not trusted."""
    cache = classpath_cache()
    cache.parent.mkdir(parents=True)
    cache.write_text(str(tmp_path / "m2" / "gone.jar"))
    with pytest.raises(KafkaRigError, match="is not cached"):
        resolve_artifacts(offline=True)


def test_kafka_home_replaces_maven(
    only_java: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / f"kafka_2.13-{KAFKA_VERSION}"
    made = jars(home / "libs", "a.jar", f"kafka_2.13-{KAFKA_VERSION}.jar")
    monkeypatch.setenv("CHOREO_KAFKA_HOME", str(home))
    artifacts = resolve_artifacts()
    assert list(artifacts.classpath) == sorted(made)
    assert "CHOREO_KAFKA_HOME" in artifacts.source


def test_a_kafka_home_without_kafka_is_named(
    only_java: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jars(tmp_path / "other" / "libs", "a.jar")
    monkeypatch.setenv("CHOREO_KAFKA_HOME", str(tmp_path / "other"))
    with pytest.raises(KafkaRigError, match="not an unpacked Apache Kafka distribution"):
        resolve_artifacts()


def test_without_java_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(KafkaRigError, match=r"Java 17 or newer.*openjdk-17.*JAVA_HOME"):
        resolve_artifacts()


def test_java_home_wins_over_path(
    only_java: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java_home = tmp_path / "jdk"
    (java_home / "bin").mkdir(parents=True)
    java = java_home / "bin" / "java"
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(java_home))
    monkeypatch.setenv("CHOREO_KAFKA_HOME", str(tmp_path / "k"))
    jars(tmp_path / "k" / "libs", f"kafka_2.13-{KAFKA_VERSION}.jar")
    assert resolve_artifacts().java == str(java)


def test_a_missing_pom_says_where_to_point(
    only_java: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHOREO_KAFKA_POM", str(tmp_path / "nope.xml"))
    with pytest.raises(KafkaRigError, match=r"CHOREO_KAFKA_POM.*CHOREO_KAFKA_HOME"):
        resolve_artifacts()
