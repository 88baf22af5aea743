"""The local-mode session and its container plumbing: host user, run labels, logs, Ctrl-C."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import threading
from collections.abc import Iterator
from typing import Any, TextIO

from pipelines.local.result import LocalRunError
from pipelines.sdk import configure_sdk, endpoint_url
from pipelines.settings import PipelineSettings

# The label every container of one run carries, so its clean-up removes exactly those.
RUN_LABEL = "io.mlops.run"
# What pipelines.steps.* print on failure, e.g. "Prepare failed: validation rejected 3 row(s) ...".
_STEP_FAILURE = re.compile(r"\b(Prepare|Evaluate|training) failed: .*|training: failed.*")


def require_aws_endpoint() -> str:
    """The moto server's URL from AWS_ENDPOINT_URL; a run without one fails saying how to start it."""
    endpoint = endpoint_url()
    if endpoint is None:
        raise LocalRunError(
            "AWS_ENDPOINT_URL is not set: a local run keeps S3 and the model registry on a moto server. "
            "Start one (`make demo` does, or `python -m moto.server -H 127.0.0.1 -p PORT`) and export "
            "AWS_ENDPOINT_URL=http://127.0.0.1:PORT with fake credentials"
        )
    return endpoint


def make_session(settings: PipelineSettings, labels: dict[str, str] | None = None) -> Any:
    """A local pipeline session that captures step arguments like a PipelineSession."""
    sdk_config = configure_sdk(settings.region)
    endpoint = require_aws_endpoint()
    import boto3  # noqa: PLC0415  heavy: loads boto3 only when called
    from sagemaker.core.workflow.pipeline_context import PipelineSession  # noqa: PLC0415  heavy: loads sagemaker only when called
    from sagemaker.mlops.local import LocalPipelineSession  # noqa: PLC0415  heavy: sagemaker, only when a definition or session is built

    class LocalRunSession(LocalPipelineSession, PipelineSession):  # type: ignore[misc]
        """LocalPipelineSession runs pipelines; PipelineSession makes steps capture arguments."""

        def default_bucket(self) -> str:
            return settings.bucket

    session = LocalRunSession(
        boto_session=boto3.Session(region_name=settings.region),
        default_bucket=settings.bucket,
        s3_endpoint_url=endpoint,
        sagemaker_config=sdk_config,
    )
    host_user(session, labels)
    # Pipeline.create/start call these on the session's client; the local client lacks them.
    client = session.sagemaker_client
    for name in (
        "create_pipeline",
        "update_pipeline",
        "describe_pipeline",
        "delete_pipeline",
        "start_pipeline_execution",
    ):
        setattr(client, name, getattr(session, name))
    return session


def host_user(session: Any, labels: dict[str, str] | None = None) -> None:
    """Run local-mode containers as the host user, with our labels.

    Local mode mounts directories it makes with mkdtemp (mode 0700, owned by the host user); our
    images run as a non-root user that could neither read the inputs nor write the outputs there.
    The labels (merged into each docker-compose service) let a clean-up remove exactly the
    containers this run started, never another user's local-mode jobs.
    """
    config = dict(session.config or {})
    local = dict(config.get("local", {}))
    container = {**local.get("container_config", {}), "user": f"{os.getuid()}:{os.getgid()}"}
    if labels:
        container["labels"] = {**container.get("labels", {}), **labels}
    local["container_config"] = container
    config["local"] = local
    session.config = config


class ContainerLog(io.TextIOBase):
    """Stands in for stdout while local mode streams container logs: forwards them to stderr
    (stdout is reserved for --json) and keeps the steps' own failure lines for the error."""

    def __init__(self, sink: TextIO) -> None:
        self.sink = sink
        self.failures: list[str] = []
        self._partial = ""

    def write(self, text: str) -> int:
        """Forward text; remember lines where a step script reports its failure."""
        self.sink.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            match = _STEP_FAILURE.search(line)
            if match:
                self.failures.append(match.group(0).strip())
        return len(text)

    def flush(self) -> None:
        """Flush the sink."""
        self.sink.flush()


@contextlib.contextmanager
def _interrupts_noted() -> Iterator[threading.Event]:
    """Note a Ctrl-C (SIGINT) while the block runs, still raising KeyboardInterrupt where it lands."""
    noted = threading.Event()
    # Handlers can only be set from the main thread; a process started with SIGINT ignored keeps it so.
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ):
        yield noted
        return

    def handler(signum: int, frame: Any) -> None:
        noted.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)
