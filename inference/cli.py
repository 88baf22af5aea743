"""`mlops serve --model-dir DIR`: run the serving container's server on the host, for development."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from inference.config import FEATURE_STORES, ConfigError, ServerConfig

app = typer.Typer(help="Serve a model directory over HTTP (SageMaker contract, Open Inference Protocol v2).")


@app.callback(invoke_without_command=True)
def serve(
    model_dir: Annotated[
        Path, typer.Option("--model-dir", help="A model directory (docs/contracts.md section 3).")
    ],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    host: Annotated[
        str, typer.Option(help="Interface to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    feature_store: Annotated[
        str, typer.Option(help=f"Online feature store adapter: {', '.join(FEATURE_STORES)}.")
    ] = "none",
    feature_source: Annotated[
        str,
        typer.Option(
            help="memory: a user-feature Parquet file; feast: the feature server URL; sagemaker: the group."
        ),
    ] = "",
    max_batch: Annotated[int, typer.Option(help="Most requests in one batch.")] = 100,
) -> None:
    """Run the server in the foreground until Ctrl-C."""
    from inference.server import run  # noqa: PLC0415  heavy: loads uvicorn only when called

    if not (model_dir / "metadata.json").is_file():
        typer.echo(
            f"error: --model-dir {model_dir} holds no metadata.json; point it at a model directory "
            "exported by training (docs/contracts.md section 3)",
            err=True,
        )
        raise typer.Exit(2)
    env = {
        "MLOPS_SERVE_FEATURE_STORE": feature_store,
        "MLOPS_SERVE_FEATURE_SOURCE": feature_source,
        "MLOPS_SERVE_MAX_BATCH": str(max_batch),
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        "SAGEMAKER_BIND_TO_PORT": str(port),
    }
    try:
        config = ServerConfig.from_env(env, model_dir=model_dir.resolve(), host=host)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    run(config)
