"""One dataset enum: settings, the DatasetName parameter, Prepare, the CLIs and the data layer agree."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from dataset.dataset_names import DatasetName
from dataset.schema import DATASETS, dataset_spec
from pipelines import control
from pipelines import definition as d
from pipelines.settings import PipelineSettings
from pipelines.steps.prepare import parse_args


def test_the_data_layer_specs_every_name_and_only_those() -> None:
    assert set(DATASETS) == set(DatasetName)
    assert all(DATASETS[name].name == name for name in DatasetName)
    with pytest.raises(ValueError, match="unknown dataset 'ml-10m': choose one of ml-100k, ml-1m"):
        dataset_spec("ml-10m")


def test_settings_refuse_an_unknown_dataset_naming_the_known_ones() -> None:
    with pytest.raises(ValidationError) as info:
        PipelineSettings.model_validate({"dataset": "ml-10m"})
    assert "'ml-100k'" in str(info.value) and "'ml-1m'" in str(info.value)
    assert PipelineSettings.model_validate({"dataset": "ml-1m"}).dataset is DatasetName.ML_1M


def test_the_pipeline_parameter_offers_exactly_the_enum() -> None:
    doc = json.loads(d.definition_json(PipelineSettings(dataset=DatasetName.ML_1M)))
    (param,) = [p for p in doc["Parameters"] if p["Name"] == "DatasetName"]
    assert param["EnumValues"] == DatasetName.values() and param["DefaultValue"] == "ml-1m"


def test_prepare_accepts_exactly_the_enum(capsys: pytest.CaptureFixture[str]) -> None:
    for name in DatasetName:
        assert parse_args(["--dataset", name.value]).dataset == name.value
    with pytest.raises(SystemExit):
        parse_args(["--dataset", "ml-10m"])
    assert "ml-10m" in capsys.readouterr().err


def test_a_dataset_parameter_override_outside_the_enum_is_refused() -> None:
    declared = d.parameters(PipelineSettings()).all()
    with pytest.raises(ValueError, match=r"DatasetName='ml-10m' is not one of ml-100k, ml-1m"):
        control.check_parameters(declared, {"DatasetName": "ml-10m"})
    with pytest.raises(ValueError, match="unknown pipeline parameter"):
        control.check_parameters(declared, {"DataSetName": "ml-1m"})
    control.check_parameters(declared, {"DatasetName": "ml-1m", "MaxRmse": "0.9"})


def test_the_local_run_cli_refuses_an_unknown_dataset() -> None:
    from mlops.pipeline_cli import app

    result = CliRunner().invoke(app, ["run", "--local", "--dataset", "ml-10m"])
    assert result.exit_code == 2 and "ml-10m" in result.output


def test_a_local_execution_gets_the_dataset_as_a_plain_string() -> None:
    from pipelines.local import execution_parameters, local_settings

    # SageMaker local mode checks `type(value) is str` and refuses the enum member itself.
    settings = local_settings(dataset=DatasetName.ML_1M)
    parameters = execution_parameters(settings, "s3://b/raw/", "v1", "abc", {"MaxRmse": "0.9"})
    assert parameters["DatasetName"] == "ml-1m" and parameters["MaxRmse"] == "0.9"
    assert all(type(value) is str for value in parameters.values())
