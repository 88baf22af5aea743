"""`python -m bench.serve [--json]`: our server against `mlflow models serve`, and the in-process floor.

One run, one machine, one load generator for both servers (wrk at saturation, an open-loop asyncio
client at 300 and 1,000 requests/s), one worker each, single-user top-10 requests. Figures are noisy
on a shared machine: re-run before quoting them.

Why one module over 400 lines: one benchmark run, its candidates and rounds side by side, so the
method that produced a printed figure is read in one place. Host-only, never in an image.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.loadgen import FixedRate, fixed_rate, wait_ready, wrk_saturation
from bench.serve_model import BenchModel, prepare
from dataset.paths import state_dir
from inference.app import ServingApp
from inference.config import ServerConfig
from inference.features import InMemoryFeatureStore
from inference.model import load_model_dir
from inference.predictor import Predictor
from inference.queries import RequestError
from standins.ports import free_port as _free_port

IMAGE = "mlops-serving:latest"
TARGET_RATIO_MLFLOW = 8.0
TARGET_P99_MS = 5.0
TARGET_FLOOR_SHARE = 0.20


def _log(msg: str) -> None:
    print(f"bench-serve: {msg}", file=sys.stderr, flush=True)


@contextmanager
def _process(cmd: list[str], env: dict[str, str], log_path: Path) -> Any:
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        # The whole process group: mlflow serve runs uvicorn as a child.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def in_process_floor(bm: BenchModel, seconds: float = 3.0) -> float:
    """Calls/s of feature lookup + user vector + top-10 in one Python thread: no server can beat it."""

    model = load_model_dir(bm.model_dir)
    predictor = Predictor(model)
    store = InMemoryFeatureStore.from_parquet(bm.user_features, model.feature_names)
    users = model.user_ids.tolist()
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for u in users[:200]:
            user = predictor.user_vector(u, store.get_user_features(u), None)
            predictor.top_k(u, user, 10)
        n += 200
    return n / (time.perf_counter() - start)


def _serve_ours(
    bm: BenchModel, port: int, log: Path, stack: str = "asgi"
) -> tuple[list[str], dict[str, str]]:
    env = {
        **os.environ,
        "SM_MODEL_DIR": str(bm.model_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
        "MLOPS_SERVE_FEATURE_STORE": "memory",
        "MLOPS_SERVE_FEATURE_SOURCE": str(bm.user_features),
    }
    if stack == "starlette":
        return [sys.executable, "-m", "bench.serve", "--serve-starlette"], env
    return [sys.executable, "-m", "inference", "serve"], env


def check_answer(url: str, body: bytes) -> dict[str, Any]:
    """One request before the load: a server that answers it with an error must not be benchmarked."""

    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310 - a local URL
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - a local URL
            answer: dict[str, Any] = json.loads(resp.read())
            return answer
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{url} answered {e.code} to the benchmark request: {e.read()[:500]!r}") from None


def measure_server(
    name: str,
    url: str,
    body: bytes,
    seconds: int,
    rates: list[float],
) -> dict[str, Any]:
    """Saturation with wrk, then fixed rates the server can sustain (others are reported as saturated)."""
    check_answer(url, body)
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    path = "/" + url.split("//", 1)[1].split("/", 1)[1]
    _log(f"{name}: saturation ({seconds} s, wrk, 32 connections)")
    sat = wrk_saturation(url, body, seconds)
    if sat.non_2xx or sat.socket_errors:
        _log(f"{name}: {sat.non_2xx} non-2xx answers and {sat.socket_errors} socket errors under saturation")
    out: dict[str, Any] = {"saturation": asdict(sat), "fixed": {}}
    for rate in rates:
        if sat.requests_per_s < rate:
            out["fixed"][str(int(rate))] = {"skipped": f"saturates at {sat.requests_per_s:.1f} requests/s"}
            continue
        _log(f"{name}: fixed rate {rate:.0f}/s for 5 s")
        r: FixedRate = fixed_rate(host, int(port), path, body, rate, 5.0)
        out["fixed"][str(int(rate))] = asdict(r)
    return out


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose `key` is the median of the runs' (the upper one of an even count), with all runs."""
    ordered = sorted(runs, key=lambda r: float(r[key]))
    return {**ordered[len(ordered) // 2], "runs": [round(float(r[key]), 2) for r in runs]}


def measure_ours(
    bm: BenchModel, port: int, body: bytes, seconds: int, rounds: int
) -> tuple[dict[str, Any], list[float]]:
    """Rounds of: in-process floor, wrk saturation, fixed rates, and the client's own floor.

    Each figure is the median of its rounds, so one burst of a shared machine's load moves a
    figure by one rank, not the verdict; every round's value is kept beside it. Each round's
    floor runs right before its saturation run, so load drift weighs on both sides of the ratio.
    `client_floor_1000` is the same open-loop client asking GET /ping (no model, no JSON) at
    1,000/s: the latency the client, the loopback and the scheduler add on their own.
    """
    url = f"http://127.0.0.1:{port}/invocations"
    check_answer(url, body)
    floors: list[float] = []
    saturation: list[dict[str, Any]] = []
    fixed: dict[str, list[dict[str, Any]]] = {"300": [], "1000": []}
    client: list[dict[str, Any]] = []
    for r in range(1, rounds + 1):
        _log(f"ours: round {r}/{rounds}: in-process floor (3 s), saturation ({seconds} s, wrk)")
        floors.append(in_process_floor(bm))
        sat = wrk_saturation(url, body, seconds)
        if sat.non_2xx or sat.socket_errors:
            _log(
                f"ours: {sat.non_2xx} non-2xx answers and {sat.socket_errors} socket errors under saturation"
            )
        saturation.append(asdict(sat))
        for rate in (300.0, 1000.0):
            _log(f"ours: round {r}/{rounds}: fixed rate {rate:.0f}/s for 5 s")
            fixed[str(int(rate))].append(asdict(fixed_rate("127.0.0.1", port, "/invocations", body, rate)))
        _log(f"ours: round {r}/{rounds}: the client's floor, GET /ping at 1000/s for 5 s")
        client.append(asdict(fixed_rate("127.0.0.1", port, "/ping", None, 1000.0)))
    out = {
        "saturation": _median_run(saturation, "requests_per_s"),
        "fixed": {rate: _median_run(runs, "p99_ms") for rate, runs in fixed.items()},
        "client_floor_1000": _median_run(client, "p99_ms"),
        "rounds": rounds,
    }
    return out, floors


def compare_stacks(
    bm: BenchModel, body: bytes, logs: Path, rounds: int = 3, seconds: int = 5
) -> dict[str, Any]:
    """Bare ASGI vs Starlette, both running, wrk alternating between them: load drift hits both alike."""
    ports = {"asgi": _free_port(), "starlette": _free_port()}
    with contextlib.ExitStack() as stack:
        for name, port in ports.items():
            cmd, env = _serve_ours(bm, port, logs / f"stack-{name}.log", name)
            proc = stack.enter_context(_process(cmd, env, logs / f"stack-{name}.log"))
            wait_ready(f"http://127.0.0.1:{port}/ping", 120, proc=proc)
        runs: dict[str, list[float]] = {name: [] for name in ports}
        for r in range(rounds):
            for name, port in ports.items():
                _log(f"stacks: round {r + 1}/{rounds}, {name} ({seconds} s)")
                url = f"http://127.0.0.1:{port}/invocations"
                runs[name].append(wrk_saturation(url, body, seconds).requests_per_s)
    return {name: {"runs": v, "median": float(np.median(v))} for name, v in runs.items()}


def mlflow_body(bm: BenchModel, user_id: int) -> bytes:
    """A top-10 through the MLflow model means scoring the whole catalog for the user (client sorts)."""
    import pandas as pd  # noqa: PLC0415  heavy: loads pandas only when called

    towers = np.load(bm.model_dir / "towers.npz")
    names = json.loads((bm.model_dir / "metadata.json").read_text())["user_feature_names"]
    feats = pd.read_parquet(bm.user_features).set_index("user_id").loc[user_id, names].to_numpy(np.float32)
    ids = towers["movie_ids"].tolist()
    return json.dumps(
        {
            "inputs": {
                "user_id": [user_id] * len(ids),
                "movie_id": ids,
                "user_features": [feats.tolist()] * len(ids),
            }
        }
    ).encode()


def image_figures(bm: BenchModel) -> dict[str, Any]:
    """The serving image's size and the container's start-to-ready time (docker run -> /ping 200)."""
    inspect = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Size}}", IMAGE], capture_output=True, text=True, check=False
    )
    if inspect.returncode != 0:
        return {"error": f"{IMAGE} is not built: run `mlops images build --only serving`"}
    port = _free_port()
    start = time.monotonic()
    run = subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--rm",
            "-p",
            f"127.0.0.1:{port}:8080",
            "-v",
            f"{bm.model_dir}:/opt/ml/model:ro",
            IMAGE,
            "serve",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        return {"size_bytes": int(inspect.stdout), "error": run.stderr.strip()}
    cid = run.stdout.strip()
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", 300)
        ready = time.monotonic() - start
    except TimeoutError as e:
        # Report it with the container's own words instead of losing every other figure of the run.
        logs = subprocess.run(
            ["docker", "logs", "--tail", "5", cid], capture_output=True, text=True, check=False
        )
        return {
            "size_bytes": int(inspect.stdout),
            "error": f"{e}; container log: {logs.stdout + logs.stderr}",
        }
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)
    return {"size_bytes": int(inspect.stdout), "start_to_ready_s": round(ready, 2)}


