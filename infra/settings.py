"""Typed, validated per-environment settings, read from `cdk.json` context at synth time."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_NAMES = ("dev", "staging", "prod")

_SCHEDULE = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\([^()]+\))$")
_INSTANCE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_IMAGE_URI = re.compile(r"^[a-z0-9.\-:/]+(:[\w.\-]+|@sha256:[0-9a-f]{64})$")
_MODEL_PACKAGE_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/[\w-]+/\d+$")


class SettingsError(ValueError):
    """A bad value in cdk.json context: the message names the key, the value and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlarmSettings(_Strict):
    """Alarm thresholds of one environment's endpoint and pipeline."""

    error_5xx_count: int = Field(ge=1, description="5xx errors in one minute that fire the alarm")
    error_4xx_rate_percent: float = Field(gt=0, le=100)
    p99_latency_ms: int = Field(ge=1, le=60_000)
    cpu_percent: float = Field(gt=0, le=1_000)
    memory_percent: float = Field(gt=0, le=100)
    min_invocations_per_hour: int = Field(ge=0)


class VpcSettings(_Strict):
    """An existing VPC the endpoint (and Studio) run in."""

    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{8,17}$")
    # The VPC's (primary) IPv4 CIDR: the endpoint's only egress is HTTPS to it (the interface VPC
    # endpoints live there). Given, not looked up: synth stays offline and deterministic.
    cidr: str
    subnet_ids: list[str] = Field(min_length=1)

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            network = ipaddress.IPv4Network(value, strict=True)
        except ValueError as e:
            raise ValueError(
                f"{value!r} is not an IPv4 network in CIDR form ({e}); give the VPC's CIDR, e.g. 10.20.0.0/16"
            ) from None
        if not 16 <= network.prefixlen <= 28:
            raise ValueError(f"{value!r} is not a VPC-sized CIDR: a VPC's IPv4 block is /16 to /28")
        return value

    @field_validator("subnet_ids")
    @classmethod
    def _subnets(cls, value: list[str]) -> list[str]:
        for subnet in value:
            if not re.match(r"^subnet-[0-9a-f]{8,17}$", subnet):
                raise ValueError(f"{subnet!r} is not a subnet id (subnet-0123abcd...)")
        return value


