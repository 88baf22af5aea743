"""Quiet by default: the libraries' INFO/DEBUG logs, warnings and notices show only with `--verbose`."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

# Set by `--verbose` so that child processes (the demo's `mlops` commands) are verbose too.
VERBOSE_ENV = "MLOPS_VERBOSE"
# Our own packages: their warnings always show; the libraries' only from ERROR up.
OUR_PACKAGES = frozenset({"mlops", "pipelines", "training", "features", "inference", "infra"})


def verbose_from_env() -> bool:
    """Whether MLOPS_VERBOSE asks for the libraries' own output."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


class _OursOrErrors(logging.Filter):
    """Our WARNINGs and everyone's ERRORs pass; the libraries' INFO, DEBUG and WARNING do not.

    The SageMaker SDK logs, at every build or deploy, INFO lines (config files it did not find,
    the image URI), DEBUG lines (the instance type it guessed), WARNINGs about job names it pops
    and urllib3's retries while a local endpoint starts: none asks anything of the user.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """True for a record to print."""
        if record.levelno >= logging.ERROR:
            return True
        return record.levelno >= logging.WARNING and record.name.split(".")[0] in OUR_PACKAGES


def _from_a_library(filename: str) -> bool:
    return bool({"site-packages", "dist-packages"} & set(Path(filename).parts))


class _ShowOursOnly:
    """A `warnings.showwarning` that drops the warnings raised inside installed libraries.

    Replacing showwarning, not adding a filter: libraries (Feast) insert their own filters at
    import, ahead of ours, so a filter would not hold.
    """

    def __init__(self, show: Callable[..., None]) -> None:
        self.show = show

    def __call__(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        """Show the warning unless a library raised it."""
        if not _from_a_library(filename):
            self.show(message, category, filename, lineno, file, line)


def configure(verbose: bool) -> None:
    """Verbose: logging and warnings as the libraries set them. Quiet: ours, and errors only."""
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
        if not any(isinstance(f, _OursOrErrors) for f in handler.filters):
            handler.addFilter(_OursOrErrors())
    if not isinstance(warnings.showwarning, _ShowOursOnly):
        warnings.showwarning = _ShowOursOnly(warnings.showwarning)


def hoist_verbose(argv: list[str]) -> list[str]:
    """Move `--verbose` from anywhere before `--` to the front, where the root command reads it."""
    end = argv.index("--") if "--" in argv else len(argv)
    if "--verbose" not in argv[:end]:
        return argv
    rest = [a for a in argv[:end] if a != "--verbose"] + argv[end:]
    return ["--verbose", *rest]
