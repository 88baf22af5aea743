"""The moto internals the CloudFormation handlers and patches rely on, and a check that they are there.

`standins.cfn_handlers` creates resources through moto's backends and `standins.moto_patches`
replaces a few private methods of moto's own models. Both break silently, far away, mid-deploy, when
a moto release moves one; `missing_moto_internals()` names each that moved (a unit test runs it, and
`cfn_handlers.register()` refuses to start on a moto that fails it).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

# Every moto internal standins.cfn_handlers and standins.moto_patches call or patch:
# (module, attribute path, the keyword parameters it is called with by name).
MOTO_INTERNALS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("moto.core.common_models", "CloudFormationModel", ()),
    ("moto.cloudformation.parsing", "get_model_list", ()),
    ("moto.cloudformation.parsing", "get_model_map", ()),
    ("moto.cloudformation.parsing", "get_name_type_map", ()),
    ("moto.cloudformation.exceptions", "UnformattedGetAttTemplateException", ()),
    ("moto.cloudformation.models", "cloudformation_backends", ()),
    (
        "moto.cloudformation.models",
        "CloudFormationBackend.execute_change_set",
        ("change_set_name", "stack_name"),
    ),
    ("moto.cloudformation.models", "CloudFormationBackend._validate_export_uniqueness", ()),
    ("moto.cloudformation.models", "Stack.__init__", ("account_id", "region_name", "cross_stack_resources")),
    ("moto.cloudformation.models", "Stack._parse_template", ()),
    ("moto.cloudformation.models", "Stack._create_output_map", ()),
    ("moto.sagemaker.models", "sagemaker_backends", ()),
    (
        "moto.sagemaker.models",
        "SageMakerModelBackend.create_feature_group",
        (
            "feature_group_name",
            "record_identifier_feature_name",
            "event_time_feature_name",
            "feature_definitions",
            "offline_store_config",
            "role_arn",
            "tags",
        ),
    ),
    (
        "moto.sagemaker.models",
        "SageMakerModelBackend.create_model_package_group",
        ("model_package_group_name", "model_package_group_description", "tags"),
    ),
    (
        "moto.sagemaker.models",
        "SageMakerModelBackend.create_pipeline",
        (
            "pipeline_name",
            "pipeline_display_name",
            "pipeline_definition",
            "pipeline_definition_s3_location",
            "pipeline_description",
            "role_arn",
            "tags",
            "parallelism_configuration",
        ),
    ),
    ("moto.sagemaker.models", "FakeEndpoint.cloudformation_name_type", ()),
    ("moto.sagemaker.models", "FakeEndpointConfig.cloudformation_name_type", ()),
    ("moto.sagemaker.models", "Model.cloudformation_name_type", ()),
    ("moto.cloudwatch.models", "cloudwatch_backends", ()),
    ("moto.cloudwatch.models", "Dimension", ()),
    ("moto.cloudwatch.models", "Metric", ("metric_name", "namespace", "dimensions")),
    ("moto.cloudwatch.models", "MetricStat", ("metric", "period", "stat", "unit")),
    (
        "moto.cloudwatch.models",
        "MetricDataQuery",
        ("query_id", "label", "period", "return_data", "expression", "metric_stat"),
    ),
    (
        "moto.cloudwatch.models",
        "CloudWatchBackend.put_metric_alarm",
        (
            "name",
            "namespace",
            "metric_name",
            "comparison_operator",
            "evaluation_periods",
            "period",
            "threshold",
            "statistic",
            "extended_statistic",
            "description",
            "dimensions",
            "alarm_actions",
            "ok_actions",
            "insufficient_data_actions",
            "metric_data_queries",
            "datapoints_to_alarm",
            "unit",
            "actions_enabled",
            "treat_missing_data",
        ),
    ),
    ("moto.applicationautoscaling.models", "applicationautoscaling_backends", ()),
    (
        "moto.applicationautoscaling.models",
        "ApplicationAutoscalingBackend.register_scalable_target",
        ("namespace", "r_id", "dimension", "min_capacity", "max_capacity", "role_arn", "suspended_state"),
    ),
    (
        "moto.applicationautoscaling.models",
        "ApplicationAutoscalingBackend.put_scaling_policy",
        (
            "policy_name",
            "service_namespace",
            "resource_id",
            "scalable_dimension",
            "policy_body",
            "policy_type",
        ),
    ),
    ("moto.scheduler.models", "scheduler_backends", ()),
    (
        "moto.scheduler.models",
        "EventBridgeSchedulerBackend.create_schedule",
        (
            "description",
            "end_date",
            "flexible_time_window",
            "group_name",
            "kms_key_arn",
            "name",
            "schedule_expression",
            "schedule_expression_timezone",
            "start_date",
            "state",
            "target",
            "action_after_completion",
        ),
    ),
    ("moto.s3.models", "s3_backends", ()),
    ("moto.s3.models", "FakeBucket.create_from_cloudformation_json", ()),
    ("moto.s3.models", "FakeBucket.get_permission", ("action", "resource")),
    ("moto.s3.models", "S3Backend.put_bucket_policy", ()),
    ("moto.s3.models", "S3Backend.put_bucket_versioning", ()),
    ("moto.s3.models", "S3Backend.put_public_access_block", ()),
    ("moto.s3.models", "S3Backend.put_bucket_lifecycle", ()),
    ("moto.iam.access_control", "IAMPolicy.is_action_permitted", ()),
    ("moto.iam.access_control", "PermissionResult.NEUTRAL", ()),
    ("moto.kms.models", "Key.create_from_cloudformation_json", ()),
    ("moto.sns.models", "sns_backends", ()),
    ("moto.sns.models", "SNSBackend.set_topic_attribute", ()),
    ("moto.sns.models", "SNSBackend.subscribe", ()),
)
_WHAT_TO_DO = (
    "standins/cfn_handlers.py or standins/moto_patches.py calls or patches it. Keep moto at the "
    "minor pyproject.toml pins (`uv sync`), or update the code that uses it and MOTO_INTERNALS."
)


def _internal_problem(module: str, path: str, keywords: tuple[str, ...]) -> str | None:
    """Why one moto internal is not as the handlers use it, or None when it is."""
    try:
        target: Any = importlib.import_module(module)
    except ImportError as error:
        return f"module {module} cannot be imported ({error})"
    for part in path.split("."):
        if not hasattr(target, part):
            return f"{module}.{path} is gone ({part!r} not found)"
        target = getattr(target, part)
    if not keywords:
        return None
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return f"{module}.{path} has no inspectable signature"
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    lost = [name for name in keywords if name not in parameters]
    return f"{module}.{path} lost the parameter(s) {', '.join(lost)}" if lost else None


def missing_moto_internals() -> list[str]:
    """One message per moto internal the handlers use that moved or changed; empty when all are there."""
    import moto  # noqa: PLC0415  heavy: loads moto only when called

    problems = []
    for module, path, keywords in MOTO_INTERNALS:
        problem = _internal_problem(module, path, keywords)
        if problem:
            problems.append(f"moto {moto.__version__}: {problem}; {_WHAT_TO_DO}")
    return problems
