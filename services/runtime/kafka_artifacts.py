"""Apache Kafka's jars for the test rig: resolved by Maven from ``deploy/kafka/pom.xml``, cached.

The pom pins the one Kafka version choreokit is tested on. Maven resolves the
broker's run-time classpath once (into ``~/.m2``) and the list of jars is kept
in ``~/.cache/choreokit/kafka-<version>-<pom hash>/classpath.txt``, so a second
run needs neither Maven nor a network. ``$CHOREO_KAFKA_HOME`` (an unpacked
Apache Kafka distribution) replaces Maven altogether: its ``libs/*.jar`` are
the classpath.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from choreokit.events import ChoreoError

KAFKA_VERSION = "4.1.1"
"""The Apache Kafka version the rig runs, pinned in ``deploy/kafka/pom.xml``."""

HOME_ENV = "CHOREO_KAFKA_HOME"
POM_ENV = "CHOREO_KAFKA_POM"
_REPO_POM = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"
_VERSION_TAG = re.compile(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>")


class KafkaRigError(ChoreoError):
    """Apache Kafka could not be prepared or started.

    Java, Maven or the artifacts are missing, a port is taken, or a node did not come up.
    """


@dataclass(frozen=True)
class KafkaArtifacts:
    """What it takes to run an Apache Kafka node: a JVM and the broker's classpath."""

    java: str
    """The ``java`` executable."""

    classpath: tuple[Path, ...]
    """Every jar the broker needs at run time."""

    source: str
    """Where the jars came from (the pom and its cache, or ``$CHOREO_KAFKA_HOME``)."""

    @property
    def classpath_arg(self) -> str:
        """The classpath as ``java -cp`` takes it."""
        return os.pathsep.join(str(jar) for jar in self.classpath)


def pom_path() -> Path:
    """Return the pom that pins the rig's Kafka (``$CHOREO_KAFKA_POM`` or the repository's)."""
    override = os.environ.get(POM_ENV)
    return Path(override) if override else _REPO_POM


def pinned_version(pom: Path | None = None) -> str:
    """Return the ``kafka.version`` the pom pins.

    Raises:
        KafkaRigError: The pom is missing or pins no version.
    """
    pom = pom or pom_path()
    try:
        match = _VERSION_TAG.search(pom.read_text())
    except OSError as exc:
        raise KafkaRigError(
            f"cannot read the Kafka rig's pom {pom} ({exc.strerror}); run from a choreokit "
            f"checkout, set {POM_ENV} to deploy/kafka/pom.xml, or set {HOME_ENV} to an "
            f"unpacked Apache Kafka {KAFKA_VERSION} distribution"
        ) from exc
    if match is None:
        raise KafkaRigError(f"{pom} has no <kafka.version> property; restore it from git")
    return match.group(1)


def cache_root() -> Path:
    """Return the folder the classpath caches live in (``$XDG_CACHE_HOME/choreokit``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "choreokit"


def classpath_cache(pom: Path | None = None) -> Path:
    """Return the file the pom's resolved classpath is kept in.

    Its folder is named by the Kafka version and a hash of the pom, so editing the
    pom (another version, another binding) resolves again.
    """
    pom = pom or pom_path()
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    return cache_root() / f"kafka-{pinned_version(pom)}-{digest}" / "classpath.txt"


def find_java() -> str:
    """Return the ``java`` executable: ``$JAVA_HOME/bin/java``, else the one on ``PATH``.

    Raises:
        KafkaRigError: No Java was found.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise KafkaRigError(
            "Apache Kafka needs Java 17 or newer and no 'java' was found: install a JDK "
            "(Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
        )
    return found


def resolve_artifacts(*, offline: bool = False) -> KafkaArtifacts:
    """Find Java and the broker's classpath, resolving it with Maven on the first run only.

    Args:
        offline: Never run Maven; fail unless the classpath is cached (or
            ``$CHOREO_KAFKA_HOME`` is set).

    Raises:
        KafkaRigError: Java, Maven or the artifacts are missing.
    """
    java = find_java()
    home = os.environ.get(HOME_ENV)
    if home:
        return KafkaArtifacts(java, _distribution_jars(Path(home)), f"{HOME_ENV}={home}")
    pom = pom_path()
    version = pinned_version(pom)
    cache = classpath_cache(pom)
    jars = _cached_classpath(cache)
    if jars is None:
        if offline:
            raise KafkaRigError(
                f"Apache Kafka {version}'s classpath is not cached at {cache}; run "
                f"'choreo broker --engine kafka' once with network access, or set {HOME_ENV}"
            )
        _resolve_with_maven(pom, cache)
        jars = _cached_classpath(cache)
        if jars is None:
            raise KafkaRigError(f"Maven wrote no usable classpath to {cache}; see its output above")
    return KafkaArtifacts(java, jars, f"{pom} (cached in {cache.parent})")


def _distribution_jars(home: Path) -> tuple[Path, ...]:
    jars = tuple(sorted((home / "libs").glob("*.jar")))
    if not any(jar.name.startswith("kafka_2.13-") for jar in jars):
        raise KafkaRigError(
            f"{HOME_ENV}={home} is not an unpacked Apache Kafka distribution (no "
            f"libs/kafka_2.13-*.jar); unpack kafka_2.13-{KAFKA_VERSION}.tgz and point "
            f"{HOME_ENV} at it, or unset it to resolve the jars with Maven"
        )
    return jars


def _cached_classpath(cache: Path) -> tuple[Path, ...] | None:
    """The cached jars, or ``None`` when there is no cache or a jar has gone (a cleaned ~/.m2)."""
    try:
        text = cache.read_text().strip()
    except OSError:
        return None
    jars = tuple(Path(entry) for entry in text.split(os.pathsep) if entry)
    if not jars or not all(jar.is_file() for jar in jars):
        return None
    return jars


def _resolve_with_maven(pom: Path, cache: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaRigError(
            "resolving Apache Kafka's jars needs Maven and no 'mvn' was found: install it "
            f"(Debian: apt-get install maven), or set {HOME_ENV} to an unpacked Apache Kafka "
            f"{KAFKA_VERSION} distribution"
        )
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial")
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:build-classpath",
        "-Dmdep.includeScope=runtime",
        f"-Dmdep.outputFile={partial}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not partial.is_file():
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise KafkaRigError(
            f"Maven could not resolve Apache Kafka's jars from {pom} (exit code "
            f"{result.returncode}); check that the Maven repository is reachable (a proxy in "
            f"~/.m2/settings.xml), or set {HOME_ENV}. Maven said:\n{tail}"
        )
    partial.replace(cache)