def run(seconds: int, with_image: bool, stacks: bool, workdir: Path, rounds: int = 3) -> dict[str, Any]:
    """The whole benchmark; returns the figures and each target's verdict."""
    bm = prepare(workdir)
    result: dict[str, Any] = {"model_dir": str(bm.model_dir), "mlflow_model_uri": bm.mlflow_model_uri}
    body = json.dumps({"user_id": 42, "k": 10}).encode()
    logs = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    port = _free_port()
    cmd, env = _serve_ours(bm, port, logs / "asgi.log")
    with _process(cmd, env, logs / "asgi.log") as proc:
        wait_ready(f"http://127.0.0.1:{port}/ping", 120, proc=proc)
        ours, floors = measure_ours(bm, port, body, seconds, rounds)
    result["ours_asgi"] = ours
    result["in_process_runs"] = [round(f, 1) for f in floors]
    result["in_process_calls_per_s"] = round(float(np.median(floors)), 1)
    if stacks:
        result["stacks"] = compare_stacks(bm, body, logs)
    port = _free_port()
    bindir = str(Path(sys.executable).parent)
    # mlflow starts `uvicorn` by name: the environment's bin directory must be on PATH.
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": bm.mlflow_tracking_uri,
        "PATH": f"{bindir}:{os.environ['PATH']}",
    }
    mlflow = str(Path(bindir) / "mlflow")
    cmd = [
        mlflow,
        "models",
        "serve",
        "-m",
        bm.mlflow_model_uri,
        "--env-manager",
        "local",
        "-w",
        "1",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]
    _log("mlflow models serve: starting (TensorFlow import takes a while)")
    with _process(cmd, env, logs / "mlflow.log") as proc:
        wait_ready(f"http://127.0.0.1:{port}/ping", 300, proc=proc)
        url = f"http://127.0.0.1:{port}/invocations"
        top10 = mlflow_body(bm, 42)
        result["mlflow_top10"] = measure_server(
            "mlflow (top-10: whole catalog)", url, top10, seconds, [300.0, 1000.0]
        )
        one = json.loads(top10)["inputs"]
        pair = json.dumps({"inputs": {k: v[:1] for k, v in one.items()}}).encode()
        result["mlflow_one_rating"] = measure_server("mlflow (one rating)", url, pair, seconds, [])
    if with_image:
        _log("image size and start-to-ready")
        result["image"] = image_figures(bm)
    result["logs"] = str(logs)
    ours = result["ours_asgi"]["saturation"]["requests_per_s"]
    theirs = result["mlflow_top10"]["saturation"]["requests_per_s"]
    p99 = result["ours_asgi"]["fixed"]["1000"].get("p99_ms", float("inf"))
    floor = result["in_process_calls_per_s"]
    result["targets"] = {
        "ours_vs_mlflow_ratio": {
            "value": round(ours / theirs, 1),
            "target": f">= {TARGET_RATIO_MLFLOW}",
            "pass": ours >= TARGET_RATIO_MLFLOW * theirs,
        },
        "p99_ms_at_1000": {
            "value": round(p99, 2),
            "target": f"<= {TARGET_P99_MS}",
            "pass": p99 <= TARGET_P99_MS,
        },
        "ours_vs_floor_share": {
            "value": round(ours / floor, 3),
            "target": f">= {TARGET_FLOOR_SHARE}",
            "pass": ours >= TARGET_FLOOR_SHARE * floor,
        },
    }
    return result


