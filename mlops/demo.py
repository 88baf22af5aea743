"""`make demo`: the whole loop on this machine, and `make demo-down` to stop what it started.

Docker and the images, the moto server and MLflow (left running, recorded in the state dir),
MovieLens, the pipeline in local mode, approval in the registry, a local endpoint (serving image,
SageMaker LocalSession on port 8080), then recommendations, metrics and where to look next. The
endpoint is torn down at the end unless `--serve` keeps it up in the foreground until Ctrl-C.
A failure or Ctrl-C stops every stand-in and container.

Why one module over 400 lines: it is the demo's script, its seven steps in the order they print,
with the tables they print; each step is its own function.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from dataset.paths import ROOT, state_dir
from features.definition import feature_view
from inference.features import FeastHttpFeatureStore, FeatureLookupError
from mlops import verbosity
from pipelines import registry
from pipelines.local import LOCAL_ROLE, host_user, local_settings, run_local
from pipelines.sdk import configure_sdk
from standins import servers
from standins.docker import docker_bridge_ip, ensure_docker, remove_containers

console = Console(stderr=True)
ENDPOINT = "mlops-demo"
PORT = 8080
DEMO_USERS = (1, 42, 196)
# Training's default (docs/model.md: more epochs overfit the rating tower).
DEMO_EPOCHS = "6"
# Every container the demo starts carries this label, valued by the state directory: `make demo-down`
# removes those and leaves alone other local-mode jobs (another checkout's, a test's, a user's).
DEMO_LABEL = "io.mlops.demo"


def demo_labels() -> dict[str, str]:
    """The labels of this checkout's demo containers."""

    return {DEMO_LABEL: hashlib.sha256(str(state_dir().resolve()).encode()).hexdigest()[:16]}


class DemoError(RuntimeError):
    """A demo stage failed; the message says which and what to do."""


def _mlops(*args: str) -> None:
    """Run the project's own CLI (another room's command group) as a child process."""
    command = [str(Path(sys.executable).with_name("mlops")), *args]
    # stdout is reserved for --json; the child's output is progress.
    done = subprocess.run(command, cwd=ROOT, check=False, stdout=sys.stderr)
    if done.returncode != 0:
        raise DemoError(
            f"`mlops {' '.join(args)}` failed with exit code {done.returncode}; see its output above"
        )


def ensure_standins() -> tuple[servers.Service, servers.Service]:
    """Reuse the recorded moto and MLflow servers when they answer, else start them."""
    recorded = servers.recorded()
    moto = recorded.get("moto")
    if moto is None or not servers.alive(moto):
        moto = servers.start_moto()
    mlflow = recorded.get("mlflow")
    if mlflow is None or not servers.alive(mlflow):
        # Bound to the Docker bridge address, not 127.0.0.1: the training container logs to it.
        mlflow = servers.start_mlflow(host=docker_bridge_ip())
    return moto, mlflow


def ensure_feast(dataset: str) -> servers.Service:
    """Reuse the recorded Feast feature server when it answers, else start it on the Docker bridge.

    One server for the whole demo: Prepare pushes the features into it and the endpoint reads them
    back from it, both from containers, so it listens where containers reach the host.
    """
    feast = servers.recorded().get("feast")
    if feast is not None and servers.alive(feast):
        return feast
    server: servers.Service = servers.start_feast_server(dataset, console)
    return server


def _http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 30) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 (the local endpoint on 127.0.0.1)
        url, data=data, headers={"Content-Type": "application/json"}, method="POST" if data else "GET"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read())


def warm_feast(url: str, users: tuple[int, ...]) -> dict[int, float]:
    """Look the demo users up once from the host, so the endpoint's first lookups are not Feast's cold ones.

    `feast serve` loads its registry and opens the online store on the first request (seconds on
    a busy machine); the endpoint's 0.5 s budget would turn that into cold-start fallbacks.
    Returns each user's lookup time in seconds; a user Feast does not know raises DemoError.
    """

    view = feature_view("user_features")
    store = FeastHttpFeatureStore(url, view.name, view.feature_names, timeout_s=120)
    seconds: dict[int, float] = {}
    for user in users:
        start = time.monotonic()
        try:
            found = store.get_user_features(user)
        except FeatureLookupError as error:
            raise DemoError(
                f"the Feast feature server at {url} did not answer user {user}: {error}"
            ) from error
        if found is None:
            raise DemoError(
                f"Feast at {url} has no features for user {user}: Prepare's push did not reach its "
                "online store; `make demo-down` and run `make demo` again"
            )
        seconds[user] = round(time.monotonic() - start, 3)
    return seconds


