"""The import rules of docs/architecture.md hold on the code, and the checker catches a broken rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.import_rules import RulesError, check_tree, missing_rooms, parse_rules

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"

TINY_DOC = """
<!-- import-rules -->
| room | job | may import |
|---|---|---|
| `low` | ground floor | (nothing of ours) |
| `high` | top floor | `low` |
"""


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_the_code_follows_the_documented_import_rules() -> None:
    rules = parse_rules(DOC.read_text(encoding="utf-8"))
    violations = check_tree(ROOT, rules, extra_roots=("app.py",))
    assert not violations, "\n".join(map(str, violations))


def test_every_package_of_ours_has_a_rules_row() -> None:
    rules = parse_rules(DOC.read_text(encoding="utf-8"))
    assert missing_rooms(ROOT, rules) == []


def test_nothing_outside_tests_imports_tests() -> None:
    rules = parse_rules(DOC.read_text(encoding="utf-8"))
    violations = [v for v in check_tree(ROOT, rules, extra_roots=("app.py",)) if v.imported == "tests"]
    assert violations == []


def test_a_tiny_tree_that_keeps_the_rules_passes(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "low/__init__.py": "import json\n",
            "high/__init__.py": "from low import x\nimport low.deep\n",
        },
    )
    assert check_tree(root, parse_rules(TINY_DOC)) == []


def test_an_upward_import_is_caught_even_inside_a_function(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "low/__init__.py": "def f():\n    from high.cli import main\n    return main\n",
            "high/__init__.py": "import low\n",
        },
    )
    violations = check_tree(root, parse_rules(TINY_DOC))
    assert [(v.path, v.line, v.room, v.imported) for v in violations] == [
        ("low/__init__.py", 2, "low", "high")
    ]
    assert "docs/architecture.md does not allow" in str(violations[0])


def test_importing_tests_is_caught(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"low/__init__.py": "import tests.helpers\n", "high/__init__.py": ""})
    assert [v.imported for v in check_tree(root, parse_rules(TINY_DOC))] == ["tests"]


def test_a_package_without_a_row_is_reported(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"low/__init__.py": "", "high/__init__.py": "", "rogue/__init__.py": ""})
    assert missing_rooms(root, parse_rules(TINY_DOC)) == ["rogue"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("| room | may import |\n| `a` | |\n", "marker"),
        ("<!-- import-rules -->\nno table\n", "no rows"),
        ("<!-- import-rules -->\n| room | may |\n|---|---|\n| `a` | `b` |\n", "no row: ['b']"),
        ("<!-- import-rules -->\n| room | may |\n|---|---|\n| a | |\n", "first cell"),
    ],
)
def test_a_malformed_rules_table_is_refused(doc: str, message: str) -> None:
    with pytest.raises(RulesError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_rules(doc)


def test_every_documented_room_exists() -> None:
    rules = parse_rules(DOC.read_text(encoding="utf-8"))
    assert sorted(room for room in rules if not (ROOT / room / "__init__.py").is_file()) == []


LONG_MODULE = 400


def test_a_module_over_400_lines_says_why_in_its_docstring() -> None:
    import ast

    silent = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", ".venv", ".venv-cdk", "node_modules", "cdk.out", "build"):
            continue
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > LONG_MODULE:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "Why one module over 400 lines:" not in doc:
                silent.append(rel.as_posix())
    assert silent == [], (
        f"split these, or say why in the docstring ('Why one module over 400 lines: ...'): {silent}"
    )


# Files a user of the repository does not have: the repository must not send readers to them.
OUTSIDE = ("DESIGN" + ".md", "ENVIRONMENT" + ".md", "STYLE" + ".md", "MISSION" + ".md", "../" + "shared")


def test_nothing_in_the_repo_refers_to_files_outside_it() -> None:
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    found = []
    for name in sorted(set(listed.decode().split("\0")) - {""}):
        path = ROOT / name
        if not path.is_file() or path.suffix in (".lock", ".json", ".png"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found.extend(f"{name}: {ref}" for ref in OUTSIDE if ref in text)
    assert found == [], f"these name files outside the repository; point at the repo's own docs: {found}"
