"""The SageMaker Pipeline (SDK 3.x): Prepare -> Train -> Evaluate -> Condition -> Register | Fail.

Built from `PipelineSettings` alone, with no AWS call and no network, so the CDK app embeds the
very same JSON. Step code is baked into the ML image (`python -m pipelines.steps.<step>`), so
nothing is uploaded and two builds give byte-identical JSON.

Why one module over 400 lines: it is the one pipeline definition, its steps in execution order,
so a reader checks every step's inputs, outputs, parameters and caching against the next in one
place; each step is its own small function.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from dataset.dataset_names import DatasetName
from pipelines import registry
from pipelines.sdk import configure_sdk
from pipelines.settings import APPROVAL_STATUSES, PIPELINE_HYPERPARAMETERS, PipelineSettings

PREPARE = "Prepare"
TRAIN = "Train"
EVALUATE = "Evaluate"
CHECK = "CheckQuality"
REGISTER = "Register"
FAIL = "RejectModel"
EVALUATION_PROPERTY_FILE = "EvaluationReport"
EVALUATION_FILE = "evaluation.json"

# Inside the processing containers (SageMaker's /opt/ml/processing convention).
PROCESSING_ROOT = "/opt/ml/processing"
PREPARE_OUTPUTS = ("train", "validation", "test", "catalog", "features", "baseline", "feature_store")
TRAINING_CHANNELS = ("train", "validation", "catalog", "features")

# JSON paths into evaluation.json, shared by the Condition, the Fail message and the registry.
RMSE = "regression_metrics.rmse.value"
HIT_RATE = "ranking_metrics.hit_rate_at_10.value"
BASELINE_RMSE = "baselines.rating.rmse"
BASELINE_HIT_RATE = "baselines.popularity.hit_rate_at_10"
MLFLOW_RUN_ID = "lineage.mlflow_run_id"


@dataclass(frozen=True)
class Parameters:
    """The pipeline's parameters, each overridable per execution."""

    input_data_uri: Any
    dataset: Any
    dataset_version: Any
    git_commit: Any
    processing_instance_type: Any
    processing_instance_count: Any
    training_instance_type: Any
    training_instance_count: Any
    max_rmse: Any
    min_hit_rate_at_10: Any
    approval_status: Any

    def all(self) -> list[Any]:
        """Every parameter, in declaration order."""
        return [getattr(self, name) for name in self.__dataclass_fields__]


def parameters(settings: PipelineSettings) -> Parameters:
    """The pipeline parameters, with the settings' values as defaults."""
    configure_sdk(settings.region)
    from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString  # noqa: PLC0415  heavy: loads sagemaker only when called

    return Parameters(
        input_data_uri=ParameterString("InputDataUri", default_value=settings.default_input_uri),
        dataset=ParameterString(
            "DatasetName", default_value=settings.dataset.value, enum_values=DatasetName.values()
        ),
        dataset_version=ParameterString("DatasetVersion", default_value=settings.dataset_version),
        git_commit=ParameterString("GitCommit", default_value=settings.git_commit),
        processing_instance_type=ParameterString(
            "ProcessingInstanceType", default_value=settings.processing_instance_type
        ),
        processing_instance_count=ParameterInteger(
            "ProcessingInstanceCount", default_value=settings.processing_instance_count
        ),
        training_instance_type=ParameterString(
            "TrainingInstanceType", default_value=settings.training_instance_type
        ),
        training_instance_count=ParameterInteger(
            "TrainingInstanceCount", default_value=settings.training_instance_count
        ),
        max_rmse=ParameterFloat("MaxRmse", default_value=settings.thresholds.max_rmse),
        min_hit_rate_at_10=ParameterFloat(
            "MinHitRateAt10", default_value=settings.thresholds.min_hit_rate_at_10
        ),
        approval_status=ParameterString(
            "ModelApprovalStatus",
            default_value=settings.approval_status,
            enum_values=list(APPROVAL_STATUSES),
        ),
    )