def deploy(model_data_url: str, image: str, role: str, feast_url: str) -> Any:
    """Serve the model with SageMaker's LocalSession on port 8080, features from Feast; return the session."""
    sdk_config = configure_sdk("us-east-1")
    import boto3  # noqa: PLC0415  heavy: loads boto3 only when called
    from sagemaker.core.local import LocalSession  # noqa: PLC0415  heavy: loads sagemaker only when called

    session = LocalSession(boto_session=boto3.Session(region_name="us-east-1"), sagemaker_config=sdk_config)
    host_user(session, demo_labels())
    client = session.sagemaker_client
    _delete_endpoint(session)
    client.create_model(
        ModelName=ENDPOINT,
        ExecutionRoleArn=role,
        PrimaryContainer={
            "Image": image,
            "ModelDataUrl": model_data_url,
            "Environment": {
                "MLOPS_SERVE_FEATURE_STORE": "feast",
                "MLOPS_SERVE_FEATURE_SOURCE": feast_url,
                # Feast's feature server over HTTP on a busy 2-core machine: ~15 ms a lookup, with
                # tails well past the 50 ms production default; past this budget a user falls back.
                "MLOPS_SERVE_FEATURE_TIMEOUT_S": "0.5",
            },
        },
    )
    client.create_endpoint_config(
        EndpointConfigName=ENDPOINT,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": ENDPOINT,
                "InitialInstanceCount": 1,
                "InstanceType": "local",
            }
        ],
    )
    client.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=ENDPOINT)
    return session


def _delete_endpoint(session: Any) -> None:
    client = session.sagemaker_client
    for call, kwargs in (
        (client.delete_endpoint, {"EndpointName": ENDPOINT}),
        (client.delete_endpoint_config, {"EndpointConfigName": ENDPOINT}),
        (client.delete_model, {"ModelName": ENDPOINT}),
    ):
        # Absent is the state we want, whatever the local client says about it.
        with contextlib.suppress(Exception):
            call(**kwargs)


def recommend(users: tuple[int, ...]) -> dict[int, dict[str, Any]]:
    """Top-10 movies for each user from the local endpoint, each with its predicted rating.

    The top-K answer's `score` is the ranking tower's logit (only its order means anything), so a
    second request asks the rating tower for those movies' ratings on MovieLens's 1-5 scale.
    `fallback` is None when the user's features were used, else why they were not.
    """
    url = f"http://127.0.0.1:{PORT}/invocations"
    out: dict[int, dict[str, Any]] = {}
    for user in users:
        answer = _http_json(url, {"user_id": user, "k": 10})
        recs = answer.get("recommendations") if isinstance(answer, dict) else None
        if not recs:
            raise DemoError(f"the endpoint answered user {user} without recommendations: {str(answer)[:300]}")
        rated = _http_json(url, {"user_id": user, "movie_ids": [rec["movie_id"] for rec in recs]})
        answered = rated.get("ratings", []) if isinstance(rated, dict) else []
        ratings = {r["movie_id"]: r["rating"] for r in answered}
        if set(ratings) != {rec["movie_id"] for rec in recs}:
            raise DemoError(f"the endpoint answered user {user}'s ratings request with: {str(rated)[:300]}")
        out[user] = {
            "recommendations": [{**rec, "rating": ratings[rec["movie_id"]]} for rec in recs],
            "fallback": answer.get("fallback"),
        }
    return out


def movie_details(movies: Any) -> dict[int, tuple[str, str]]:
    """Movie id -> (year, genres) as the tables print them, from the movies table (contract table 1)."""
    import pandas as pd  # noqa: PLC0415  heavy: loads pandas only when called

    return {
        int(movie_id): ("" if pd.isna(year) else str(int(year)), str(genres).replace("|", ", "))
        for movie_id, year, genres in zip(movies["movie_id"], movies["year"], movies["genres"], strict=True)
    }


