"""The mutation list (tests/mutations.toml) stays armed: each snippet is still in its file exactly once,
and each named test still exists, so moving or renaming code cannot silently disarm `make mutate`."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _mutate_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutate", ROOT / "scripts" / "mutate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutate", module)
    spec.loader.exec_module(module)
    return module


MUTATE = _mutate_module()
MUTATIONS = MUTATE.load_mutations(ROOT / "tests" / "mutations.toml")


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_each_snippet_occurs_exactly_once(mutation) -> None:
    found = MUTATE.occurrences(ROOT, mutation)
    assert found == 1, (
        f"{mutation.name!r}: the snippet occurs {found} times in {mutation.file}; update its file and find "
        "in tests/mutations.toml to where the guarded code lives now"
    )
    assert mutation.replace != mutation.find


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_each_named_test_exists(mutation) -> None:
    for node in mutation.tests:
        path, _, name = node.partition("::")
        assert (ROOT / path).is_file(), f"{mutation.name!r}: {path} does not exist"
        if name:
            function = name.split("[")[0]
            source = (ROOT / path).read_text()
            assert re.search(rf"^def {re.escape(function)}\(", source, re.M), f"{node} is not defined"


def test_a_malformed_entry_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "mutations.toml"
    bad.write_text('[[mutation]]\nname = "half"\nfile = "x.py"\nfind = "a"\n')
    with pytest.raises(MUTATE.ListError, match=r"half.*lacks replace, tests"):
        MUTATE.load_mutations(bad)