def offline_session(settings: PipelineSettings) -> Any:
    """A PipelineSession that captures step arguments and never calls AWS."""
    sdk_config = configure_sdk(settings.region)
    import boto3  # noqa: PLC0415  heavy: loads boto3 only when called
    from sagemaker.core.workflow.pipeline_context import PipelineSession  # noqa: PLC0415  heavy: loads sagemaker only when called

    class _OfflinePipelineSession(PipelineSession):  # type: ignore[misc]
        """PipelineSession whose default bucket is the configured one, without probing S3."""

        def default_bucket(self) -> str:
            return settings.bucket

    # Credentials are never used (no call is made) but botocore wants some to build clients.
    boto_session = boto3.Session(
        region_name=settings.region,
        aws_access_key_id="offline",
        aws_secret_access_key="offline",  # noqa: S106
    )
    return _OfflinePipelineSession(
        boto_session=boto_session, default_bucket=settings.bucket, sagemaker_config=sdk_config
    )


def _s3_prefix(settings: PipelineSettings, params: Parameters, *parts: Any) -> Any:
    """A per-dataset-version S3 prefix: the same inputs give the same paths, so caching holds."""
    from sagemaker.core.workflow.functions import Join  # noqa: PLC0415  heavy: loads sagemaker only when called

    return Join(
        on="/",
        values=[
            settings.artifact_uri(settings.pipeline_name),
            params.dataset,
            params.dataset_version,
            *parts,
        ],
    )


def _processing_input(name: str, source: Any, destination: str) -> Any:
    from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input  # noqa: PLC0415  heavy: loads sagemaker only when called

    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(
            s3_uri=source, s3_data_type="S3Prefix", local_path=destination, s3_input_mode="File"
        ),
    )


def _processing_output(name: str, destination: Any) -> Any:
    from sagemaker.core.shapes import ProcessingOutput, ProcessingS3Output  # noqa: PLC0415  heavy: loads sagemaker only when called

    return ProcessingOutput(
        output_name=name,
        s3_output=ProcessingS3Output(
            s3_uri=destination,
            s3_upload_mode="EndOfJob",
            local_path=f"{PROCESSING_ROOT}/output/{name}",
        ),
    )


def _network_config(settings: PipelineSettings, *, isolated: bool) -> Any:
    """A processing job's network: the settings' VPC (if any), isolated when the step needs no network."""
    from sagemaker.core.network import NetworkConfig  # noqa: PLC0415  heavy: loads sagemaker only when called

    return NetworkConfig(
        enable_network_isolation=isolated,
        security_group_ids=settings.security_group_ids or None,
        subnets=settings.subnet_ids or None,
    )


def _processor(
    settings: PipelineSettings, params: Parameters, session: Any, step: str, *, isolated: bool
) -> Any:
    from sagemaker.core.processing import Processor  # noqa: PLC0415  heavy: loads sagemaker only when called

    return Processor(
        role=settings.processing_role,
        image_uri=settings.training_image_uri,
        instance_count=params.processing_instance_count,
        instance_type=params.processing_instance_type,
        entrypoint=["python", "-m", f"pipelines.steps.{step}"],
        base_job_name=f"{settings.pipeline_name}-{step}",
        env={"AWS_DEFAULT_REGION": settings.region, "PYTHONUNBUFFERED": "1"},
        volume_kms_key=settings.kms_key_id or None,
        output_kms_key=settings.kms_key_id or None,
        max_runtime_in_seconds=settings.max_processing_seconds,
        network_config=_network_config(settings, isolated=isolated),
        sagemaker_session=session,
    )


def isolated_steps(settings: PipelineSettings) -> set[str]:
    """The steps that run with network isolation: those that need no network besides their S3 channels.

    Evaluate always (its inputs and output are channels). Prepare only without feature store ingestion
    (PutRecord and Feast's push are network calls). Train only without an MLflow tracking server (without
    one, training tracks to a local store inside the job).
    """
    out = {EVALUATE}
    if settings.feature_store == "none":
        out.add(PREPARE)
    if not settings.mlflow_tracking_uri:
        out.add(TRAIN)
    return out


