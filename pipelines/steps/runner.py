"""How a step script ends: summary on stdout and exit 0, or the reason where SageMaker shows it and exit 1."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# SageMaker processing jobs report the start of this file as the job's FailureReason.
FAILURE_FILE = Path("/opt/ml/output/message")


def run_step(
    name: str,
    work: Callable[[], dict[str, Any]],
    describe: Callable[[Exception], str] = str,
) -> int:
    """Run the work; print its summary, or write `<name> failed: <reason>` to stderr and the file."""
    try:
        summary = work()
    except Exception as error:
        message = f"{name} failed: {describe(error)}"
        print(message, file=sys.stderr)
        try:
            FAILURE_FILE.parent.mkdir(parents=True, exist_ok=True)
            # SageMaker keeps the first 1 KiB or so as FailureReason; the full text is in the log.
            FAILURE_FILE.write_text(message[:1000])
        except OSError:
            pass  # outside a SageMaker container there is no /opt/ml; stderr above carries the reason
        return 1
    print(json.dumps(summary, sort_keys=True))
    return 0
