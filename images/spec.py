"""Which images the project builds, from which Dockerfile, and which code packages they may copy."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BASE_IMAGE = "mlops-base:bookworm"
# The packages a Dockerfile may copy. Each Dockerfile picks its own; infra/, bench/ and tests/ never go
# in. modeldir (the saved-model contract) goes into both images.
CODE_PACKAGES = ("dataset", "features", "pipelines", "training", "inference", "modeldir")


@dataclass(frozen=True)
class ImageSpec:
    """One image the project builds: its Dockerfile, tag and uv dependency group."""

    name: str
    dockerfile: str
    tag: str
    group: str

    @property
    def requirements_file(self) -> str:
        """The exported requirements file's name at the context root (docs/contracts.md section 4)."""
        return f"requirements-{self.group}.txt"


IMAGES: dict[str, ImageSpec] = {
    "training": ImageSpec("training", "training/Dockerfile", "mlops-training:latest", "train"),
    "serving": ImageSpec("serving", "inference/Dockerfile", "mlops-serving:latest", "serve"),
}