def build_pipeline(settings: PipelineSettings, *, session: Any | None = None, register: bool = True) -> Any:
    """Build the Pipeline. `register=False` leaves out the ModelStep (local mode cannot run it)."""
    configure_sdk(settings.region)
    from sagemaker.core.workflow.conditions import (  # noqa: PLC0415  heavy: loads sagemaker only when called
        ConditionGreaterThan,
        ConditionGreaterThanOrEqualTo,
        ConditionLessThan,
        ConditionLessThanOrEqualTo,
    )
    from sagemaker.core.workflow.functions import Join, JsonGet  # noqa: PLC0415  heavy: loads sagemaker only when called
    from sagemaker.core.workflow.properties import PropertyFile  # noqa: PLC0415  heavy: loads sagemaker only when called
    from sagemaker.mlops.workflow import (  # noqa: PLC0415  heavy: sagemaker, only when a definition or session is built
        CacheConfig,
        ConditionStep,
        FailStep,
        Pipeline,
        ProcessingStep,
        TrainingStep,
    )
    from sagemaker.train import ModelTrainer  # noqa: PLC0415  heavy: loads sagemaker only when called
    from sagemaker.train.configs import Compute, InputData, Networking, OutputDataConfig, StoppingCondition  # noqa: PLC0415  heavy: loads sagemaker only when called

    session = session if session is not None else offline_session(settings)
    params = parameters(settings)
    cache = CacheConfig(enable_caching=True, expire_after=settings.cache_expire_after)

    # Prepare: validate raw data, features, splits, drift baseline, feature store ingestion.
    prepare_outputs = [
        _processing_output(name, _s3_prefix(settings, params, "prepare", name)) for name in PREPARE_OUTPUTS
    ]
    prepare_arguments: list[Any] = [
        "--dataset", params.dataset,
        "--dataset-version", params.dataset_version,
        "--split-seed", str(settings.split_seed),
        "--feature-store", settings.feature_store,
        "--user-feature-group", settings.user_feature_group,
        "--movie-feature-group", settings.movie_feature_group,
    ]  # fmt: skip
    if settings.feature_store == "feast":
        if not settings.feast_url:
            raise ValueError(
                "feature_store 'feast' needs feast_url, the feature server Prepare pushes to "
                "(`mlops pipeline run --local` starts one and sets it)"
            )
        prepare_arguments += ["--feast-url", settings.feast_url]
    isolated = isolated_steps(settings)
    prepare_args = _processor(settings, params, session, "prepare", isolated=PREPARE in isolated).run(
        inputs=[_processing_input("raw", params.input_data_uri, f"{PROCESSING_ROOT}/input/raw")],
        outputs=prepare_outputs,
        arguments=prepare_arguments,
    )
    prepare = ProcessingStep(
        name=PREPARE,
        step_args=prepare_args,
        display_name="Prepare data",
        description=(
            "Validate the raw MovieLens files (any rejected row fails the step with the report), "
            "compute user and movie features, write train/validation/test splits and drift "
            "baseline statistics, and ingest the features into the feature store."
        ),
        cache_config=cache,
    )

    def prepared(name: str) -> Any:
        return prepare.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri

    # Train: the ML image's training entry point, on the channels of contract section 5.
    # Every model hyperparameter, spelt out, so the definition shows exactly what the job trains.
    hyperparameters: dict[str, Any] = {
        key: value
        for key, value in settings.hyperparameters.to_sagemaker().items()
        if key not in PIPELINE_HYPERPARAMETERS
    }
    hyperparameters.update(dataset=params.dataset, dataset_version=params.dataset_version)
    environment: dict[str, Any] = {"MLOPS_GIT_COMMIT": params.git_commit}
    if settings.mlflow_tracking_uri:
        environment["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    trainer = ModelTrainer(
        training_image=settings.training_image_uri,
        role=settings.training_role,
        compute=Compute(
            instance_type=params.training_instance_type,
            instance_count=params.training_instance_count,
            volume_kms_key_id=settings.kms_key_id or None,
        ),
        networking=Networking(
            subnets=settings.subnet_ids or None,
            security_group_ids=settings.security_group_ids or None,
            enable_network_isolation=TRAIN in isolated,
            # Always: the instance count is a pipeline parameter an execution may raise, and one
            # instance has no inter-container traffic to slow down.
            enable_inter_container_traffic_encryption=True,
        ),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=settings.max_training_seconds),
        hyperparameters=hyperparameters,
        environment=environment,
        output_data_config=OutputDataConfig(
            s3_output_path=settings.artifact_uri(settings.pipeline_name, "models"),
            kms_key_id=settings.kms_key_id or None,
        ),
        base_job_name=f"{settings.pipeline_name}-train",
        sagemaker_session=session,
    )
    train = TrainingStep(
        name=TRAIN,
        step_args=trainer.train(
            input_data_config=[
                InputData(channel_name=channel, data_source=prepared(channel))
                for channel in TRAINING_CHANNELS
            ],
            wait=False,
        ),
        display_name="Train recommender",
        description="Train the TensorFlow two-tower recommender in the ML image; tracked in MLflow.",
        cache_config=cache,
    )

    # Evaluate: model vs baselines on the test split, into evaluation.json (a PropertyFile).
    evaluation = PropertyFile(name=EVALUATION_PROPERTY_FILE, output_name="evaluation", path=EVALUATION_FILE)
    evaluate_args = _processor(settings, params, session, "evaluate", isolated=EVALUATE in isolated).run(
        inputs=[
            _processing_input(
                "model", train.properties.ModelArtifacts.S3ModelArtifacts, f"{PROCESSING_ROOT}/input/model"
            ),
            *(
                _processing_input(name, prepared(name), f"{PROCESSING_ROOT}/input/{name}")
                for name in ("train", "test", "features")
            ),
        ],
        outputs=[
            _processing_output(
                "evaluation",
                _s3_prefix(settings, params, "evaluate", train.properties.TrainingJobName),
            )
        ],
        arguments=["--git-commit", params.git_commit],
    )
    evaluate = ProcessingStep(
        name=EVALUATE,
        step_args=evaluate_args,
        property_files=[evaluation],
        display_name="Evaluate model and baselines",
        description=(
            "Rating (RMSE, MAE) and ranking (HitRate@10, NDCG@10) metrics of the model, of a "
            "rating baseline and of the popularity baseline on the test split."
        ),
        cache_config=cache,
    )

    def metric(path: str) -> Any:
        return JsonGet(step_name=EVALUATE, property_file=evaluation, json_path=path)

    conditions = [
        ConditionLessThanOrEqualTo(left=metric(RMSE), right=params.max_rmse),
        ConditionLessThan(left=metric(RMSE), right=metric(BASELINE_RMSE)),
        ConditionGreaterThanOrEqualTo(left=metric(HIT_RATE), right=params.min_hit_rate_at_10),
        ConditionGreaterThan(left=metric(HIT_RATE), right=metric(BASELINE_HIT_RATE)),
    ]
    fail = FailStep(
        name=FAIL,
        display_name="Reject model",
        description="The model missed a quality threshold or did not beat its baselines.",
        error_message=Join(
            on="",
            values=[
                "Model rejected: test rmse=", metric(RMSE),
                " (must be <= MaxRmse=", params.max_rmse,
                " and < rating baseline rmse=", metric(BASELINE_RMSE),
                "); test hit_rate_at_10=", metric(HIT_RATE),
                " (must be >= MinHitRateAt10=", params.min_hit_rate_at_10,
                " and > popularity hit_rate_at_10=", metric(BASELINE_HIT_RATE),
                "). Evaluation report: ", evaluation_uri(evaluate),
            ],
        ),
    )  # fmt: skip

    if_steps: list[Any] = []
    if register:
        if_steps.append(_register_step(settings, params, session, train, evaluate, metric))
    check = ConditionStep(
        name=CHECK,
        display_name="Check quality",
        description=(
            "Register only a model within the MaxRmse / MinHitRateAt10 thresholds that beats the "
            "rating baseline's RMSE and the popularity baseline's HitRate@10."
        ),
        conditions=conditions,
        if_steps=if_steps,
        else_steps=[fail],
    )
    return Pipeline(
        name=settings.pipeline_name,
        parameters=params.all(),
        steps=[prepare, train, evaluate, check],
        sagemaker_session=session,
    )