def _table(r: dict[str, Any]) -> str:
    ours = r["ours_asgi"]
    ml = r["mlflow_top10"]

    def fixed(d: dict[str, Any], rate: str) -> str:
        f = d["fixed"].get(rate, {})
        return f"p50 {f['p50_ms']:.2f} / p99 {f['p99_ms']:.2f} ms" if "p99_ms" in f else f.get("skipped", "-")

    rows = [
        ("our server, requests/s (saturation)", f"{ours['saturation']['requests_per_s']:.0f}"),
        ("mlflow models serve, requests/s (top-10)", f"{ml['saturation']['requests_per_s']:.1f}"),
        (
            "mlflow models serve, requests/s (one rating)",
            f"{r['mlflow_one_rating']['saturation']['requests_per_s']:.0f}",
        ),
        ("ours / mlflow (top-10)", f"{r['targets']['ours_vs_mlflow_ratio']['value']}x"),
        ("ours at 300/s (median round by p99)", fixed(ours, "300")),
        ("ours at 1000/s (median round by p99)", fixed(ours, "1000")),
        ("  p99 of each round at 1000/s, ms", ", ".join(f"{x:.2f}" for x in ours["fixed"]["1000"]["runs"])),
        (
            "client's own floor: GET /ping at 1000/s",
            fixed({"fixed": {"1000": ours["client_floor_1000"]}}, "1000"),
        ),
        ("mlflow at 300/s", fixed(ml, "300")),
        ("mlflow at 1000/s", fixed(ml, "1000")),
        ("  our requests/s, each round", ", ".join(f"{x:.0f}" for x in ours["saturation"]["runs"])),
        ("in-process predictor, calls/s (median round)", f"{r['in_process_calls_per_s']:.0f}"),
        ("  each round", ", ".join(f"{x:.0f}" for x in r["in_process_runs"])),
        ("ours / in-process", f"{r['targets']['ours_vs_floor_share']['value']:.2f}"),
    ]
    if "stacks" in r:
        st = r["stacks"]
        for name in ("asgi", "starlette"):
            runs = ", ".join(f"{x:.0f}" for x in st[name]["runs"])
            rows.append(
                (f"stack {name}, requests/s (median; alternating runs)", f"{st[name]['median']:.0f} ({runs})")
            )
    if "image" in r:
        img = r["image"]
        rows.append(("serving image size", f"{img.get('size_bytes', 0) / 1e6:.0f} MB"))
        rows.append(("container start-to-ready", f"{img.get('start_to_ready_s', float('nan'))} s"))
    width = max(len(a) for a, _ in rows)
    lines = [f"{a:<{width}}  {b}" for a, b in rows]
    for name, t in r["targets"].items():
        lines.append(f"{'PASS' if t['pass'] else 'FAIL'}  {name} = {t['value']} (target {t['target']})")
    return "\n".join(lines)