def recommendation_table(user: int, answer: dict[str, Any], details: dict[int, tuple[str, str]]) -> Table:
    """One user's top 10: rank, movie id, title, year, genres and the predicted rating (1-5).

    The id and year tell apart the titles ml-100k lists twice (docs/data.md). The ranking tower's
    score stays out: it reads like a rating and is not one.
    """
    source = "features from Feast" if answer["fallback"] is None else f"cold start: {answer['fallback']}"
    table = Table(
        title=f"Top 10 for user {user} ({source}); rating: predicted, 1 to 5",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("title")
    table.add_column("year", no_wrap=True)
    table.add_column("genres")
    table.add_column("rating", justify="right", no_wrap=True)
    for rank, rec in enumerate(answer["recommendations"], 1):
        year, genres = details.get(int(rec["movie_id"]), ("", ""))
        rating = f"{rec['rating']:.2f}"
        table.add_row(str(rank), str(rec["movie_id"]), str(rec["title"]), year, genres, rating)
    return table


def _metrics_table(evaluation: dict[str, Any]) -> Table:
    table = Table(title="Test split: model vs baselines")
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("baseline is", justify="left")
    rating = evaluation["baselines"]["rating"]
    popularity = evaluation["baselines"]["popularity"]
    regression = evaluation["regression_metrics"]
    ranking = evaluation["ranking_metrics"]
    rows = [
        ("RMSE (lower is better)", regression["rmse"]["value"], rating["rmse"], "biased"),
        ("MAE (lower is better)", regression["mae"]["value"], rating["mae"], "biased"),
        ("HitRate@10", ranking["hit_rate_at_10"]["value"], popularity["hit_rate_at_10"], "popularity"),
        ("NDCG@10", ranking["ndcg_at_10"]["value"], popularity["ndcg_at_10"], "popularity"),
    ]
    for name, model, base, kind in rows:
        table.add_row(name, f"{model:.4f}", f"{base:.4f}", kind)
    return table


def print_recommendations(console: Console, recommendations: dict[int, Any]) -> None:
    """One table per user: rank, id, title, year, genres and the predicted rating."""
    from dataset.tables import load_tables  # noqa: PLC0415  heavy: loads pandas only when called

    details = movie_details(load_tables("ml-100k").movies)
    for user, answer in recommendations.items():
        console.print(recommendation_table(user, answer, details))


def data_and_features(lap: Callable[[str, float], None]) -> servers.Service:
    """Fetch ml-100k and make sure the Feast feature server runs on it; return the server."""
    start = time.monotonic()
    _mlops("data", "fetch", "--dataset", "ml-100k")
    lap("data", start)
    # start_feast_server shows its own progress (one rich live display at a time).
    start = time.monotonic()
    feast = ensure_feast("ml-100k")
    lap("feast", start)
    console.print(f"Feast feature server {feast.url} (the endpoint reads user features there)")
    return feast


def approve(model_package_arn: str) -> str:
    """Approve the package in the moto server's registry, as a reviewer would; return its status."""
    import boto3  # noqa: PLC0415  heavy: loads boto3 only when called

    sm = boto3.client("sagemaker", region_name="us-east-1")
    registry.approve(sm, model_package_arn, "approved by make demo")
    status: str = sm.describe_model_package(ModelPackageName=model_package_arn)["ModelApprovalStatus"]
    return status


def run(serve: bool) -> dict[str, Any]:
    """The whole demo; returns what it printed, as data."""

    timings: dict[str, float] = {}
    t0 = time.monotonic()

    def lap(name: str, start: float) -> None:
        timings[name] = round(time.monotonic() - start, 1)

    with console.status("[1/7] Docker engine") as status:
        start = time.monotonic()
        ensure_docker()
        lap("docker", start)
        status.update("[2/7] images (Docker's layer cache makes a rebuild of unchanged code quick)")
    start = time.monotonic()
    _mlops("images", "build")
    lap("images", start)

    with console.status("[3/7] moto server and MLflow"):
        start = time.monotonic()
        moto, mlflow = ensure_standins()
        os.environ.update(servers.aws_environment(moto))
        lap("standins", start)
    console.print(f"moto server {moto.url}, MLflow {mlflow.url}")

    console.print("[4/7] MovieLens ml-100k, and the Feast feature server")
    feast = data_and_features(lap)

    console.print("[5/7] pipeline in local mode (Prepare, Train, Evaluate, quality check), then register")
    start = time.monotonic()
    result = run_local(
        dataset="ml-100k",
        console=console,
        container_labels=demo_labels(),
        settings_overrides={
            "mlflow_tracking_uri": mlflow.url,
            "feast_url": feast.url,
            # Training's own defaults otherwise: the ranking tower (on by default) ranks the top 10.
            "hyperparameters": {"epochs": os.environ.get("MLOPS_DEMO_EPOCHS", DEMO_EPOCHS), "seed": "42"},
        },
    )
    lap("pipeline", start)

    with console.status("[6/7] approve the model package"):
        approval = approve(result.model_package_arn)

    console.print(f"[7/7] deploy to a local endpoint on port {PORT} (serving image, LocalSession)")
    start = time.monotonic()
    timings["feast_warm"] = round(sum(warm_feast(feast.url, DEMO_USERS).values()), 1)
    settings = local_settings()
    session = deploy(result.model_data_url, settings.serving_image_uri, LOCAL_ROLE, feast.url)
    lap("deploy", start)
    try:
        recommendations = recommend(DEMO_USERS)
        print_recommendations(console, recommendations)
        console.print(_metrics_table(result.evaluation))
        timings["total"] = round(time.monotonic() - t0, 1)
        console.print(
            "\n[bold]Where to look next[/bold]\n"
            f"  model package   {result.model_package_arn} ({approval})\n"
            f"  lineage         dataset {result.dataset_version}, git {result.git_commit}, "
            f"MLflow run {result.evaluation['lineage']['mlflow_run_id']}\n"
            f"  MLflow UI       {mlflow.url}  (the run, its plots and the logged model)\n"
            f"  endpoint        http://127.0.0.1:{PORT}/invocations  "
            f'(e.g. curl -d \'{{"user_id": 42, "k": 10}}\' ...), metrics at http://127.0.0.1:{PORT}/metrics\n'
            f"  AWS stand-in    {moto.url} (AWS_ENDPOINT_URL for boto3 / the aws CLI)\n"
            f"  timings (s)     {timings}\n"
            "  stop it all     make demo-down"
        )
        if serve:
            console.print(f"serving on http://127.0.0.1:{PORT} until Ctrl-C ...")
            while True:
                time.sleep(3600)
    finally:
        _delete_endpoint(session)
        remove_containers(demo_labels())
    return {
        "model_package_arn": result.model_package_arn,
        "reused_pipeline_run": result.reused,
        "evaluation": result.evaluation,
        "recommendations": {str(k): v for k, v in recommendations.items()},
        "timings": timings,
    }


def down() -> list[str]:
    """Stop the recorded stand-ins and the containers this checkout's demo started (by label)."""
    stopped = servers.stop_recorded()
    removed = remove_containers(demo_labels())
    if removed:
        stopped.append(f"{removed} container(s)")
    return stopped


def main(argv: list[str] | None = None) -> int:
    """`python -m mlops.demo [--down] [--serve] [--json]`."""
    parser = argparse.ArgumentParser(prog="mlops.demo", description=__doc__)
    parser.add_argument("--down", action="store_true", help="stop everything `make demo` started")
    parser.add_argument("--serve", action="store_true", help="keep the endpoint up until Ctrl-C")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--verbose", action="store_true", help="also show the SDKs' INFO/DEBUG logs, notices and warnings"
    )
    args = parser.parse_args(argv)
    verbosity.configure(args.verbose or verbosity.verbose_from_env())
    if args.down:
        stopped = down()
        console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        return 0
    if shutil.which("docker") is None:
        console.print(
            "[red]error:[/red] the docker client is not installed; run `make docker` (Debian) first"
        )
        return 2
    try:
        # Local mode streams container logs to sys.stdout; they are progress, so stderr.
        with contextlib.redirect_stdout(sys.stderr):
            summary = run(serve=args.serve)
    except KeyboardInterrupt:
        console.print("interrupted: stopping everything the demo started")
        down()
        return 130
    except Exception as error:
        console.print(f"[red]demo failed:[/red] {error}")
        console.print("stopping everything the demo started")
        down()
        return 1
    if args.json:
        sys.stdout.write(json.dumps(summary, sort_keys=True, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
