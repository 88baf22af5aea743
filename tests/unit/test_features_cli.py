"""`mlops features` argument handling and the paths that need no Feast repo."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from features.sagemaker import feature_group_specs
from mlops import commands
from mlops.features_cli import app

runner = CliRunner()


def test_registered_in_the_mlops_cli():
    assert ("features", "mlops.features_cli") in commands._GROUPS


def test_sagemaker_json_is_the_export():
    result = runner.invoke(app, ["sagemaker", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"feature_groups": json.loads(json.dumps(feature_group_specs()))}


def test_show_needs_exactly_one_id():
    for args in (["show", "--json"], ["show", "--user-id", "1", "--movie-id", "2", "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        assert json.loads(result.stdout) == {
            "ok": False,
            "error": "give exactly one of --user-id N or --movie-id N",
        }


def test_build_without_data_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["build", "--dataset", "ml-100k", "--json"])
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert "mlops data fetch --dataset ml-100k" in error


def test_show_without_repo_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["show", "--user-id", "1", "--json"])
    assert result.exit_code == 1
    assert "run `mlops features build --dataset ml-100k` first" in json.loads(result.stdout)["error"]


def test_every_days_must_be_positive():
    result = runner.invoke(app, ["build", "--every-days", "0"])
    assert result.exit_code == 2
