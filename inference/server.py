"""Run the server: the container's entry point (`serve`) and `mlops serve`, on uvicorn."""

from __future__ import annotations

import logging
import os
import sys
import traceback

import orjson
import uvicorn

from inference.app import ServingApp
from inference.config import ConfigError, ServerConfig
from inference.connection import GuardedHttpToolsProtocol


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the stack trace in `exc` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        doc: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = "".join(traceback.format_exception(*record.exc_info))
        return orjson.dumps(doc).decode()


def configure_logging() -> None:
    """Send every log record to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def create_app() -> ServingApp:
    """App factory for uvicorn (one app per worker process), configured from the environment."""
    configure_logging()
    config = ServerConfig.from_env()
    GuardedHttpToolsProtocol.configure(config)
    return ServingApp(config)


def run(config: ServerConfig) -> None:
    """Serve until interrupted; with several workers uvicorn forks one app per worker."""
    configure_logging()
    logging.getLogger("inference.server").info(
        "serving %s on %s:%d with %d worker(s)", config.model_dir, config.host, config.port, config.workers
    )
    # Workers re-read the environment, so publish the effective settings there.
    os.environ.update(config.to_env())
    GuardedHttpToolsProtocol.configure(config)
    common: dict[str, object] = {
        "host": config.host,
        "port": config.port,
        "loop": "uvloop",
        # httptools, with the head-size and arrival-time limits uvicorn lacks (inference/connection.py).
        "http": GuardedHttpToolsProtocol,
        # The same head limit should the h11 parser ever be chosen instead.
        "h11_max_incomplete_event_size": config.max_header_bytes,
        "lifespan": "on",
        "access_log": False,  # our own JSON access log, one line a request with its id
        "log_config": None,
        "timeout_keep_alive": 75,  # above SageMaker's 60 s idle timeout, so the front end closes first
    }
    if config.workers == 1:
        uvicorn.run(ServingApp(config), **common)  # type: ignore[arg-type]
    else:
        uvicorn.run("inference.server:create_app", factory=True, workers=config.workers, **common)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    """`serve` starts the server (SageMaker's contract); anything else is an error with usage."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["serve"]:
        print(f"usage: serve   (got {args!r}); this image only serves models", file=sys.stderr)
        return 2
    try:
        config = ServerConfig.from_env()
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    run(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
