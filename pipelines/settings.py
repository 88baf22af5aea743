"""Typed, validated settings of the training pipeline: everything the definition is built from."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from dataset.dataset_names import DatasetName
from training.hyperparameters import Hyperparameters

# What a run may register a package as. Never "Approved": approval is a reviewer's act
# (UpdateModelPackage, which only the approver role may call, docs/security.md), so whoever may start
# the pipeline must not be able to approve through a parameter.
APPROVAL_STATUSES = ("PendingManualApproval", "Rejected")
# Hyperparameters the Train step takes from pipeline parameters, never from the settings.
PIPELINE_HYPERPARAMETERS = ("dataset", "dataset_version")

# A CloudFormation substitution such as "${RoleArn}": the infra stack builds the definition with
# these in place of values it only knows at deploy time, and Fn::Sub resolves them.
_CFN_SUB = re.compile(r"^\$\{[A-Za-z0-9_.:]+\}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_INSTANCE = re.compile(r"^(local|ml\.[a-z0-9]+\.[a-z0-9]+)$")
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_KMS_KEY = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[\w/-]+$")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")
# SageMaker's own limits on MaxRuntimeInSeconds: processing 7 days, training 28 days.
MAX_PROCESSING_SECONDS = 7 * 24 * 3600
MAX_TRAINING_SECONDS = 28 * 24 * 3600


def _placeholder(value: str) -> bool:
    return bool(_CFN_SUB.match(value))


class Thresholds(BaseModel):
    """Quality gates a model must pass to be registered (besides beating the baselines)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_rmse: float = Field(1.0, gt=0.0, le=4.0, description="Highest test RMSE accepted.")
    min_hit_rate_at_10: float = Field(0.0, ge=0.0, le=1.0, description="Lowest test HitRate@10 accepted.")


