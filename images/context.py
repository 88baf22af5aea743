"""An image's build context: the locked requirements, the host CA bundle and the code packages."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from dataset.paths import ROOT
from images.spec import CODE_PACKAGES, ImageSpec

_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache", "host-ca.crt")
# Where the host keeps the CA bundle that HTTPS inside a build must trust, in order of preference.
_CA_ENV_VARS = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
_CA_DEFAULT = Path("/etc/ssl/certs/ca-certificates.crt")


class ImageBuildError(RuntimeError):
    """A build could not start or `docker build` failed; the message says why and what to do."""


def _uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(found).exists():
        raise ImageBuildError(
            "uv is not installed; it exports the images' requirements from uv.lock. "
            "Install it with `python3 -m pip install --user uv`."
        )
    return found


def export_requirements(group: str, root: Path = ROOT) -> str:
    """Export one dependency group's locked requirements (no hashes, no project) from uv.lock."""
    cmd = [
        _uv(),
        "export",
        "--frozen",
        "--no-hashes",
        "--no-default-groups",
        "--group",
        group,
        "--no-emit-project",
    ]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageBuildError(f"`{' '.join(cmd)}` failed in {root}: {proc.stderr.strip()}")
    return proc.stdout


def host_ca_bundle() -> Path:
    """The host's CA bundle, which pip inside the build must trust (the network may re-sign TLS)."""
    for var in _CA_ENV_VARS:
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return Path(value)
    if _CA_DEFAULT.is_file():
        return _CA_DEFAULT
    raise ImageBuildError(
        f"no CA bundle found: none of {', '.join(_CA_ENV_VARS)} names a file and "
        f"{_CA_DEFAULT} is missing. Set PIP_CERT to your CA bundle and run again."
    )


def assemble_context(spec: ImageSpec, dest: Path, root: Path = ROOT) -> Path:
    """Write a build context for `spec` into `dest`: requirements, CA bundle, code packages."""
    dockerfile = root / spec.dockerfile
    if not dockerfile.is_file():
        raise ImageBuildError(f"{spec.dockerfile} is missing, so the {spec.name} image cannot be built.")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / spec.requirements_file).write_text(export_requirements(spec.group, root))
    shutil.copyfile(host_ca_bundle(), dest / "host-ca.crt")
    for package in CODE_PACKAGES:
        if (root / package).is_dir():
            shutil.copytree(root / package, dest / package, ignore=_IGNORED)
    return dest
