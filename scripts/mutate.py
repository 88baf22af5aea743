"""Check that the tests guarding the project's key checks still catch their removal.

For each mutation in tests/mutations.toml (a file, an exact snippet, what it becomes, the tests that
must then fail), copy the repository's files into a temporary directory (tracked files and new ones
git does not ignore, as the working tree holds them; committed there as a repository of its own),
apply the mutation there, and run the named tests there. A mutation whose tests all still pass
"survived": the guard is gone. The working tree is never touched. First, one unmutated copy runs
every named test, which must pass (else a failure would prove nothing).

    python scripts/mutate.py [--list tests/mutations.toml] [--only NAME ...] [--timeout SECONDS]

Exit status: 0 when every mutation was caught; 1 when one survived, a snippet is stale (missing or
not unique) or the unmutated tests fail; 2 for a bad list.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = {"ml": ".venv", "cdk": ".venv-cdk"}
# Environments, the CDK CLI and the data stay where they are; the copy links to them.
LINKED = (".venv", ".venv-cdk", "node_modules", "data")


class ListError(ValueError):
    """The mutation list is malformed."""


@dataclass(frozen=True)
class Mutation:
    """One break: replace `find` (exactly once in `file`) by `replace`; one of `tests` must then fail."""

    name: str
    file: str
    find: str
    replace: str
    tests: tuple[str, ...]
    env: str = "ml"


def load_mutations(path: Path) -> list[Mutation]:
    """Parse and check the mutation list; raise ListError naming the bad entry."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ListError(f"{path}: {error}") from error
    out: list[Mutation] = []
    for i, entry in enumerate(raw.get("mutation", [])):
        where = f"{path} mutation #{i + 1} ({entry.get('name', '?')})"
        missing = [key for key in ("name", "file", "find", "replace", "tests") if key not in entry]
        if missing:
            raise ListError(f"{where} lacks {', '.join(missing)}")
        env = entry.get("env", "ml")
        if env not in ENVIRONMENTS:
            raise ListError(f"{where}: env={env!r}; use one of {', '.join(ENVIRONMENTS)}")
        tests = entry["tests"]
        if not entry["find"] or not isinstance(tests, list) or not tests:
            raise ListError(f"{where}: `find` must be non-empty and `tests` a non-empty list")
        out.append(Mutation(entry["name"], entry["file"], entry["find"], entry["replace"], tuple(tests), env))
    if not out:
        raise ListError(f"{path} has no [[mutation]] entries")
    return out


def occurrences(root: Path, mutation: Mutation) -> int:
    """How many times the mutation's snippet occurs in its file under `root` (0 when the file is gone)."""
    path = root / mutation.file
    return path.read_text().count(mutation.find) if path.is_file() else 0


def copy_repo(dest: Path) -> Path:
    """Copy the working tree's files (tracked, and untracked but not ignored) into dest; link the envs."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    for name in sorted(set(listed.stdout.decode().split("\0")) - {""}):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is left out, as it is there
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for name in LINKED:
        _link(ROOT / name, dest / name)
    # A repository of its own: the code under test asks git (reuse keys, lineage, DVC commits).
    for git in (["init", "-q"], ["add", "-A"], ["commit", "-q", "--no-verify", "-m", "mutation copy"]):
        subprocess.run(
            ["git", "-c", "user.name=mutate", "-c", "user.email=mutate@localhost", *git],
            cwd=dest,
            capture_output=True,
            check=True,
        )
    return dest


def _link(source: Path, target: Path) -> None:
    """Link target to source; where target is a directory already (tracked files), link what it lacks."""
    if not source.exists():
        return
    if not target.exists():
        target.symlink_to(source)
    elif target.is_dir() and source.is_dir():
        for child in source.iterdir():
            _link(child, target / child.name)


def run_tests(copy: Path, env_name: str, tests: tuple[str, ...], timeout: float) -> tuple[bool, str]:
    """Run the tests in the copy with the given environment; (passed, output tail)."""
    python = ROOT / ENVIRONMENTS[env_name] / "bin" / "python"
    if not python.exists():
        return False, f"{python} is missing: run `make setup`"
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    args = [str(python), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(args, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
    return done.returncode == 0, tail


def baseline(mutations: list[Mutation], timeout: float) -> list[str]:
    """Run every named test, unmutated, once per environment; return the problems."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="mutate-baseline-") as tmp:
        copy = copy_repo(Path(tmp))
        for env_name in ENVIRONMENTS:
            tests = tuple(dict.fromkeys(t for m in mutations if m.env == env_name for t in m.tests))
            if not tests:
                continue
            passed, tail = run_tests(copy, env_name, tests, timeout)
            if not passed:
                problems.append(f"unmutated tests fail in {env_name}, so no mutation can be judged:\n{tail}")
    return problems


def try_mutation(mutation: Mutation, timeout: float) -> tuple[str, str]:
    """Apply one mutation to a fresh copy and run its tests: ("caught" | "SURVIVED" | "STALE", detail)."""
    found = occurrences(ROOT, mutation)
    if found != 1:
        return "STALE", f"the snippet occurs {found} times in {mutation.file}; it must occur exactly once"
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        copy = copy_repo(Path(tmp))
        path = copy / mutation.file
        path.write_text(path.read_text().replace(mutation.find, mutation.replace, 1))
        passed, tail = run_tests(copy, mutation.env, mutation.tests, timeout)
    if passed:
        return "SURVIVED", f"{', '.join(mutation.tests)} still pass with the mutation applied"
    return "caught", tail.splitlines()[-1] if tail else ""


def main(argv: list[str] | None = None) -> int:
    """Run the mutation list; print one line per mutation; the exit status says whether all were caught."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", type=Path, default=ROOT / "tests" / "mutations.toml")
    parser.add_argument("--only", nargs="+", default=None, help="run only the mutations with these names")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per pytest run")
    args = parser.parse_args(argv)
    try:
        mutations = load_mutations(args.list)
    except ListError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in mutations})
        if unknown:
            print(f"error: --only {unknown}: not in {args.list}", file=sys.stderr)
            return 2
        mutations = [m for m in mutations if m.name in args.only]
    problems = baseline(mutations, args.timeout)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    results = []
    for mutation in mutations:
        start = time.monotonic()
        verdict, detail = try_mutation(mutation, args.timeout)
        results.append(verdict)
        print(f"{verdict:8} {mutation.name} ({mutation.file}, {time.monotonic() - start:.0f} s): {detail}")
        sys.stdout.flush()
    bad = [v for v in results if v != "caught"]
    print(f"{len(results) - len(bad)} of {len(results)} mutations caught")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
