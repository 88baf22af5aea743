"""Quiet by default: the SDKs' INFO and DEBUG logs, notices and warnings show only with `--verbose`."""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Set by `--verbose` so that child processes (the demo's `mlops` commands) are verbose too.
VERBOSE_ENV = "MLOPS_VERBOSE"
# The SageMaker SDK's warnings at every build say nothing a user can act on (e.g. "Running within
# a PipelineSession, there will be No Wait, No Logs, and No Job being started").
_QUIET_WARNINGS_FROM = r"sagemaker(\..*)?$"


def verbose_from_env() -> bool:
    """Whether MLOPS_VERBOSE asks for the SDKs' own output."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


def configure(verbose: bool) -> None:
    """Verbose: leave logging and warnings as the libraries set them. Quiet: warnings and errors only."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
        return
    root = logging.getLogger()
    if not root.handlers:
        # A handler in place makes the SDK's import-time `logging.basicConfig(level=INFO)` a no-op.
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(stderr)
    for handler in root.handlers:
        handler.setLevel(max(handler.level, logging.WARNING))
    warnings.filterwarnings("ignore", module=_QUIET_WARNINGS_FROM)


def hoist_verbose(argv: list[str]) -> list[str]:
    """Move `--verbose` from anywhere before `--` to the front, where the root command reads it."""
    end = argv.index("--") if "--" in argv else len(argv)
    if "--verbose" not in argv[:end]:
        return argv
    rest = [a for a in argv[:end] if a != "--verbose"] + argv[end:]
    return ["--verbose", *rest]
