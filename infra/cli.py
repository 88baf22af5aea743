"""`mlops infra`: synthesize the CDK app and deploy the dev stacks to a local moto server.

The CDK runs in `.venv-cdk` (it cannot share the ML environment), so these commands run it there by
subprocess; this module imports nothing from the CDK.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parents[1]
CDK_PYTHON = ROOT / ".venv-cdk" / "bin" / "python"
CDK_CLI = ROOT / "node_modules" / ".bin" / "cdk"

app = typer.Typer(help="CDK infrastructure: synth every environment, deploy dev to a local moto server.")


def _require(path: Path, fix: str) -> None:
    if not path.exists():
        typer.echo(f"error: {path} is missing; {fix}", err=True)
        raise typer.Exit(2)


@app.command()
def synth(
    env: str = typer.Option("", help="dev, staging or prod; empty synthesizes all three"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Synthesize the app (cdk-nag runs on every stack) and report how long it took."""
    _require(CDK_CLI, "run `make setup-node`")
    _require(CDK_PYTHON, "run `make setup-cdk`")
    args = [str(CDK_CLI), "synth", "--quiet"] + (["-c", f"env={env}"] if env else [])
    environ = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    start = time.monotonic()
    proc = subprocess.run(args, cwd=ROOT, env=environ, capture_output=True, text=True, check=False)
    seconds = round(time.monotonic() - start, 1)
    sys.stderr.write(proc.stderr[-6000:])
    if proc.returncode != 0:
        typer.echo(f"error: cdk synth failed (exit {proc.returncode}); the reason is above", err=True)
        raise typer.Exit(proc.returncode)
    manifest = json.loads((ROOT / "cdk.out" / "manifest.json").read_text())
    stages = sorted(k.removeprefix("assembly-") for k in manifest["artifacts"] if k.startswith("assembly-"))
    result = {"environments": stages, "seconds": seconds}
    if json_out:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"synthesized {', '.join(stages)} in {seconds} s (cdk.out/)")


@app.command("deploy-local")
def deploy_local(
    port: int = typer.Option(0, help="port for the moto server; 0 picks a free one"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Start a moto server (left running) and `cdk deploy` every dev stack to it."""
    _require(CDK_PYTHON, "run `make setup-cdk`")
    args = [str(CDK_PYTHON), "-m", "infra.local.deploy", "--start-server", "--port", str(port)]
    proc = subprocess.run([*args, *(["--json"] if json_out else [])], cwd=ROOT, check=False)
    raise typer.Exit(proc.returncode)
