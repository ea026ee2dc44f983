"""``choreo dev`` and ``choreo demo``: the whole system on one machine."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

DEMO_DRIVER = "choreokit.services.example.demo.driver"
DEMO_PLAN = "choreokit.services.example.demo.plan"
"""The example domain's demo driver, loaded by name: no layer below imports the example."""

MARKER = ".choreo-dev"
"""Marks a data directory as ``choreo dev``'s, so it may be reset at start."""


TOOLKIT_APPS = {"saga-observer": "observer", "gateway": "gateway"}
"""choreokit's own apps and the extra each needs; ``choreo dev`` runs those installed."""


def _choose_services(only: str | None, *, example: bool | None) -> tuple[list[str], list[str]]:
    """Which services ``choreo dev`` runs, and every one it could; switches the example on.

    The example is on with ``--example``, off with ``--no-example``, and else
    when ``$CHOREO_EXAMPLE`` says so or the project declares no services. When
    on, ``$CHOREO_EXAMPLE=1`` is set here, so the children see it too.
    """
    from choreokit.events import ConfigurationError
    from choreokit.events.extras import MissingExtraError, has_extra, require_extra
    from choreokit.services.runtime import discovery

    try:
        own = sorted(discovery.project().services)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    if example is None:
        example = discovery.example_enabled() or not own
    os.environ[discovery.EXAMPLE_ENV] = "1" if example else "0"
    if example:
        try:
            require_extra("example", "the example domain")
        except MissingExtraError as exc:
            hint = "" if own else " (your project declares no services of its own)"
            raise click.UsageError(f"{exc}{hint}") from None
    names = sorted(discovery.in_effect().services)
    if only:
        chosen = [s.strip() for s in only.split(",") if s.strip()]
        for name in chosen:
            extra = TOOLKIT_APPS.get(name)
            if extra is not None and not has_extra(extra):
                raise click.UsageError(
                    f"{name} needs the '{extra}' extra: pip install 'choreokit[{extra}]'"
                )
        return chosen, names
    chosen = [n for n in names if n not in TOOLKIT_APPS or has_extra(TOOLKIT_APPS[n])]
    # The toolkit's apps alone are no system to run.
    return (chosen if set(chosen) - set(TOOLKIT_APPS) else []), names


def _reset(data_dir: Path) -> None:
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / MARKER).exists():
            raise click.UsageError(
                f"{data_dir} exists and was not made by 'choreo dev'; refusing to reset it "
                "(choose another --data-dir, or pass --keep-data)"
            )
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("state of 'choreo dev': reset at every start\n")


def _checked_services(only: str | None, *, example: bool | None) -> list[str]:
    """The services ``choreo dev`` runs, or a usage error saying what is wrong."""
    chosen, known = _choose_services(only, example=example)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise click.UsageError(
            f"unknown service(s): {', '.join(unknown)} (known: {', '.join(known) or 'none'})"
        )
    if not chosen:
        raise click.UsageError(
            "no services to run: declare yours under [tool.choreokit.services] in "
            "pyproject.toml (see docs/tutorial.md), or pass --example"
        )
    return list(chosen)


def _check_bootstrap(bootstrap: str | None) -> None:
    from choreokit.services.cli._common import answers_somewhere

    if bootstrap is not None and not answers_somewhere(bootstrap):
        click.echo(
            f"error: nothing answers Kafka at {bootstrap}; start it, or leave out --bootstrap "
            "('choreo dev' then runs the embedded broker)",
            err=True,
        )
        raise SystemExit(1)