def evaluation_uri(evaluate: Any) -> Any:
    """The S3 URI of evaluate's evaluation.json, as a pipeline expression."""
    from sagemaker.core.workflow.functions import Join  # noqa: PLC0415  heavy: loads sagemaker only when called

    return Join(
        on="/",
        values=[
            evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri,
            EVALUATION_FILE,
        ],
    )


def _register_step(
    settings: PipelineSettings, params: Parameters, session: Any, train: Any, evaluate: Any, metric: Any
) -> Any:
    """The ModelStep registering the model package, with metrics and lineage (shared with local)."""
    from sagemaker.core.workflow.execution_variables import ExecutionVariables  # noqa: PLC0415  heavy: loads sagemaker only when called
    from sagemaker.mlops.workflow import ModelStep  # noqa: PLC0415  heavy: sagemaker, only when a definition or session is built
    from sagemaker.serve.model_builder import ModelBuilder  # noqa: PLC0415  heavy: sagemaker, only when a definition or session is built

    builder = ModelBuilder(
        image_uri=settings.serving_image_uri,
        s3_model_data_url=train.properties.ModelArtifacts.S3ModelArtifacts,
        role_arn=settings.role_arn,
        sagemaker_session=session,
    )
    lineage = registry.Lineage(
        dataset=params.dataset,
        dataset_version=params.dataset_version,
        git_commit=params.git_commit,
        mlflow_run_id=metric(MLFLOW_RUN_ID),
        pipeline_execution=ExecutionVariables.PIPELINE_EXECUTION_ARN,
    )
    register_args = builder.register(
        model_package_group_name=settings.model_package_group_name,
        approval_status=params.approval_status,
        content_types=list(registry.CONTENT_TYPES),
        response_types=list(registry.CONTENT_TYPES),
        inference_instances=[settings.inference_instance_type],
        transform_instances=[settings.inference_instance_type],
        model_metrics=registry.sdk_model_metrics(evaluation_uri(evaluate)),
        metadata_properties=registry.sdk_metadata_properties(lineage),
        customer_metadata_properties={
            **lineage.as_metadata(),
            **{key: metric(f"{registry.REGISTRY_SECTION}.{key}") for key in registry.METRIC_KEYS},
        },
    )
    return ModelStep(
        name=REGISTER,
        step_args=register_args,
        display_name="Register model",
        description=(
            "Register the model package in the model package group, pending manual approval, with "
            "its evaluation metrics and lineage (dataset version, git commit, MLflow run, execution)."
        ),
    )


def definition_json(settings: PipelineSettings) -> str:
    """The pipeline definition as JSON: byte-identical for identical settings."""

    # The SDK logs a warning per popped job name on every build; they say nothing actionable.
    logging.getLogger("sagemaker.core.workflow.utilities").setLevel(logging.ERROR)
    logging.getLogger("sagemaker.mlops.workflow.model_step").setLevel(logging.ERROR)
    raw = build_pipeline(settings).definition()
    return json.dumps(json.loads(raw), indent=2, sort_keys=True) + "\n"
