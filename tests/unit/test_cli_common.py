"""The helpers every `mlops` command group shares: NAME=VALUE options and failing with a reason."""

from __future__ import annotations

import json

import pytest
import typer

from mlops.cli_common import fail, parse_params


def test_params_parse_into_a_dict_and_keep_equals_signs_in_values():
    assert parse_params(["MaxRmse=0.95", "Note=a=b", "Empty="]) == {
        "MaxRmse": "0.95",
        "Note": "a=b",
        "Empty": "",
    }
    assert parse_params(None) == {}


@pytest.mark.parametrize("bad", ["MaxRmse", "=0.95"])
def test_a_malformed_param_exits_2_naming_it(bad, capsys):
    with pytest.raises(typer.Exit) as raised:
        parse_params(["Ok=1", bad])
    assert raised.value.exit_code == 2
    assert repr(bad) in capsys.readouterr().err


def test_fail_prints_one_json_object_when_asked(capsys):
    exit_ = fail("no such dataset", True, {"dataset": "ml-5m"})
    assert exit_.exit_code == 1
    out = capsys.readouterr()
    assert json.loads(out.out) == {"ok": False, "error": "no such dataset", "dataset": "ml-5m"}
    assert "no such dataset" in out.err


def test_fail_without_json_keeps_stdout_empty(capsys):
    fail("boom", False)
    assert capsys.readouterr().out == ""