class PipelineSettings(BaseModel):
    """Everything the pipeline definition depends on; building it makes no AWS call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pipeline_name: str = "mlops-movielens-training"
    region: str = "us-east-1"
    # The role SageMaker assumes to run the pipeline itself (start and describe its jobs, pass the job roles).
    role_arn: str = "arn:aws:iam::123456789012:role/mlops-sagemaker-execution"
    # The roles the jobs run with; "" means role_arn (local runs use one role for everything).
    processing_role_arn: str = ""
    training_role_arn: str = ""
    # KMS key (ARN) for the jobs' volumes and outputs; "" leaves SageMaker's default (local runs).
    kms_key_id: str = ""
    # The VPC the jobs run in: subnets and security groups, both or neither.
    subnet_ids: list[str] = Field(default_factory=list)
    security_group_ids: list[str] = Field(default_factory=list)
    max_processing_seconds: int = Field(default=2 * 3600, ge=60, le=MAX_PROCESSING_SECONDS)
    max_training_seconds: int = Field(default=4 * 3600, ge=60, le=MAX_TRAINING_SECONDS)
    bucket: str = "mlops-movielens-artifacts"
    # Prefix under the bucket for every step's outputs; execution id is appended at run time.
    artifact_prefix: str = "pipelines"
    training_image_uri: str = "mlops-training:latest"
    serving_image_uri: str = "mlops-serving:latest"
    model_package_group_name: str = "mlops-movielens"
    dataset: DatasetName = DatasetName.ML_100K
    input_data_uri: str = ""
    dataset_version: str = "unversioned"
    git_commit: str = "unknown"
    processing_instance_type: str = "ml.m5.xlarge"
    processing_instance_count: int = Field(default=1, ge=1, le=1)
    training_instance_type: str = "ml.m5.xlarge"
    training_instance_count: int = Field(default=1, ge=1, le=16)
    inference_instance_type: str = "ml.m5.large"
    thresholds: Thresholds = Field(default_factory=lambda: Thresholds.model_validate({}))
    approval_status: str = "PendingManualApproval"
    # "feast": Prepare pushes its feature rows to Feast's feature server at feast_url (local runs);
    # "sagemaker": Prepare calls PutRecord on the feature groups (AWS); "none": skip ingestion.
    feature_store: Literal["feast", "sagemaker", "none"] = "sagemaker"
    # Base URL of a `feast serve` the Prepare container can reach (the host's Docker bridge address).
    feast_url: str = ""
    user_feature_group: str = "mlops-movielens-user-features"
    movie_feature_group: str = "mlops-movielens-movie-features"
    mlflow_tracking_uri: str = ""
    # The model itself, not SageMaker's string map: a misspelt name fails here, and what is not given
    # is training's benchmarked default. definition.py serialises it when it builds the Train step.
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    split_seed: int = 42
    cache_expire_after: str = "P30D"

    @field_validator("role_arn", "processing_role_arn", "training_role_arn")
    @classmethod
    def _role(cls, value: str, info: ValidationInfo) -> str:
        if info.field_name != "role_arn" and value == "":
            return value
        if not (_ROLE_ARN.match(value) or _placeholder(value)):
            raise ValueError(
                f"role_arn {value!r} is not an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>); "
                "give the SageMaker execution role's full ARN"
            )
        return value

    @field_validator("kms_key_id")
    @classmethod
    def _kms_key(cls, value: str) -> str:
        if value and not (_KMS_KEY.match(value) or _placeholder(value)):
            raise ValueError(
                f"kms_key_id {value!r} is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>); "
                "give the key's full ARN, or leave it empty for SageMaker's default encryption"
            )
        return value

    @field_validator("subnet_ids", "security_group_ids")
    @classmethod
    def _network_ids(cls, value: list[str], info: ValidationInfo) -> list[str]:
        subnets = info.field_name == "subnet_ids"
        pattern, example = (_SUBNET, "subnet-0123abcd...") if subnets else (_SECURITY_GROUP, "sg-0123abcd...")
        for item in value:
            if not (pattern.match(item) or _placeholder(item)):
                raise ValueError(f"{info.field_name} has {item!r}, which is not an id like {example}")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not (_BUCKET.match(value) or _placeholder(value)):
            raise ValueError(
                f"bucket {value!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.', '-'); "
                "give the bucket name alone, without s3://"
            )
        return value

    @field_validator("pipeline_name", "model_package_group_name")
    @classmethod
    def _sagemaker_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"name {value!r} is not a SageMaker resource name "
                "(1-63 letters, digits and hyphens, starting with a letter or digit)"
            )
        return value

    @field_validator("processing_instance_type", "training_instance_type", "inference_instance_type")
    @classmethod
    def _instance(cls, value: str) -> str:
        if not _INSTANCE.match(value):
            raise ValueError(
                f"instance type {value!r} is neither 'local' nor an ml.* type such as ml.m5.xlarge"
            )
        return value

    @field_validator("approval_status")
    @classmethod
    def _approval(cls, value: str) -> str:
        if value not in APPROVAL_STATUSES:
            raise ValueError(
                f"approval_status {value!r} is not one of {', '.join(APPROVAL_STATUSES)}: a run registers "
                "for review; approve afterwards in the registry (the approver role)"
            )
        return value

    @field_validator("input_data_uri")
    @classmethod
    def _input(cls, value: str) -> str:
        if value and not (value.startswith("s3://") or _placeholder(value)):
            raise ValueError(
                f"input_data_uri {value!r} is not an s3:// URI; pipeline steps read only from S3 "
                "(upload the raw files first, e.g. `mlops pipeline run --local` does it for you)"
            )
        return value

    @field_validator("feast_url")
    @classmethod
    def _feast_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/\s]+/?$", value):
            raise ValueError(
                f"feast_url {value!r} is not a feature server base URL such as http://172.17.0.1:6566"
            )
        return value.rstrip("/")

    @field_validator("hyperparameters")
    @classmethod
    def _hyperparameters(cls, value: Hyperparameters) -> Hyperparameters:
        reserved = sorted(set(PIPELINE_HYPERPARAMETERS) & value.model_fields_set)
        if reserved:
            raise ValueError(
                f"hyperparameters {reserved} are set by the pipeline from its DatasetName and "
                "DatasetVersion parameters; remove them from the settings"
            )
        return value

    @field_serializer("hyperparameters")
    def _dump_hyperparameters(self, value: Hyperparameters) -> dict[str, object]:
        # Without the pipeline's own keys a dump validates back into the same settings.
        return value.model_dump(exclude=set(PIPELINE_HYPERPARAMETERS))

    @model_validator(mode="after")
    def _local_consistency(self) -> PipelineSettings:
        local = {
            "processing_instance_type": self.processing_instance_type == "local",
            "training_instance_type": self.training_instance_type == "local",
        }
        if any(local.values()) and not all(local.values()):
            raise ValueError(
                f"instance types mix 'local' and ml.* ({local}); a pipeline runs either entirely "
                "in local mode or entirely in SageMaker"
            )
        if bool(self.subnet_ids) != bool(self.security_group_ids):
            raise ValueError(
                f"subnet_ids {self.subnet_ids} and security_group_ids {self.security_group_ids}: a job "
                "runs in a VPC with both or with neither; give both, or leave both empty"
            )
        if all(local.values()) and self.feature_store == "sagemaker":
            raise ValueError(
                "feature_store 'sagemaker' cannot run in local mode: moto has no Feature Store "
                "runtime; use feature_store='feast' for local runs"
            )
        return self

    @property
    def default_input_uri(self) -> str:
        """Where the raw data is read from when the InputDataUri parameter is not given."""
        return self.input_data_uri or f"s3://{self.bucket}/raw/{self.dataset}/"

    @property
    def processing_role(self) -> str:
        """The role the processing jobs (Prepare, Evaluate) run with."""
        return self.processing_role_arn or self.role_arn

    @property
    def training_role(self) -> str:
        """The role the training job runs with."""
        return self.training_role_arn or self.role_arn

    @property
    def is_local(self) -> bool:
        """True when the steps run in SageMaker local mode (Docker on this machine)."""
        return self.training_instance_type == "local"

    def artifact_uri(self, *parts: str) -> str:
        """An S3 URI under the pipeline's artifact prefix."""
        return "/".join([f"s3://{self.bucket}", self.artifact_prefix, *parts])


def load_settings(path: Path | None, **overrides: object) -> PipelineSettings:
    """Settings from a JSON file (optional) plus overrides; errors name the file and the field."""

    raw: dict[str, object] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = json.loads(path.read_text())
        except FileNotFoundError as error:
            raise ValueError(f"settings file {path} does not exist; pass an existing JSON file") from error
        except json.JSONDecodeError as error:
            raise ValueError(f"settings file {path} is not valid JSON: {error}") from error
        if not isinstance(loaded, dict):
            raise ValueError(f"settings file {path} holds {type(loaded).__name__}, expected a JSON object")
        raw.update(loaded)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return PipelineSettings.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        raise ValueError(f"invalid pipeline settings from {source}: {problems}") from error
