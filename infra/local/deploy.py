"""Deploy the dev environment's stacks with the real CDK CLI to a moto server on this machine.

`python -m infra.local.deploy [--endpoint-url URL | --start-server] [--json]`: bootstraps, deploys
Data, Features, MlPlatform and Observability, registers an approved model package in the server's
registry, then deploys Serving with that package's ARN. Images come in as existing image URIs (moto
has the ECR API but no registry to push to). Progress goes to stderr; `--json` prints one object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
REGION = "us-east-1"
ENV = "dev"
TRAINING_IMAGE = "mlops-training:latest"
SERVING_IMAGE = "mlops-serving:latest"

console = Console(stderr=True)


@dataclass
class LocalDeployment:
    """What a local deployment made, and how long each part took."""

    endpoint_url: str
    environment: str
    stacks: list[str]
    model_package_arn: str
    training_image_uri: str
    serving_image_uri: str
    server_pid: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def aws_env(endpoint_url: str) -> dict[str, str]:
    """Environment variables that point AWS SDKs and the CDK CLI at the moto server."""
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL=endpoint_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106  (moto accepts any credentials)
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION="1",
        CDK_DISABLE_VERSION_CHECK="1",
    )
    # A profile or session token from the user's shell would send the CLI elsewhere.
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        env.pop(key, None)
    return env


def _cdk() -> str:
    cdk = REPO_ROOT / "node_modules" / ".bin" / "cdk"
    if not cdk.exists():
        raise FileNotFoundError(
            f"{cdk} is missing: run `make setup-node` (npm ci) to install the pinned CDK CLI"
        )
    return str(cdk)


def _run(args: list[str], *, env: dict[str, str], cwd: Path, what: str) -> None:
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(args)}\n{tail}")


def start_server(port: int = 0, timeout: float = 120.0) -> tuple[subprocess.Popen[str], str]:
    """Start `standins.moto_server` in its own session; return the process and its endpoint URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "standins.moto_server", "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("READY "):
            return proc, f"http://localhost:{int(line.split()[1])}"
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"the moto server did not report READY within {timeout:.0f} s (last line: {line!r})")


def _context(extra: dict[str, str]) -> list[str]:
    out: list[str] = []
    for key, value in {
        "env": ENV,
        "training_image_uri": TRAINING_IMAGE,
        "serving_image_uri": SERVING_IMAGE,
        **extra,
    }.items():
        out += ["-c", f"{key}={value}"]
    return out


def register_model_package(endpoint_url: str, group: str) -> str:
    """Register an approved model package in the server's registry, as the pipeline's Register step would."""
    response = _sagemaker(endpoint_url).create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription="Registered by infra.local.deploy to deploy the Serving stack locally",
        ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [{"Image": SERVING_IMAGE, "ModelDataUrl": f"s3://{group}/model.tar.gz"}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )
    arn = response["ModelPackageArn"]
    assert isinstance(arn, str)
    return arn


def _sagemaker(endpoint_url: str) -> Any:
    import boto3  # noqa: PLC0415  heavy: loads boto3 only when called

    return boto3.client(
        "sagemaker",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106  (moto accepts any credentials)
    )