def _per_service_env(pattern: str | None, services: list[str]) -> dict[str, dict[str, str]]:
    from choreokit.services.runtime.supervisor import load_service_env

    if pattern is None:
        return {}
    if "{service}" not in pattern:
        raise click.UsageError("--service-env must contain {service}, e.g. 'secrets/{service}.env'")
    try:
        return load_service_env(pattern, services)
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Embedded broker interface.")
@click.option("--port", default=9092, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".choreo/dev"),
    show_default=True,
    help="Databases, logs and dev.json; reset at start unless --keep-data.",
)
@click.option("--keep-data", is_flag=True, help="Keep the databases of the previous run.")
@click.option("--bootstrap", default=None, help="Use this Kafka instead of the embedded broker.")
@click.option("--only", default=None, help="Comma-separated services to run (default: all).")
@click.option(
    "--example/--no-example",
    default=None,
    help="Run the example domain (orders, inventory, payments, shipping) too, or never "
    "[default: only when the project declares no services].",
)
@click.option(
    "--service-env",
    default=None,
    envvar="CHOREO_DEV_SERVICE_ENV",
    help="Per-service environment files, {service} in the path (e.g. 'secrets/{service}.env'): "
    "each service's own KEY=VALUE lines (its Kafka principal) on top of the shared environment.",
)
def dev(
    host: str,
    port: int,
    data_dir: Path,
    keep_data: bool,
    bootstrap: str | None,
    only: str | None,
    example: bool | None,
    service_env: str | None,
) -> None:
    """Run the embedded broker and every service as its own process, until Ctrl-C.

    The services are the project's (declared in the working directory's
    pyproject.toml under [tool.choreokit.services], or by the entry points of
    an installed distribution), with the saga observer and the gateway when
    their extras are installed. A project that declares no services gets the
    example domain instead (--no-example: none).

    A service that dies is restarted (and it is said on stderr). Ctrl-C or
    SIGTERM stops every process it started. Logs: DATA_DIR/logs/.
    """
    from choreokit.services.runtime.supervisor import HTTP_SERVICES, Supervisor

    chosen = _checked_services(only, example=example)
    _check_bootstrap(bootstrap)
    per_service = _per_service_env(service_env, chosen)
    if keep_data:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / MARKER).write_text("state of 'choreo dev'\n")
    else:
        _reset(data_dir)
    supervisor = Supervisor(
        services=chosen,
        data_dir=data_dir,
        broker_host=host,
        broker_port=port,
        bootstrap=bootstrap,
        service_env=per_service,
    )

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        code = 0
        try:
            starting = asyncio.ensure_future(supervisor.start())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait([starting, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await starting
                return 130
            starting.result()
            urls = supervisor.urls()
            count = f"{len(chosen)} service{'' if len(chosen) == 1 else 's'}"
            click.echo(f"choreokit dev is up ({count}; Ctrl-C stops everything)")
            click.echo(f"  {'kafka':<16}{supervisor.kafka}")
            for name, url in urls.items():
                click.echo(f"  {HTTP_SERVICES[name].label:<16}{url}")
            click.echo(f"  {'logs':<16}{data_dir / 'logs'}")
            dev_key = data_dir / "gateway-dev-key"
            if dev_key.exists():
                click.echo(f"  {'gateway key':<16}{dev_key} (Authorization: Bearer <its content>)")
            await supervisor.watch(stop)
        except Exception as exc:  # noqa: BLE001 - any start failure: say it, stop what started
            click.echo(f"error: {exc}", err=True)
            code = 1
        finally:
            await supervisor.stop()
            click.echo("choreokit dev stopped", err=True)
        return code

    raise SystemExit(asyncio.run(main()))


def _demo_extras(*, embedded: bool) -> None:
    """A usage error naming the extra ``choreo demo`` lacks, if any."""
    from choreokit.events.extras import MissingExtraError, require_extra

    try:
        require_extra("example", "choreo demo")
        if embedded:
            require_extra("dev", "choreo demo without --bootstrap")
    except MissingExtraError as exc:
        raise click.UsageError(str(exc)) from None


@click.command()
@click.option(
    "--orders",
    "count",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many orders to place.",
)
@click.option("--seed", default=1, show_default=True, type=int, help="Decides the mix.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--bootstrap",
    default=None,
    help="Drive a running system at this Kafka instead of starting 'choreo dev'.",
)
@click.option(
    "--orders-url",
    default="http://127.0.0.1:8082",
    show_default=True,
    help="Order intake of the running system (with --bootstrap).",
)
@click.option(
    "--orders-token",
    envvar="CHOREO_ORDERS_TOKEN",
    default=None,
    help="Bearer token of the order intake, if it asks for one (CHOREO_ORDERS_TOKEN).",
)
@click.option(
    "--observer-url",
    default=None,
    help="Saga observer of the running system whose verdicts are checked (with --bootstrap).",
)
@click.option(
    "--observer-token",
    envvar="CHOREO_OBSERVER_TOKEN",
    default=None,
    help="Bearer token of that observer, if its reads ask for one (CHOREO_OBSERVER_TOKEN).",
)
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for the flows.")
@click.option(
    "--concurrency",
    default=16,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Order requests in flight at once.",
)
@click.option(
    "--rate",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Orders per second (0: all at once).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".choreo/demo"),
    show_default=True,
    help="Where the demo's own 'choreo dev' keeps its state.",
)
@click.option("--keep", is_flag=True, help="Keep the system running after the summary.")
def demo(
    count: int,
    seed: int,
    as_json: bool,
    bootstrap: str | None,
    orders_url: str,
    orders_token: str | None,
    observer_url: str | None,
    observer_token: str | None,
    timeout: float,
    concurrency: int,
    rate: float,
    data_dir: Path,
    keep: bool,
) -> None:
    """Drive ORDERS orders with a deterministic mix of failures and judge every flow.

    Unless --bootstrap is given it starts 'choreo dev' in the background (on
    free ports), places the orders through the order intake (a quarter of them
    through the legacy API, as order.placed v1), follows every flow on the
    topics until it ends, checks the saga observer's verdicts against its own,
    prints a summary and stops what it started. Exits 1 if any flow did not
    end the way its injected failure explains, or the observer disagrees.
    """
    from choreokit.services.runtime.discovery import EXAMPLE
    from choreokit.services.runtime.embedded_broker import free_port

    _demo_extras(embedded=bootstrap is None)
    from choreokit.services.saga_observer.access import DEV_TOKEN_FILE

    approval_above = int(importlib.import_module(DEMO_PLAN).APPROVAL_ABOVE_CENTS)
    operator_token: str | None = None
    started: subprocess.Popen[bytes] | None = None
    urls: dict[str, str] = {}
    if bootstrap is not None and observer_url is not None:
        urls["saga-observer"] = observer_url
    if bootstrap is None:
        _reset(data_dir)
        port = free_port()
        env = {
            **os.environ,
            "CHOREO_ORDERS_PORT": str(free_port()),
            "CHOREO_OBSERVER_PORT": str(free_port()),
            "CHOREO_GATEWAY_PORT": str(free_port()),
            # some demo orders are above it and wait for a person (the demo decides them)
            "CHOREO_ORDERS_APPROVAL_ABOVE_CENTS": str(approval_above),
        }
        log = (data_dir / "dev.log").open("ab")
        started = subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "choreokit.services.cli",
                "dev",
                "--example",
                "--only",
                ",".join([*EXAMPLE.services, *TOOLKIT_APPS]),
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                "--keep-data",
            ],
            stdout=log,
            stderr=log,
            env=env,
        )
        log.close()
        if not as_json:
            click.echo(
                f"starting choreo dev in the background (state and logs in {data_dir}) ...",
                err=True,
            )
        state = _wait_for_dev(started, data_dir, timeout=120)
        bootstrap = str(state["bootstrap"])
        urls = {str(k): str(v) for k, v in dict(state.get("urls") or {}).items()}
        if "orders" in urls:
            orders_url = urls["orders"].removesuffix("/orders")
        with contextlib.suppress(OSError):  # the observer's development operator token
            operator_token = (data_dir / DEV_TOKEN_FILE).read_text(encoding="utf-8").strip()
    from datetime import timedelta

    from choreokit.events import ChoreoError
    from choreokit.services.cli._common import quiet_kafka_logs

    drive = importlib.import_module(DEMO_DRIVER).drive
    try:
        try:
            with quiet_kafka_logs():
                summary = asyncio.run(
                    drive(
                        count=count,
                        seed=seed,
                        bootstrap=bootstrap,
                        orders_url=orders_url,
                        wait=timedelta(seconds=timeout),
                        concurrency=concurrency,
                        rate=rate,
                        urls=urls,
                        orders_token=orders_token,
                        operator_token=operator_token,
                        observer_token=observer_token,
                    )
                )
        except ChoreoError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(1) from None
        summary = replace(summary, kept=keep and started is not None)
        click.echo(json.dumps(summary.as_dict(), indent=2) if as_json else summary.render())
        if keep and started is not None:
            click.echo("\nthe system keeps running; Ctrl-C stops it", err=True)
            with contextlib.suppress(KeyboardInterrupt):
                started.wait()
        code = 0 if summary.ok else 1
    finally:
        if started is not None:
            _stop_dev(started)
    raise SystemExit(code)


def _wait_for_dev(
    process: subprocess.Popen[bytes], data_dir: Path, *, timeout: float
) -> dict[str, Any]:
    from choreokit.services.runtime.supervisor import read_state

    deadline = time.monotonic() + timeout
    while True:
        state = read_state(data_dir)
        if state is not None and state.get("ready"):
            return state
        if process.poll() is not None:
            raise click.ClickException(
                f"choreo dev exited with code {process.returncode}; see {data_dir / 'dev.log'}"
            )
        if time.monotonic() > deadline:
            _stop_dev(process)
            raise click.ClickException(
                f"choreo dev was not ready after {timeout:.0f}s; see {data_dir / 'logs'}"
            )
        time.sleep(0.1)


def _stop_dev(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