def _starlette_server() -> None:
    """The same ServingApp handlers behind Starlette routing: the candidate stack the benchmark compares."""
    import uvicorn  # noqa: PLC0415  heavy: loads uvicorn only when called
    from starlette.applications import Starlette  # noqa: PLC0415  heavy: loads starlette only when called
    from starlette.requests import Request  # noqa: PLC0415  heavy: loads starlette only when called
    from starlette.responses import Response  # noqa: PLC0415  heavy: loads starlette only when called
    from starlette.routing import Route  # noqa: PLC0415  heavy: loads starlette only when called

    core = ServingApp(ServerConfig.from_env())
    core.load()

    async def invocations(request: Request) -> Response:
        body = await request.body()
        try:
            answer = await core.sagemaker.invocations(
                request.scope, body, request.headers.get("content-type", "").encode()
            )
        except RequestError as e:
            answer = core._error(e.status, e.code, e.message, e.field, "")
        return Response(answer.body, answer.status, media_type=answer.content_type.decode())

    async def ping(request: Request) -> Response:
        return Response(b'{"status":"ok"}', 200, media_type="application/json")

    app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"]), Route("/ping", ping)])
    port = int(os.environ["SAGEMAKER_BIND_TO_PORT"])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


def main(argv: list[str] | None = None) -> int:
    """Command line of the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--seconds", type=int, default=10, help="saturation run length per server")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of our server's figures (each reported; median kept)"
    )
    parser.add_argument(
        "--no-image", action="store_true", help="skip the image size and start-to-ready figures"
    )
    parser.add_argument("--stacks", action="store_true", help="also measure the Starlette candidate stack")
    parser.add_argument("--workdir", type=Path, default=None, help="where the trained model is kept")
    parser.add_argument("--serve-starlette", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_starlette:
        _starlette_server()
        return 0

    workdir = args.workdir or state_dir() / "bench-serve"
    result = run(args.seconds, not args.no_image, args.stacks, workdir, args.rounds)
    if args.json:
        print(_table(result), file=sys.stderr)
        print(json.dumps(result))
    else:
        print(_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
