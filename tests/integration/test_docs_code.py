"""Code blocks in README.md and docs/*.md are run, so the docs cannot rot.

- ```python blocks run, each in a fresh interpreter of the ML environment, from the repository
  root, on ml-100k fetched into a temporary data directory (`MLOPS_DATA_DIR`).
- ```bash blocks are checked command by command: a `make` target must exist in the Makefile; an
  `mlops` command must exist and know every option the line uses (its `--help` is read); `python -m
  M` must name an importable module; `npx cdk` must name an environment of cdk.json and its stage;
  `docker run` must run an image the project builds; a script must exist. A command the test does
  not know fails it: teach the test, or change the block.
  Bash blocks are not executed: they deploy to AWS or run for minutes (`make demo`), and the suite
  runs those paths elsewhere (the moto deploy, the local pipeline, the serving tests).
- Unlabelled blocks are output or signatures, shown as text; they are not run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY = Path(sys.executable)
MLOPS = PY.parent / "mlops"
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_TARGET = re.compile(r"^([a-z][a-z0-9-]*):", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: str
    line: int
    lang: str
    body: str

    @property
    def id(self) -> str:
        """`docs/x.md:12`, the block's place, as the test id."""
        return f"{self.path}:{self.line}"


def _blocks() -> list[Block]:
    found: list[Block] = []
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = md.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(md.relative_to(ROOT).as_posix(), line, match.group(1), match.group(2)))
    return found


BLOCKS = _blocks()
PYTHON = [b for b in BLOCKS if b.lang == "python"]
BASH = [b for b in BLOCKS if b.lang in ("bash", "sh", "shell")]


def _commands(body: str) -> list[list[str]]:
    """Each non-empty line of a bash block as argv, comments dropped."""
    commands = []
    for raw in body.splitlines():
        words = shlex.split(raw, comments=True)
        if words:
            commands.append(words)
    return commands


@pytest.fixture(scope="module")
def docs_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """ml-100k fetched and its Feast repo built, once, in temporary data and state directories.

    The project's own data/ and .mlops/ are not touched.
    """
    data_dir = tmp_path_factory.mktemp("docs-data")
    state_dir = tmp_path_factory.mktemp("docs-state")
    env = {**os.environ, "MLOPS_DATA_DIR": str(data_dir), "MLOPS_STATE_DIR": str(state_dir)}
    for argv in (
        ["data", "fetch", "--dataset", "ml-100k", "--no-dvc", "--json"],
        ["features", "build", "--dataset", "ml-100k", "--json"],
    ):
        done = subprocess.run(
            [str(MLOPS), *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        assert done.returncode == 0, f"mlops {' '.join(argv)} failed:\n{done.stderr[-3000:]}"
    return env


def test_the_docs_have_code_to_check() -> None:
    assert len(PYTHON) >= 3 and len(BASH) >= 4, f"found {len(PYTHON)} python and {len(BASH)} bash blocks"


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_block_runs(block: Block, docs_env: dict[str, str]) -> None:
    env = {**docs_env, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [str(PY), "-c", block.body],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{block.id}: the block fails:\n{block.body}\n{done.stderr[-3000:]}"


def _check_make(words: list[str]) -> None:
    targets = set(_TARGET.findall((ROOT / "Makefile").read_text(encoding="utf-8")))
    for target in words[1:]:
        assert target in targets, f"`make {target}`: no such target in the Makefile"


def _check_mlops(words: list[str]) -> None:
    # The longest run of leading words that names a command; its --help (wide, plain) lists the options.
    wide = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "TERM": "dumb"}
    path: list[str] = []
    helptext = ""
    for word in words[1:]:
        if word.startswith("-"):
            break
        probe = subprocess.run(
            [str(MLOPS), *path, word, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=wide,
        )
        if probe.returncode != 0:
            break
        path.append(word)
        helptext = probe.stdout
    assert path, f"`{shlex.join(words)}`: no such mlops command"
    for word in words[1 + len(path) :]:
        if word.startswith("--"):
            option = word.split("=", 1)[0]
            assert option in helptext, f"`{shlex.join(words)}`: `mlops {' '.join(path)}` has no {option}"


def _check_python_module(words: list[str]) -> None:
    module = words[words.index("-m") + 1]
    probe = subprocess.run(
        [
            str(PY),
            "-c",
            f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, f"`{shlex.join(words)}`: no module {module}"


def _check_cdk(words: list[str]) -> None:
    environments = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]["environments"]
    assert words[1] == "cdk", f"`{shlex.join(words)}`: only `npx cdk` is known"
    for i, word in enumerate(words):
        if word == "-c" and words[i + 1].startswith("env="):
            env = words[i + 1].removeprefix("env=")
            assert env in environments, f"`{shlex.join(words)}`: no environment {env!r} in cdk.json"
            stages = [w for w in words if w.endswith("/*")]
            assert all(s == f"{env.capitalize()}/*" for s in stages), (
                f"`{shlex.join(words)}`: stage is not {env}'s"
            )


def _check_docker(words: list[str]) -> None:
    from images.spec import IMAGES

    tags = {spec.tag for spec in IMAGES.values()}
    assert words[1] == "run", f"`{shlex.join(words)}`: only `docker run` is known"
    assert any(w in tags for w in words), (
        f"`{shlex.join(words)}`: runs none of the project's images {sorted(tags)}"
    )


def _check_command(words: list[str]) -> None:
    head = words[0].removeprefix(".venv/bin/")
    if head == "make":
        _check_make(words)
    elif head == "mlops":
        _check_mlops(words)
    elif head in ("python", "python3") and "-m" in words:
        _check_python_module(words)
    elif head == "npx":
        _check_cdk(words)
    elif head == "docker":
        _check_docker(words)
    elif head.startswith(("scripts/", "./scripts/", "bash")):
        script = words[1] if head == "bash" else head
        assert (ROOT / script).is_file(), f"`{shlex.join(words)}`: no script {script}"
    else:
        pytest.fail(
            f"`{shlex.join(words)}`: a command this test does not know; teach it, or change the block"
        )


@pytest.mark.parametrize("block", BASH, ids=[b.id for b in BASH])
def test_bash_block_commands_exist(block: Block) -> None:
    for words in _commands(block.body):
        _check_command(words)
