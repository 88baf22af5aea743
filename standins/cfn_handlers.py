"""CloudFormation handlers for the resource types this project needs and moto's CloudFormation skips.

moto's CloudFormation silently skips FeatureGroup, ModelPackageGroup, Pipeline, CloudWatch alarms,
autoscaling, schedules and bucket/topic policies. `HANDLERS` is one table, CloudFormation type ->
create and delete functions; each create makes its resource through moto's own backend (the same
code the service API calls), so `cdk deploy` against this server leaves resources a boto3 client
can describe. `register()` adds them and applies `standins.moto_patches` (what moto mishandles in
types it knows), after checking the moto internals both use (`standins.moto_internals`).
Run: `python -m standins.moto_server --port 0` (prints `READY <port>` when it listens).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from moto.applicationautoscaling.models import applicationautoscaling_backends
from moto.cloudformation import parsing
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricStat, cloudwatch_backends
from moto.core.common_models import CloudFormationModel
from moto.s3.models import s3_backends
from moto.sagemaker.models import sagemaker_backends
from moto.scheduler.models import scheduler_backends
from moto.sns.models import sns_backends

from standins import moto_patches
from standins.moto_internals import missing_moto_internals

# (resource name, Properties, account, region) -> (physical id, the attributes Fn::GetAtt may read)
Create = Callable[[str, dict[str, Any], str, str], tuple[str, dict[str, str]]]
# (physical id, account, region) -> None
Delete = Callable[[str, str, str], None]


def _props(cloudformation_json: dict[str, Any]) -> dict[str, Any]:
    props = cloudformation_json.get("Properties", {})
    assert isinstance(props, dict)
    return props


def _sagemaker(account_id: str, region_name: str) -> Any:

    return sagemaker_backends[account_id][region_name]


def _autoscaling(account_id: str, region_name: str) -> Any:

    return applicationautoscaling_backends[account_id][region_name]


def _sns(account_id: str, region_name: str) -> Any:

    return sns_backends[account_id][region_name]


def create_feature_group(
    name: str, p: dict[str, Any], account_id: str, region_name: str
) -> tuple[str, dict[str, str]]:
    """AWS::SageMaker::FeatureGroup."""
    backend = _sagemaker(account_id, region_name)
    arn = backend.create_feature_group(
        feature_group_name=p["FeatureGroupName"],
        record_identifier_feature_name=p["RecordIdentifierFeatureName"],
        event_time_feature_name=p["EventTimeFeatureName"],
        feature_definitions=p["FeatureDefinitions"],
        offline_store_config=p.get("OfflineStoreConfig", {}),
        role_arn=p.get("RoleArn"),
        tags=p.get("Tags", []),
    )
    # moto's CreateFeatureGroup has no online store argument: keep the template's on the model.
    backend.feature_groups[arn].online_store_config = p.get("OnlineStoreConfig")
    return p["FeatureGroupName"], {"FeatureGroupName": p["FeatureGroupName"], "FeatureGroupArn": arn}


def create_model_package_group(
    name: str, p: dict[str, Any], account_id: str, region_name: str
) -> tuple[str, dict[str, str]]:
    """AWS::SageMaker::ModelPackageGroup (Ref is the ARN, as in AWS)."""
    arn = _sagemaker(account_id, region_name).create_model_package_group(
        model_package_group_name=p["ModelPackageGroupName"],
        model_package_group_description=p.get("ModelPackageGroupDescription", ""),
        tags=p.get("Tags", []),
    )
    return arn, {"ModelPackageGroupArn": arn}


def create_pipeline(
    name: str, p: dict[str, Any], account_id: str, region_name: str
) -> tuple[str, dict[str, str]]:
    """AWS::SageMaker::Pipeline (Ref is the name, as in AWS)."""
    definition = p["PipelineDefinition"]
    _sagemaker(account_id, region_name).create_pipeline(
        pipeline_name=p["PipelineName"],
        pipeline_display_name=p.get("PipelineDisplayName", p["PipelineName"]),
        pipeline_definition=definition.get("PipelineDefinitionBody"),
        pipeline_definition_s3_location=definition.get("PipelineDefinitionS3Location"),
        pipeline_description=p.get("PipelineDescription", ""),
        role_arn=p["RoleArn"],
        tags=p.get("Tags", []),
        parallelism_configuration=p.get("ParallelismConfiguration"),
    )
    return p["PipelineName"], {}


def _metric_data_queries(metrics: list[Any] | None) -> list[Any] | None:
    """An alarm's metric-math `Metrics` as moto's MetricDataQuery objects (None when absent)."""

    if not metrics:
        return None
    queries = []
    for m in metrics:
        stat = None
        if "MetricStat" in m:
            ms = m["MetricStat"]
            metric = ms["Metric"]
            stat = MetricStat(
                metric=Metric(
                    metric_name=metric["MetricName"],
                    namespace=metric["Namespace"],
                    dimensions=[Dimension(d["Name"], d["Value"]) for d in metric.get("Dimensions", [])],
                ),
                period=ms["Period"],
                stat=ms["Stat"],
                unit=ms.get("Unit"),
            )
        queries.append(
            MetricDataQuery(
                query_id=m["Id"],
                label=m.get("Label"),
                period=m.get("Period"),
                return_data=m.get("ReturnData", True),
                expression=m.get("Expression"),
                metric_stat=stat,
            )
        )
    return queries


def create_alarm(
    name: str, p: dict[str, Any], account_id: str, region_name: str
) -> tuple[str, dict[str, str]]:
    """AWS::CloudWatch::Alarm, single-metric or metric math."""

    name = p.get("AlarmName") or name
    backend: Any = cloudwatch_backends[account_id][region_name]
    alarm = backend.put_metric_alarm(
        name=name,
        namespace=p.get("Namespace"),
        metric_name=p.get("MetricName"),
        comparison_operator=p["ComparisonOperator"],
        evaluation_periods=int(p["EvaluationPeriods"]),
        period=p.get("Period"),
        threshold=float(p["Threshold"]),
        statistic=p.get("Statistic"),
        extended_statistic=p.get("ExtendedStatistic"),
        description=p.get("AlarmDescription", ""),
        dimensions=p.get("Dimensions", []),
        alarm_actions=p.get("AlarmActions", []),
        ok_actions=p.get("OKActions", []),
        insufficient_data_actions=p.get("InsufficientDataActions", []),
        metric_data_queries=_metric_data_queries(p.get("Metrics")),
        datapoints_to_alarm=p.get("DatapointsToAlarm"),
        unit=p.get("Unit"),
        actions_enabled=str(p.get("ActionsEnabled", True)).lower() == "true",
        treat_missing_data=p.get("TreatMissingData"),
    )
    return name, {"Arn": alarm.alarm_arn}


def create_scalable_target(
    name: str, p: dict[str, Any], account_id: str, region_name: str
) -> tuple[str, dict[str, str]]:
    """AWS::ApplicationAutoScaling::ScalableTarget (Ref is resource|dimension|namespace, as in AWS)."""
    _autoscaling(account_id, region_name).register_scalable_target(
        namespace=p["ServiceNamespace"],
        r_id=p["ResourceId"],
        dimension=p["ScalableDimension"],
        min_capacity=int(p["MinCapacity"]),
        max_capacity=int(p["MaxCapacity"]),
        role_arn=p.get("RoleARN", ""),
        suspended_state=p.get("SuspendedState", {}),
    )
    return f"{p['ResourceId']}|{p['ScalableDimension']}|{p['ServiceNamespace']}", {}


def create_scaling_policy(
    name: str, p: dict[str, Any], account_id: str, region_name: str
) -> tuple[str, dict[str, str]]:
    """AWS::ApplicationAutoScaling::ScalingPolicy."""
    if "ScalingTargetId" in p:
        resource_id, dimension, namespace = p["ScalingTargetId"].split("|")
    else:
        resource_id, dimension, namespace = p["ResourceId"], p["ScalableDimension"], p["ServiceNamespace"]
    body = p.get("TargetTrackingScalingPolicyConfiguration") or p.get("StepScalingPolicyConfiguration")
    policy = _autoscaling(account_id, region_name).put_scaling_policy(
        policy_name=p["PolicyName"],
        service_namespace=namespace,
        resource_id=resource_id,
        scalable_dimension=dimension,
        policy_body=body,
        policy_type=p["PolicyType"],
    )
    return policy.policy_arn, {}


def create_schedule(
    name: str, p: dict[str, Any], account_id: str, region_name: str
) -> tuple[str, dict[str, str]]:
    """AWS::Scheduler::Schedule."""

    name = p.get("Name") or name
    backend: Any = scheduler_backends[account_id][region_name]
    schedule = backend.create_schedule(
        description=p.get("Description"),
        end_date=p.get("EndDate"),
        flexible_time_window=p["FlexibleTimeWindow"],
        group_name=p.get("GroupName"),
        kms_key_arn=p.get("KmsKeyArn"),
        name=name,
        schedule_expression=p["ScheduleExpression"],
        schedule_expression_timezone=p.get("ScheduleExpressionTimezone"),
        start_date=p.get("StartDate"),
        state=p.get("State"),
        target=p["Target"],
        action_after_completion=p.get("ActionAfterCompletion"),
    )
    return name, {"Arn": schedule.arn}


def create_bucket_policy(
    name: str, p: dict[str, Any], account_id: str, region_name: str
) -> tuple[str, dict[str, str]]:
    """AWS::S3::BucketPolicy (stored; moto's server does not enforce policies unless auth is on)."""

    s3_backends[account_id]["aws"].put_bucket_policy(p["Bucket"], json.dumps(p["PolicyDocument"]).encode())
    return p["Bucket"], {}


def create_topic_policy(
    name: str, p: dict[str, Any], account_id: str, region_name: str
) -> tuple[str, dict[str, str]]:
    """AWS::SNS::TopicPolicy."""
    for topic in p["Topics"]:
        _sns(account_id, region_name).set_topic_attribute(topic, "Policy", json.dumps(p["PolicyDocument"]))
    return name, {}


def create_subscription(
    name: str, p: dict[str, Any], account_id: str, region_name: str
) -> tuple[str, dict[str, str]]:
    """AWS::SNS::Subscription."""
    subscription = _sns(account_id, region_name).subscribe(p["TopicArn"], p["Endpoint"], p["Protocol"])
    return subscription.arn, {}


def leave(physical_id: str, account_id: str, region_name: str) -> None:
    """Delete nothing: the server is throwaway, and a replaced resource's new one is created anyway."""


@dataclass(frozen=True)
class Handler:
    """How moto's CloudFormation makes (and removes) one resource type, and which attributes it has."""

    create: Create
    delete: Delete = leave
    attributes: tuple[str, ...] = ()


HANDLERS: dict[str, Handler] = {
    "AWS::SageMaker::FeatureGroup": Handler(
        create_feature_group, attributes=("FeatureGroupName", "FeatureGroupArn")
    ),
    "AWS::SageMaker::ModelPackageGroup": Handler(
        create_model_package_group, attributes=("ModelPackageGroupArn",)
    ),
    "AWS::SageMaker::Pipeline": Handler(create_pipeline),
    "AWS::CloudWatch::Alarm": Handler(create_alarm, attributes=("Arn",)),
    "AWS::ApplicationAutoScaling::ScalableTarget": Handler(create_scalable_target),
    "AWS::ApplicationAutoScaling::ScalingPolicy": Handler(create_scaling_policy),
    "AWS::Scheduler::Schedule": Handler(create_schedule, attributes=("Arn",)),
    "AWS::S3::BucketPolicy": Handler(create_bucket_policy),
    "AWS::SNS::TopicPolicy": Handler(create_topic_policy),
    "AWS::SNS::Subscription": Handler(create_subscription),
}


class _Resource(CloudFormationModel):  # type: ignore[misc]
    """What moto's CloudFormation holds for a resource made from `HANDLERS`: physical id, attributes."""

    CFN_TYPE: ClassVar[str] = ""
    HANDLER: ClassVar[Handler]

    def __init__(self, physical_id: str, attributes: dict[str, str] | None = None) -> None:
        self._physical_id = physical_id
        self._attributes = attributes or {}

    @property
    def physical_resource_id(self) -> str:
        return self._physical_id

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def cloudformation_type(cls) -> str:
        return cls.CFN_TYPE

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in cls.HANDLER.attributes

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name not in self._attributes:
            raise UnformattedGetAttTemplateException()
        return self._attributes[attribute_name]

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> _Resource:
        physical_id, attributes = cls.HANDLER.create(
            resource_name, _props(cloudformation_json), account_id, region_name
        )
        return cls(physical_id, attributes)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[override]
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Any:
        cls.delete_from_cloudformation_json(
            original_resource.physical_resource_id, {}, account_id, region_name
        )
        return cls.create_from_cloudformation_json(
            new_resource_name, cloudformation_json, account_id, region_name
        )

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        cls.HANDLER.delete(resource_name, account_id, region_name)


def _resource_class(cfn_type: str, handler: Handler) -> type[_Resource]:
    """A moto CloudFormation model class for one row of `HANDLERS`."""
    name = cfn_type.split("::")[-1] + "Resource"
    return type(name, (_Resource,), {"CFN_TYPE": cfn_type, "HANDLER": handler, "__doc__": f"{cfn_type}."})


RESOURCE_CLASSES: list[type[_Resource]] = [_resource_class(t, h) for t, h in HANDLERS.items()]


def register() -> list[str]:
    """Make moto's CloudFormation know the handlers; return the resource types added.

    Refuses (RuntimeError naming each) when a moto internal it relies on moved: a moto upgrade
    then fails here, at server start, not as a half-deployed stack.
    """

    problems = missing_moto_internals()
    if problems:
        raise RuntimeError("cannot teach moto the CloudFormation types it skips:\n" + "\n".join(problems))
    moto_patches.apply()
    # moto lists only CloudFormationModel's direct subclasses, and caches the map at first use.
    builtin = parsing.get_model_list
    parsing.get_model_list = functools.lru_cache(lambda: [*builtin(), *RESOURCE_CLASSES])
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()
    return [cls.cloudformation_type() for cls in RESOURCE_CLASSES]