class ImageSettings(_Strict):
    """Existing image URIs; when absent the images are built from the Dockerfiles as CDK assets."""

    training_uri: str
    serving_uri: str

    @field_validator("training_uri", "serving_uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        if not _IMAGE_URI.match(value):
            raise ValueError(f"{value!r} is not an image URI with a tag or digest (host/repo:tag)")
        return value


class EnvironmentSettings(_Strict):
    """Everything that differs between dev, staging and prod."""

    name: Literal["dev", "staging", "prod"]
    account: str = Field(pattern=r"^\d{12}$")
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    project: str = Field(default="mlops-movielens", pattern=r"^[a-z][a-z0-9-]{2,30}$")
    training_instance_type: str
    training_instance_count: int = Field(ge=1, le=20)
    processing_instance_type: str
    endpoint_instance_type: str
    endpoint_min_instances: int = Field(ge=1, le=100)
    endpoint_max_instances: int = Field(ge=1, le=100)
    invocations_per_instance_target: int = Field(ge=1, le=100_000)
    canary_percent: int = Field(ge=1, le=50)
    canary_wait_seconds: int = Field(ge=0, le=3600)
    termination_wait_seconds: int = Field(ge=0, le=3600)
    data_capture_percent: int = Field(ge=0, le=100)
    retraining_schedule: str
    notification_email: str
    alarms: AlarmSettings
    network_isolation: bool = True
    vpc: VpcSettings | None = None
    mlflow_enabled: bool = False
    mlflow_size: Literal["Small", "Medium", "Large"] = "Small"
    studio_enabled: bool = False
    images: ImageSettings | None = None
    # MaxRuntimeInSeconds of the pipeline's jobs (SageMaker's limits: processing 7 days, training 28).
    max_processing_seconds: int = Field(default=2 * 3600, ge=60, le=7 * 24 * 3600)
    max_training_seconds: int = Field(default=4 * 3600, ge=60, le=28 * 24 * 3600)
    model_package_arn: str | None = None

    @field_validator("training_instance_type", "processing_instance_type", "endpoint_instance_type")
    @classmethod
    def _instance(cls, value: str) -> str:
        if not _INSTANCE.match(value):
            raise ValueError(
                f"{value!r} is not a SageMaker instance type (ml.<family>.<size>, e.g. ml.m5.large)"
            )
        return value

    @field_validator("retraining_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        if not _SCHEDULE.match(value):
            raise ValueError(
                f"{value!r} is not an EventBridge Scheduler expression (rate(7 days) or cron(...))"
            )
        return value

    @field_validator("notification_email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value

    @field_validator("model_package_arn")
    @classmethod
    def _package(cls, value: str | None) -> str | None:
        if value is not None and not _MODEL_PACKAGE_ARN.match(value):
            raise ValueError(
                f"{value!r} is not a versioned model package ARN "
                "(arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>)"
            )
        return value

    @model_validator(mode="after")
    def _combinations(self) -> EnvironmentSettings:
        if self.endpoint_min_instances > self.endpoint_max_instances:
            raise ValueError(
                f"endpoint_min_instances ({self.endpoint_min_instances}) is above "
                f"endpoint_max_instances ({self.endpoint_max_instances}); make min <= max"
            )
        if self.studio_enabled and self.vpc is None:
            raise ValueError(
                "studio_enabled is true but no vpc is set; a Studio domain needs vpc_id and subnet_ids"
            )
        if self.mlflow_enabled and self.name == "dev" and self.mlflow_size != "Small":
            raise ValueError(
                f"mlflow_size {self.mlflow_size!r} in dev costs money for nothing; use Small in dev"
            )
        return self

    @property
    def prefix(self) -> str:
        """Name prefix of every named resource of this environment."""
        return f"{self.project}-{self.name}"

    @property
    def endpoint_name(self) -> str:
        """The endpoint's name, known before the Serving stack exists (alarms refer to it)."""
        return f"{self.prefix}-endpoint"

    @property
    def model_package_group_name(self) -> str:
        """The model package group's name."""
        return f"{self.prefix}-recommender"

    def bucket_name(self, purpose: str) -> str:
        """A bucket's globally unique name: project, environment, purpose, account and region."""
        return f"{self.prefix}-{purpose}-{self.account}-{self.region}"

    def feature_group_name(self, view: str) -> str:
        """The feature group's name for one feature view of the feature definition."""
        return f"{self.prefix}-{view.replace('_', '-')}"

    @property
    def pipeline_name(self) -> str:
        """The SageMaker pipeline's name."""
        return f"{self.prefix}-training"


def _describe(error: ValidationError, env: str, raw: dict[str, Any]) -> str:
    sentences = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"])
        key = f"context.environments.{env}" + (f".{loc}" if loc else "")
        value: Any = raw
        for part in item["loc"]:
            value = value.get(part) if isinstance(value, dict) else None
        message = item["msg"].removeprefix("Value error, ")
        sentences.append(f"cdk.json {key} = {value!r}: {message}.")
    return " ".join(sentences) + " Fix the value in cdk.json (or the -c override) and synthesize again."


# Context keys a user may pass with -c to override one environment's setting at deploy time.
OVERRIDES = ("model_package_arn", "training_image_uri", "serving_image_uri", "account", "region")


def parse_environment(
    env: str, raw: dict[str, Any], overrides: dict[str, str] | None = None
) -> EnvironmentSettings:
    """Validate one environment's raw context into settings; raise SettingsError with a readable sentence."""
    if env not in ENV_NAMES:
        raise SettingsError(
            f"environment {env!r} is not one of {', '.join(ENV_NAMES)}; pass -c env=dev|staging|prod"
        )
    data = dict(raw)
    data["name"] = env
    for key, value in (overrides or {}).items():
        if key not in OVERRIDES:
            raise SettingsError(f"context override {key!r} is not one of {', '.join(OVERRIDES)}")
        if key in ("training_image_uri", "serving_image_uri"):
            images = dict(data.get("images") or {})
            images[key.replace("_image_uri", "_uri")] = value
            data["images"] = images
        else:
            data[key] = value
    try:
        return EnvironmentSettings.model_validate(data)
    except ValidationError as error:
        raise SettingsError(_describe(error, env, data)) from None


def parse_all(context: dict[str, Any]) -> dict[str, EnvironmentSettings]:
    """Validate every environment under the `environments` context key."""
    environments = context.get("environments")
    if not isinstance(environments, dict) or not environments:
        raise SettingsError("cdk.json context.environments is missing or empty; add dev, staging and prod")
    return {name: parse_environment(name, raw) for name, raw in environments.items()}
