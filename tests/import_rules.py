"""The rooms' import rules, read from docs/architecture.md, checked against the code with `ast`.

A room is a top-level package of the repository. Its rules are the table under the
`import-rules` marker in docs/architecture.md: one row per room, the last column listing the rooms
it may import. Every `import x` / `from x import y` in a room's files counts, at module level or
inside a function, so a lazy import cannot hide a broken rule.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

MARKER = "<!-- import-rules"
_ROOM = re.compile(r"`([a-z_]+)`")


class RulesError(ValueError):
    """The rules table is missing or malformed; the message says where."""


@dataclass(frozen=True)
class Violation:
    """One import that breaks a rule."""

    path: str
    line: int
    room: str
    imported: str

    def __str__(self) -> str:
        """The violation as a sentence a reader can act on."""
        return (
            f"{self.path}:{self.line}: room `{self.room}` imports `{self.imported}`, which "
            f"docs/architecture.md does not allow; import through an allowed room or change the rules"
        )


def parse_rules(markdown: str) -> dict[str, frozenset[str]]:
    """The rooms and what each may import, from the table after the `import-rules` marker."""
    if MARKER not in markdown:
        raise RulesError(f"no {MARKER!r} marker: the rules table must follow it")
    rows = markdown.split(MARKER, 1)[1].splitlines()[1:]
    rules: dict[str, frozenset[str]] = {}
    for row in rows:
        if not row.startswith("|"):
            if rules:
                break
            continue
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if cells[0] in ("room", "") or set(cells[0]) <= {"-"}:
            continue
        room = _ROOM.fullmatch(cells[0])
        if room is None:
            raise RulesError(f"rules row {row!r}: the first cell must be a `room`")
        rules[room.group(1)] = frozenset(_ROOM.findall(cells[-1]))
    if not rules:
        raise RulesError("the rules table after the marker has no rows")
    unknown = {dep for deps in rules.values() for dep in deps} - set(rules)
    if unknown:
        raise RulesError(f"rules name rooms that have no row: {sorted(unknown)}")
    return rules


def imported_roots(source: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in a module's source."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def check_tree(
    root: Path, rules: dict[str, frozenset[str]], *, extra_roots: tuple[str, ...] = ()
) -> list[Violation]:
    """Every import in the rooms under `root` (and in `extra_roots` files) that breaks `rules`."""
    ours = set(rules) | {"tests"}
    violations: list[Violation] = []
    for room in sorted(rules):
        for path in sorted((root / room).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for line, name in imported_roots(path.read_text(encoding="utf-8")):
                if name in ours and name != room and name not in rules[room]:
                    violations.append(Violation(rel, line, room, name))
    for extra in extra_roots:
        path = root / extra
        for line, name in imported_roots(path.read_text(encoding="utf-8")):
            if name in ours and name != "infra":
                violations.append(Violation(extra, line, extra, name))
    return violations


def missing_rooms(root: Path, rules: dict[str, frozenset[str]]) -> list[str]:
    """Top-level packages of ours (a directory with `__init__.py`) that have no rules row."""
    packages = {p.parent.name for p in root.glob("*/__init__.py")}
    return sorted(packages - set(rules) - {"tests"})
