"""`mlops images build`: build the ML (training) and serving images from an assembled context.

The specs and the context live in `images/` (the CDK assembles the same context); this is the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dataset.paths import ROOT
from images.context import ImageBuildError, assemble_context
from images.spec import DEFAULT_BASE_IMAGE, IMAGES, ImageSpec
from standins import StandInError
from standins.docker import ensure_docker
from standins.git import git_commit

app = typer.Typer(help="Build the project's container images.", no_args_is_help=True)


@dataclass(frozen=True)
class BuiltImage:
    """What one build produced."""

    name: str
    tag: str
    image_id: str
    size_bytes: int
    build_seconds: float
    base_image: str
    git_commit: str


def ensure_base_image(base_image: str, console: Console, root: Path = ROOT) -> None:
    """Build the offline default base image when it is missing; other bases are Docker's to pull."""
    if _docker_ok(["docker", "image", "inspect", base_image]):
        return
    if base_image != DEFAULT_BASE_IMAGE:
        return
    console.print(f"[bold]images:[/] base image {base_image} is missing; building it from Debian packages")
    proc = subprocess.run(["bash", str(root / "scripts" / "base-image.sh"), base_image], check=False)
    if proc.returncode != 0:
        raise ImageBuildError(
            f"scripts/base-image.sh failed (exit {proc.returncode}) building {base_image}; "
            "see its output above."
        )


def _docker_ok(cmd: list[str]) -> bool:
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def build_image(spec: ImageSpec, base_image: str, console: Console, root: Path = ROOT) -> BuiltImage:
    """Assemble the context in a temp dir and `docker build` it, streaming progress to stderr."""
    commit = git_commit(root)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mlops-{spec.name}-context-") as tmp:
        context = assemble_context(spec, Path(tmp), root)
        cmd = [
            "docker",
            "build",
            "--network",
            "host",
            "-f",
            str(context / spec.dockerfile),
            "--build-arg",
            f"BASE_IMAGE={base_image}",
            "--build-arg",
            f"GIT_COMMIT={commit}",
            "-t",
            spec.tag,
            str(context),
        ]
        tail: deque[str] = deque(maxlen=40)
        with console.status(f"building {spec.tag}") as status:
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "DOCKER_BUILDKIT": "0"},
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip()
                tail.append(line)
                if line.startswith("Step "):
                    status.update(f"building {spec.tag}: {line[:100]}")
                    console.print(f"[dim]{spec.name}[/] {line[:160]}", highlight=False)
            code = proc.wait()
    if code != 0:
        raise ImageBuildError(
            f"docker build of {spec.tag} from {spec.dockerfile} failed (exit {code}). "
            "Last lines:\n" + "\n".join(tail)
        )
    inspect = subprocess.run(
        ["docker", "image", "inspect", spec.tag, "--format", "{{.Id}} {{.Size}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    image_id, size = inspect.stdout.split()
    return BuiltImage(
        spec.name, spec.tag, image_id, int(size), round(time.monotonic() - started, 1), base_image, commit
    )


@app.command("build")
def build(
    only: Annotated[str | None, typer.Option(help="Build one image: training or serving.")] = None,
    base_image: Annotated[
        str, typer.Option(help="Base image (a registry user may pass python:3.11-slim-bookworm).")
    ] = DEFAULT_BASE_IMAGE,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Build the training image and the serving image (or only one), and print their sizes."""
    console = Console(stderr=True)
    if only is not None and only not in IMAGES:
        console.print(f"[red]--only {only!r} is not an image; choose one of {', '.join(IMAGES)}.[/]")
        raise typer.Exit(2)
    wanted = [IMAGES[only]] if only else list(IMAGES.values())
    built: list[BuiltImage] = []
    missing: list[dict[str, str]] = []
    try:
        ensure_docker()
        ensure_base_image(base_image, console)
        for spec in wanted:
            if not (ROOT / spec.dockerfile).is_file():
                reason = f"{spec.dockerfile} does not exist yet, so {spec.tag} was NOT built"
                console.print(f"[yellow]images: {reason}[/]")
                missing.append({"name": spec.name, "dockerfile": spec.dockerfile, "reason": reason})
                continue
            image = build_image(spec, base_image, console)
            console.print(f"images: {image.tag} {image.size_bytes / 1e6:.0f} MB in {image.build_seconds} s")
            built.append(image)
    except (ImageBuildError, StandInError) as err:
        console.print(f"[red]images: {err}[/]")
        raise typer.Exit(1) from err
    if as_json:
        typer.echo(json.dumps({"images": [asdict(b) for b in built], "missing": missing}))
    else:
        for b in built:
            typer.echo(f"{b.tag}\t{b.image_id[7:19]}\t{b.size_bytes / 1e6:.0f} MB\t{b.build_seconds} s")
    if missing:
        raise typer.Exit(1)
