"""The pipeline definition: snapshot, determinism, and the step graph with every reference."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from pipelines import definition as d
from pipelines.settings import PipelineSettings
from training.hyperparameters import Hyperparameters

SNAPSHOT = Path(__file__).with_name("test_pipeline_snapshot.json")


@pytest.fixture(scope="module")
def text() -> str:
    return d.definition_json(PipelineSettings())


@pytest.fixture(scope="module")
def doc(text: str) -> dict[str, Any]:
    return json.loads(text)


def _steps(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def walk(steps: list[dict[str, Any]]) -> None:
        for step in steps:
            out[step["Name"]] = step
            walk(step.get("Arguments", {}).get("IfSteps", []))
            walk(step.get("Arguments", {}).get("ElseSteps", []))

    walk(doc["Steps"])
    return out


def _gets(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["Get"]] if isinstance(node.get("Get"), str) else []
        return found + [g for v in node.values() for g in _gets(v)]
    if isinstance(node, list):
        return [g for v in node for g in _gets(v)]
    return []


def _json_gets(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node["Std:JsonGet"]] if "Std:JsonGet" in node else []
        return found + [j for v in node.values() for j in _json_gets(v)]
    if isinstance(node, list):
        return [j for v in node for j in _json_gets(v)]
    return []


def test_matches_snapshot(text: str) -> None:
    if os.environ.get("UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.exists(), "no snapshot: run with UPDATE_SNAPSHOT=1 once and review the diff"
    assert text == SNAPSHOT.read_text(), (
        "the pipeline definition changed; if intended, regenerate with UPDATE_SNAPSHOT=1 and review"
    )


def test_two_builds_are_byte_identical(text: str) -> None:
    assert d.definition_json(PipelineSettings()) == text


def test_no_timestamps_or_uploaded_code(text: str) -> None:
    # "Version": "2020-12-01" is the definition schema's version, not a build date.
    body = text.replace('"Version": "2020-12-01"', "")
    assert not re.search(r"20\d\d-\d\d-\d\d", body), "a date leaked into the definition"
    assert "sourcedir" not in text and "/code/" not in text
    assert "Execution.StartDateTime" not in text and "Execution.CurrentDateTime" not in text


def test_settings_change_the_definition(text: str) -> None:
    other = d.definition_json(
        PipelineSettings(training_image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1")
    )
    assert other != text and "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1" in other


def test_step_graph(doc: dict[str, Any]) -> None:
    top = [s["Name"] for s in doc["Steps"]]
    assert top == [d.PREPARE, d.TRAIN, d.EVALUATE, d.CHECK]
    check = _steps(doc)[d.CHECK]["Arguments"]
    assert [s["Name"] for s in check["IfSteps"]] == [d.REGISTER]
    assert [s["Name"] for s in check["ElseSteps"]] == [d.FAIL]
    types = {name: s["Type"] for name, s in _steps(doc).items()}
    assert types == {
        d.PREPARE: "Processing", d.TRAIN: "Training", d.EVALUATE: "Processing",
        d.CHECK: "Condition", d.REGISTER: "RegisterModel", d.FAIL: "Fail",
    }  # fmt: skip


def test_every_step_reads_well_in_studio(doc: dict[str, Any]) -> None:
    for name, step in _steps(doc).items():
        assert step.get("DisplayName"), f"{name} has no display name"
        assert step.get("Description"), f"{name} has no description"
    for name in (d.PREPARE, d.TRAIN, d.EVALUATE):
        assert _steps(doc)[name]["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    steps = _steps(doc)
    order = [d.PREPARE, d.TRAIN, d.EVALUATE, d.CHECK, d.REGISTER, d.FAIL]
    declared = {p["Name"] for p in doc["Parameters"]}
    outputs = {
        name: {o["OutputName"] for o in s["Arguments"].get("ProcessingOutputConfig", {}).get("Outputs", [])}
        for name, s in steps.items()
    }
    checked = 0
    for name, step in steps.items():
        for ref in _gets(step.get("Arguments", {})):
            checked += 1
            kind, _, rest = ref.partition(".")
            if kind == "Parameters":
                assert rest in declared, f"{name} reads undeclared parameter {rest}"
            elif kind == "Steps":
                target = rest.split(".")[0]
                assert target in steps, f"{name} reads unknown step {target}"
                assert order.index(target) < order.index(name), f"{name} reads {target}, which runs later"
                m = re.search(r"Outputs\['([^']+)'\]", rest)
                if m:
                    assert m.group(1) in outputs[target], (
                        f"{name} reads missing output {m.group(1)} of {target}"
                    )
                if ".PropertyFiles." in rest:
                    files = {f["PropertyFileName"] for f in steps[target]["PropertyFiles"]}
                    assert rest.split(".")[-1] in files
            else:
                assert kind == "Execution", f"{name} has an unexpected reference {ref}"
    assert checked > 20
    # Every parameter is used somewhere, and every property file the condition reads is declared.
    used = {g.split(".", 1)[1] for g in _gets(doc["Steps"]) if g.startswith("Parameters.")}
    assert used == declared


def test_training_channels_follow_the_contract(doc: dict[str, Any]) -> None:
    channels = {c["ChannelName"]: c for c in _steps(doc)[d.TRAIN]["Arguments"]["InputDataConfig"]}
    assert set(channels) == {"train", "validation", "catalog", "features"}
    for name, channel in channels.items():
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]["Get"]
        assert uri == f"Steps.Prepare.ProcessingOutputConfig.Outputs['{name}'].S3Output.S3Uri"
    hp = _steps(doc)[d.TRAIN]["Arguments"]["HyperParameters"]
    assert hp["dataset_version"] == {"Get": "Parameters.DatasetVersion"}


def test_train_step_trains_the_benchmarked_defaults(doc: dict[str, Any]) -> None:
    hp = _steps(doc)[d.TRAIN]["Arguments"]["HyperParameters"]
    pipeline_keys = {"dataset", "dataset_version"}
    assert (
        Hyperparameters.from_sagemaker({k: v for k, v in hp.items() if k not in pipeline_keys})
        == Hyperparameters()
    ), "the default pipeline must train training's own (benchmarked) defaults"


def test_settings_hyperparameters_reach_the_train_step() -> None:
    settings = PipelineSettings.model_validate({"hyperparameters": {"epochs": 3, "lr_decay": False}})
    hp = _steps(json.loads(d.definition_json(settings)))[d.TRAIN]["Arguments"]["HyperParameters"]
    assert hp["epochs"] == "3" and hp["lr_decay"] == "false"
    assert hp["embedding_dim"] == str(Hyperparameters().embedding_dim)


def test_condition_reads_evaluation_paths_the_evaluate_step_writes(doc: dict[str, Any]) -> None:
    from pipelines.steps.evaluate import build_report

    report = build_report(
        model={"rmse": 0.9, "mae": 0.7, "hit_rate_at_10": 0.1, "ndcg_at_10": 0.05},
        rating_baseline={"rmse": 1.0, "mae": 0.8, "name": "biased"},
        popularity={"hit_rate_at_10": 0.08, "ndcg_at_10": 0.04},
        lineage={"mlflow_run_id": "r", "dataset": "ml-100k", "dataset_version": "v", "git_commit": "c"},
        test_rows=10,
    )
    paths = {j["Path"] for j in _json_gets(doc["Steps"])}
    assert paths, "no JsonGet found"
    from pipelines.registry import lookup

    for path in paths:
        lookup(report, path)  # raises KeyError naming the path


def test_fail_message_names_metric_value_and_threshold(doc: dict[str, Any]) -> None:
    message = json.dumps(_steps(doc)[d.FAIL]["Arguments"]["ErrorMessage"])
    for piece in ("rmse", "MaxRmse", "Parameters.MaxRmse", "hit_rate_at_10", "Parameters.MinHitRateAt10"):
        assert piece in message


def test_register_carries_metrics_and_lineage(doc: dict[str, Any]) -> None:
    args = _steps(doc)[d.REGISTER]["Arguments"]
    assert args["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    metadata = args["CustomerMetadataProperties"]
    for key in ("dataset_version", "git_commit", "mlflow_run_id", "pipeline_execution", "metric_rmse"):
        assert key in metadata
    assert metadata["pipeline_execution"] == {"Get": "Execution.PipelineExecutionArn"}
    assert args["ModelMetrics"]["ModelQuality"]["Statistics"]["ContentType"] == "application/json"


def test_local_variant_drops_only_the_model_step() -> None:
    pipeline = d.build_pipeline(PipelineSettings(), register=False)
    doc = json.loads(pipeline.definition())
    assert d.REGISTER not in _steps(doc) and d.FAIL in _steps(doc)
