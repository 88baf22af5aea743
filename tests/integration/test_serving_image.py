"""What the serving image carries: only the serving requirements and the code packages serving runs.

Builds the image from this checkout (the tag is shared, so an older build could be anyone's), then
lists its Python distributions and its code from inside a container and prints the image size.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from dataset.paths import ROOT

IMAGE = "mlops-serving:latest"
pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Host-only: frameworks the server does not use, and the ML stack it must never pull in.
FORBIDDEN_DISTRIBUTIONS = ("starlette", "tensorflow", "tensorflow-cpu", "keras", "mlflow", "fastapi")
# The code packages the server runs; modeldir is the saved-model contract both images share.
SERVING_PACKAGES = {"inference", "modeldir"}
# Benchmark code runs on the host against the image, never inside it.
BENCH_FILE = re.compile(r"(^|/)(bench[^/]*\.py|loadgen[^/]*\.py|bench/.*)$")

_LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps(sorted({d.metadata['Name'] for d in m.distributions()})))"
)


def _require_docker() -> None:
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        up = subprocess.run(["bash", str(ROOT / "scripts" / "docker-up.sh")], check=False)
        if up.returncode != 0:
            pytest.fail("no Docker engine answers and scripts/docker-up.sh could not start one")


def _in_image(image: str, entrypoint: str, *args: str) -> str:
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", entrypoint, image, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, f"{entrypoint} {args} in {image} failed: {proc.stderr}"
    return proc.stdout


def image_contents(image: str) -> tuple[set[str], list[str]]:
    """The image's Python distributions (normalised names) and its code files under /opt/program."""
    names = json.loads(_in_image(image, "python", "-c", _LIST_DISTRIBUTIONS))
    files = _in_image(image, "find", "/opt/program", "-type", "f", "-not", "-path", "*/__pycache__/*")
    code = sorted(f.removeprefix("/opt/program/") for f in files.splitlines() if f.strip())
    return {re.sub(r"[-_.]+", "-", n).lower() for n in names}, code


def problems(distributions: set[str], code: list[str]) -> list[str]:
    """Everything the serving image carries that it should not, one sentence each."""
    found = [f"distribution {d} is installed" for d in FORBIDDEN_DISTRIBUTIONS if d in distributions]
    packages = {f.split("/", 1)[0] for f in code}
    found += [f"code package {p}/ is copied in" for p in sorted(packages - SERVING_PACKAGES)]
    found += [f"benchmark code {f} is copied in" for f in code if BENCH_FILE.search(f)]
    if "inference" not in packages:
        found.append("the inference package is missing")
    return found


@pytest.fixture(scope="module")
def image() -> str:
    _require_docker()
    build = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "mlops"), "images", "build", "--only", "serving"], check=False
    )
    assert build.returncode == 0, "mlops images build --only serving failed"
    return IMAGE


def test_the_serving_image_carries_only_the_serving_requirements_and_code(image, capsys):
    distributions, code = image_contents(image)
    size = int(
        subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    with capsys.disabled():
        print(
            f"\n{image}: {size / 1e6:.0f} MB, {len(distributions)} Python distributions, "
            f"{len(code)} code files in {sorted({f.split('/', 1)[0] for f in code})}"
        )
    assert {"uvicorn", "orjson", "numpy", "prometheus-client"} <= distributions, sorted(distributions)
    found = problems(distributions, code)
    assert not found, "the serving image carries what it should not:\n" + "\n".join(found)