def _next_package_arn(endpoint_url: str, group: str) -> str:
    """The ARN the next package registered in `group` will get (versions count up from 1)."""
    client = _sagemaker(endpoint_url)
    try:
        client.describe_model_package_group(ModelPackageGroupName=group)
        count = len(client.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"])
    except client.exceptions.ClientError:
        count = 0
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/{count + 1}"


def deploy(endpoint_url: str) -> LocalDeployment:
    """Bootstrap and deploy every dev stack to the moto server at `endpoint_url`."""
    env = aws_env(endpoint_url)
    cdk = _cdk()
    seconds: dict[str, float] = {}
    group = f"mlops-movielens-{ENV}-recommender"
    stacks = [f"{ENV.capitalize()}/{name}" for name in ("Data", "Features", "MlPlatform", "Observability")]
    serving = f"{ENV.capitalize()}/Serving"
    with tempfile.TemporaryDirectory(prefix="cdk-local-") as tmp:
        work = Path(tmp)
        out = work / "cdk.out"
        # Bootstrap from a directory without cdk.json, so the CLI does not synthesize the app for it.
        start = time.monotonic()
        console.log(f"cdk bootstrap aws://{ACCOUNT}/{REGION} against {endpoint_url}")
        _run([cdk, "bootstrap", f"aws://{ACCOUNT}/{REGION}"], env=env, cwd=work, what="cdk bootstrap")
        seconds["bootstrap"] = round(time.monotonic() - start, 1)

        # One synth for both deploys: the package the Serving stack serves gets the group's next version.
        arn = _next_package_arn(endpoint_url, group)
        start = time.monotonic()
        console.log(f"cdk synth -c env={ENV} -c model_package_arn={arn}")
        _run(
            [cdk, "synth", "--quiet", *_context({"model_package_arn": arn}), "--output", str(out)],
            env=env,
            cwd=REPO_ROOT,
            what="cdk synth",
        )
        seconds["synth"] = round(time.monotonic() - start, 1)

        start = time.monotonic()
        console.log(f"cdk deploy {' '.join(stacks)}")
        deploy_args = [cdk, "deploy", "--app", str(out), "--require-approval", "never", "--exclusively"]
        _run([*deploy_args, *stacks], env=env, cwd=REPO_ROOT, what="cdk deploy")
        seconds["deploy_platform"] = round(time.monotonic() - start, 1)

        registered = register_model_package(endpoint_url, group)
        console.log(f"registered {registered}")
        if registered != arn:
            raise RuntimeError(
                f"the registry gave {registered}, not the expected {arn}: another client registered a "
                "package in the same group meanwhile; run the local deployment again"
            )

        start = time.monotonic()
        console.log(f"cdk deploy {serving}")
        _run([*deploy_args, serving], env=env, cwd=REPO_ROOT, what="cdk deploy (Serving)")
        seconds["deploy_serving"] = round(time.monotonic() - start, 1)
    return LocalDeployment(
        endpoint_url=endpoint_url,
        environment=ENV,
        stacks=[*stacks, serving],
        model_package_arn=arn,
        training_image_uri=TRAINING_IMAGE,
        serving_image_uri=SERVING_IMAGE,
        seconds=seconds,
    )


def main() -> None:
    """Command line: deploy to a given server, or start one (left running) and deploy to it."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--endpoint-url", help="a running moto server, e.g. http://localhost:45123")
    target.add_argument(
        "--start-server", action="store_true", help="start a moto server and leave it running"
    )
    parser.add_argument("--port", type=int, default=0, help="port for --start-server (0 picks a free one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()
    server = None
    endpoint_url = args.endpoint_url
    if args.start_server:
        server, endpoint_url = start_server(args.port)
        console.log(f"moto server {endpoint_url} (pid {server.pid})")
    elif not endpoint_url.startswith("http://localhost:"):
        # moto parses template URLs only on localhost or AWS hosts, so 127.0.0.1 would fail the deploy later.
        parser.error(f"--endpoint-url {endpoint_url!r} must be http://localhost:<port>")
    try:
        result = deploy(endpoint_url)
    except Exception:
        if server is not None:
            server.kill()
        raise
    if server is not None:
        result.server_pid = server.pid
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        console.print(
            f"[green]deployed[/] {', '.join(result.stacks)} to {endpoint_url} in {result.seconds} s"
        )
        console.print(f"model package: {result.model_package_arn}")
    if server is not None:
        console.print(
            f"the moto server keeps running: export AWS_ENDPOINT_URL={endpoint_url} "
            f"AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={REGION}; "
            f"stop it with: kill {server.pid}"
        )


if __name__ == "__main__":
    main()
