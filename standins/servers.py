"""The stand-in servers: moto (AWS), an MLflow tracking server and Feast's feature server.

Each runs as a child process in its own process group. `record=True` notes its pid, port and log in
a state file under `dataset.paths.state_dir()`, so `make demo-down` can stop what `make demo` started;
a job that owns its server for its own duration (`mlflow_server`) starts it unrecorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dataset.paths import state_dir
from features.feast_repo import ensure_built
from standins import StandInError
from standins.docker import docker_bridge_ip
from standins.ports import free_port

if TYPE_CHECKING:
    from rich.console import Console

# Credentials moto accepts; never real ones.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass(frozen=True)
class Service:
    """A running stand-in."""

    name: str
    pid: int
    port: int
    log: str
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://{self.host}:{self.port}"


def _state_file() -> Path:
    return state_dir() / "standins.json"


def recorded() -> dict[str, Service]:
    """The stand-ins recorded in the state file (possibly no longer running)."""
    path = _state_file()
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {name: Service(**entry) for name, entry in raw.items()}


def _record(services: dict[str, Service]) -> None:
    path = _state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({n: asdict(s) for n, s in services.items()}, indent=2, sort_keys=True))


def alive(service: Service) -> bool:
    """True when the process still runs and its port answers HTTP."""
    try:
        os.kill(service.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        urllib.request.urlopen(service.url, timeout=2)  # noqa: S310 (http on a local address only)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def _wait_until_up(service: Service, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = Path(service.log).read_text(errors="replace")[-2000:]
            raise StandInError(
                f"{service.name} exited with code {process.returncode}; log {service.log}:\n{tail}"
            )
        if alive(service):
            return
        time.sleep(0.3)
    stop(service)
    raise StandInError(
        f"{service.name} did not answer on {service.url} within {timeout:.0f}s; log {service.log}"
    )


def _spawn(
    name: str,
    command: list[str],
    port: int,
    timeout: float,
    host: str = "127.0.0.1",
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Service:
    if log is None:
        log = state_dir() / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as handle:
        process = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() ends its children too
            env={**os.environ, **(env or {})},
        )
    service = Service(name=name, pid=process.pid, port=port, log=str(log), host=host)
    _wait_until_up(service, process, timeout)
    return service


def start_moto(port: int | None = None, *, record: bool = True) -> Service:
    """Start `moto_server` on 127.0.0.1 (a free port unless given)."""
    port = port or free_port()
    service = _spawn(
        "moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, timeout=60
    )
    if record:
        _record({**recorded(), "moto": service})
    return service


def start_mlflow(
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    record: bool = True,
    store: Path | None = None,
    timeout: float = 300,
) -> Service:
    """Start an MLflow tracking server on `host` (a local address) over a SQLite store.

    The store (default `mlflow/` under the state dir) holds `mlflow.db` and the served artifacts;
    an unrecorded server logs to `server.log` in it, a recorded one under the state dir's logs.
    """
    port = port or free_port(host)
    store = (store or state_dir() / "mlflow").resolve()
    (store / "artifacts").mkdir(parents=True, exist_ok=True)
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow), "server",
        "--host", host, "--port", str(port),
        "--allowed-hosts", ",".join(f"{h},{h}:{port}" for h in sorted({host, "127.0.0.1", "localhost"})),
        "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination", str(store / "artifacts"),
        "--serve-artifacts",
        "--workers", "1",
    ]  # fmt: skip
    # No job execution: it forks huey consumers in their own sessions (outliving a process-group
    # stop) and slows start-up; tracking runs and the UI do not need it.
    service = _spawn(
        "mlflow",
        command,
        port,
        timeout=timeout,
        host=host,
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        log=None if record else store / "server.log",
    )
    if record:
        _record({**recorded(), "mlflow": service})
    return service


@contextmanager
def mlflow_server(store: Path, host: str, port: int | None = None) -> Iterator[str]:
    """Run an unrecorded MLflow server over `store` for the block's duration; yield its URI."""
    # A cold start on a busy 2-core machine has taken minutes.
    service = start_mlflow(port, host=host, record=False, store=store, timeout=600)
    try:
        yield service.url
    finally:
        stop(service)


def start_feast(
    repo_path: Path, *, host: str = "127.0.0.1", port: int | None = None, record: bool = True
) -> Service:
    """Start Feast's feature server (`feast serve`) on a built repo; Prepare pushes features to it."""
    port = port or free_port(host)
    feast = Path(sys.executable).with_name("feast")
    command = [str(feast), "-c", str(repo_path), "serve", "-h", host, "-p", str(port), "--workers", "1"]
    # Start-up loads Feast and the registry: tens of seconds on a busy 2-core machine.
    service = _spawn("feast", command, port, timeout=300, host=host)
    if record:
        _record({**recorded(), "feast": service})
    return service


def start_feast_server(dataset: str, console: Console) -> Service:
    """Build the dataset's Feast repo if needed and start `feast serve` where containers reach it."""

    with console.status(f"Feast repo and feature server for {dataset}"):
        repo = ensure_built(dataset, log=lambda line: console.print(f"  feast: {line}"))
        server = start_feast(repo.path, host=docker_bridge_ip())
    console.print(f"Feast feature server {server.url} (Prepare pushes features there)")
    return server


def stop(service: Service) -> bool:
    """Stop a stand-in and its children; True when something was running."""
    try:
        os.killpg(service.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # A server this process started lingers as a zombie, still in its group, until reaped.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(service.pid, os.WNOHANG)
        try:
            os.killpg(service.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    os.killpg(service.pid, signal.SIGKILL)
    return True


def stop_recorded(names: list[str] | None = None) -> list[str]:
    """Stop the recorded stand-ins (all, or those named); return the names stopped."""
    services = recorded()
    stopped = []
    for name in list(services):
        if names is not None and name not in names:
            continue
        if stop(services.pop(name)):
            stopped.append(name)
    _record(services)
    return stopped


def aws_environment(moto: Service, region: str = "us-east-1") -> dict[str, str]:
    """Environment variables that point boto3 and the SageMaker SDK at the moto server."""
    return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": moto.url, "AWS_DEFAULT_REGION": region}
