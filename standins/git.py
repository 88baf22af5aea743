"""The git commit that images, training jobs and pipeline runs record as their code's origin."""

from __future__ import annotations

import subprocess
from pathlib import Path

from dataset.paths import ROOT
from images.spec import CODE_PACKAGES


def git_commit(root: Path = ROOT) -> str:
    """HEAD's commit, `-dirty` when the images' code differs from it; `unknown` outside a checkout.

    One rule for every caller: dirty means `git status --porcelain` lists anything (an edit, a
    staged change or an untracked file not ignored) under the code packages the images copy
    (`images.spec.CODE_PACKAGES`), because an image built now would carry exactly that difference.
    Changes elsewhere (docs, tests, infra) do not make the recorded commit dirty.
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", *CODE_PACKAGES],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if status else head
