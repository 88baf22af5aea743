"""CloudFormation handlers for the resource types this project needs and moto's CloudFormation skips.

moto's CloudFormation silently skips FeatureGroup, ModelPackageGroup, Pipeline, CloudWatch alarms,
autoscaling, schedules and bucket/topic policies. Each handler below creates its resource through
moto's own backend (the same code the service API calls), so `cdk deploy` against this server leaves
resources a boto3 client can describe. Run: `python -m standins.moto_server --port 0` (prints
`READY <port>` when it listens).
"""

from __future__ import annotations

import functools
import json
from typing import Any, ClassVar

from moto.core.common_models import CloudFormationModel

_HANDLERS: list[type[CloudFormationModel]] = []


def _props(cloudformation_json: dict[str, Any]) -> dict[str, Any]:
    props = cloudformation_json.get("Properties", {})
    assert isinstance(props, dict)
    return props


class _Resource(CloudFormationModel):  # type: ignore[misc]
    """Common plumbing: a physical id, attributes, and no-op update/delete for a throwaway server."""

    CFN_TYPE = ""
    NAME_PROPERTY = ""
    ATTRIBUTES: ClassVar[dict[str, str]] = {}

    def __init__(self, physical_id: str, attributes: dict[str, str] | None = None) -> None:
        self._physical_id = physical_id
        self._attributes = attributes or {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _HANDLERS.append(cls)

    @property
    def physical_resource_id(self) -> str:
        return self._physical_id

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in cls.ATTRIBUTES

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name not in self._attributes:
            from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

            raise UnformattedGetAttTemplateException()
        return self._attributes[attribute_name]

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
        return None


def _sagemaker(account_id: str, region_name: str) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[account_id][region_name]


class FeatureGroupResource(_Resource):
    """AWS::SageMaker::FeatureGroup."""

    ATTRIBUTES: ClassVar[dict[str, str]] = {"FeatureGroupName": "", "FeatureGroupArn": ""}

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SageMaker::FeatureGroup"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> FeatureGroupResource:
        p = _props(cloudformation_json)
        arn = _sagemaker(account_id, region_name).create_feature_group(
            feature_group_name=p["FeatureGroupName"],
            record_identifier_feature_name=p["RecordIdentifierFeatureName"],
            event_time_feature_name=p["EventTimeFeatureName"],
            feature_definitions=p["FeatureDefinitions"],
            offline_store_config=p.get("OfflineStoreConfig", {}),
            role_arn=p.get("RoleArn"),
            tags=p.get("Tags", []),
        )
        # moto's CreateFeatureGroup has no online store argument: keep the template's on the model.
        group = _sagemaker(account_id, region_name).feature_groups[arn]
        group.online_store_config = p.get("OnlineStoreConfig")
        return cls(p["FeatureGroupName"], {"FeatureGroupName": p["FeatureGroupName"], "FeatureGroupArn": arn})


class ModelPackageGroupResource(_Resource):
    """AWS::SageMaker::ModelPackageGroup (Ref is the ARN, as in AWS)."""

    ATTRIBUTES: ClassVar[dict[str, str]] = {"ModelPackageGroupArn": ""}

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SageMaker::ModelPackageGroup"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ModelPackageGroupResource:
        p = _props(cloudformation_json)
        arn = _sagemaker(account_id, region_name).create_model_package_group(
            model_package_group_name=p["ModelPackageGroupName"],
            model_package_group_description=p.get("ModelPackageGroupDescription", ""),
            tags=p.get("Tags", []),
        )
        return cls(arn, {"ModelPackageGroupArn": arn})


class PipelineResource(_Resource):
    """AWS::SageMaker::Pipeline (Ref is the name, as in AWS)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SageMaker::Pipeline"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> PipelineResource:
        p = _props(cloudformation_json)
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
        return cls(p["PipelineName"])


class AlarmResource(_Resource):
    """AWS::CloudWatch::Alarm, single-metric or metric math."""

    ATTRIBUTES: ClassVar[dict[str, str]] = {"Arn": ""}

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> AlarmResource:
        from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricStat, cloudwatch_backends

        p = _props(cloudformation_json)
        queries = None
        if p.get("Metrics"):
            queries = []
            for m in p["Metrics"]:
                stat = None
                if "MetricStat" in m:
                    ms = m["MetricStat"]
                    metric = ms["Metric"]
                    stat = MetricStat(
                        metric=Metric(
                            metric_name=metric["MetricName"],
                            namespace=metric["Namespace"],
                            dimensions=[
                                Dimension(d["Name"], d["Value"]) for d in metric.get("Dimensions", [])
                            ],
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
        name = p.get("AlarmName") or resource_name
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
            metric_data_queries=queries,
            datapoints_to_alarm=p.get("DatapointsToAlarm"),
            unit=p.get("Unit"),
            actions_enabled=str(p.get("ActionsEnabled", True)).lower() == "true",
            treat_missing_data=p.get("TreatMissingData"),
        )
        return cls(name, {"Arn": alarm.alarm_arn})


def _autoscaling(account_id: str, region_name: str) -> Any:
    from moto.applicationautoscaling.models import applicationautoscaling_backends

    return applicationautoscaling_backends[account_id][region_name]


class ScalableTargetResource(_Resource):
    """AWS::ApplicationAutoScaling::ScalableTarget (Ref is resource|dimension|namespace, as in AWS)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApplicationAutoScaling::ScalableTarget"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ScalableTargetResource:
        p = _props(cloudformation_json)
        _autoscaling(account_id, region_name).register_scalable_target(
            namespace=p["ServiceNamespace"],
            r_id=p["ResourceId"],
            dimension=p["ScalableDimension"],
            min_capacity=int(p["MinCapacity"]),
            max_capacity=int(p["MaxCapacity"]),
            role_arn=p.get("RoleARN", ""),
            suspended_state=p.get("SuspendedState", {}),
        )
        return cls(f"{p['ResourceId']}|{p['ScalableDimension']}|{p['ServiceNamespace']}")


class ScalingPolicyResource(_Resource):
    """AWS::ApplicationAutoScaling::ScalingPolicy."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApplicationAutoScaling::ScalingPolicy"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ScalingPolicyResource:
        p = _props(cloudformation_json)
        if "ScalingTargetId" in p:
            resource_id, dimension, namespace = p["ScalingTargetId"].split("|")
        else:
            resource_id, dimension, namespace = p["ResourceId"], p["ScalableDimension"], p["ServiceNamespace"]
        policy_type = p["PolicyType"]
        body = p.get("TargetTrackingScalingPolicyConfiguration") or p.get("StepScalingPolicyConfiguration")
        policy = _autoscaling(account_id, region_name).put_scaling_policy(
            policy_name=p["PolicyName"],
            service_namespace=namespace,
            resource_id=resource_id,
            scalable_dimension=dimension,
            policy_body=body,
            policy_type=policy_type,
        )
        return cls(policy.policy_arn)


class ScheduleResource(_Resource):
    """AWS::Scheduler::Schedule."""

    ATTRIBUTES: ClassVar[dict[str, str]] = {"Arn": ""}

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Scheduler::Schedule"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ScheduleResource:
        from moto.scheduler.models import scheduler_backends

        p = _props(cloudformation_json)
        name = p.get("Name") or resource_name
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
        return cls(name, {"Arn": schedule.arn})


class BucketPolicyResource(_Resource):
    """AWS::S3::BucketPolicy (stored; moto's server does not enforce policies unless auth is on)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3::BucketPolicy"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> BucketPolicyResource:
        from moto.s3.models import s3_backends

        p = _props(cloudformation_json)
        s3_backends[account_id]["aws"].put_bucket_policy(
            p["Bucket"], json.dumps(p["PolicyDocument"]).encode()
        )
        return cls(p["Bucket"])


class TopicPolicyResource(_Resource):
    """AWS::SNS::TopicPolicy."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::TopicPolicy"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> TopicPolicyResource:
        from moto.sns.models import sns_backends

        p = _props(cloudformation_json)
        for topic in p["Topics"]:
            sns_backends[account_id][region_name].set_topic_attribute(
                topic, "Policy", json.dumps(p["PolicyDocument"])
            )
        return cls(resource_name)


class SubscriptionResource(_Resource):
    """AWS::SNS::Subscription."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::Subscription"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SubscriptionResource:
        from moto.sns.models import sns_backends

        p = _props(cloudformation_json)
        subscription = sns_backends[account_id][region_name].subscribe(
            p["TopicArn"], p["Endpoint"], p["Protocol"]
        )
        return cls(subscription.arn)


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the shape moto's S3 API parser produces."""
    out: dict[str, Any] = {
        "ID": rule.get("Id"),
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": rule["ExpirationInDays"]}
    if "NoncurrentVersionExpiration" in rule:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
        }
    if "NoncurrentVersionTransitions" in rule:
        out["NoncurrentVersionTransition"] = [
            {"NoncurrentDays": t["TransitionInDays"], "StorageClass": t["StorageClass"]}
            for t in rule["NoncurrentVersionTransitions"]
        ]
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
    return out


def _bucket_configuration() -> None:
    """moto's CloudFormation bucket applies only encryption and tags: apply the rest through the S3 backend.

    Versioning, public access block, lifecycle rules and access logging, each as the S3 API would.
    """
    from moto.s3.models import FakeBucket, s3_backends

    original = FakeBucket.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(
        cls: type[Any],
        /,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        bucket = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        backend = s3_backends[account_id]["aws"]
        props = _props(cloudformation_json)
        status = props.get("VersioningConfiguration", {}).get("Status")
        if status:
            backend.put_bucket_versioning(bucket.name, status)
        if "PublicAccessBlockConfiguration" in props:
            block = {k: str(v).lower() for k, v in props["PublicAccessBlockConfiguration"].items()}
            backend.put_public_access_block(bucket.name, block)
        rules = props.get("LifecycleConfiguration", {}).get("Rules")
        if rules:
            backend.put_bucket_lifecycle(bucket.name, [_lifecycle_rule(rule) for rule in rules])
        logging = props.get("LoggingConfiguration")
        if logging:
            target = {"TargetBucket": logging["DestinationBucketName"]}
            if "LogFilePrefix" in logging:
                target["TargetPrefix"] = logging["LogFilePrefix"]
            if target["TargetBucket"] not in backend.buckets:
                raise ValueError(
                    f"bucket {bucket.name}: access-log target {target['TargetBucket']} does not exist"
                )
            # Not put_bucket_logging: moto checks the target's policy at once, but the template creates
            # that policy after the buckets it names (it refers to their ARNs), as CloudFormation allows.
            bucket.logging = target
        return bucket

    setattr(FakeBucket, "create_from_cloudformation_json", classmethod(create))  # noqa: B010


def _conditional_statements_neutral() -> None:
    """moto evaluates bucket policies ignoring Conditions, so a TLS-only Deny denies every request.

    It cannot evaluate the conditions (aws:SecureTransport and the like) at all, so here a statement
    with a Condition neither allows nor denies; the stored policy is left exactly as deployed.
    """
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        document = json.loads(self.policy.decode())
        statements = document.get("Statement", [])
        if isinstance(statements, dict):
            statements = [statements]
        kept = [statement for statement in statements if "Condition" not in statement]
        if not kept:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({**document, "Statement": kept})).is_action_permitted(action, resource)

    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]


def _kms_key_template_shapes() -> None:
    """moto's CloudFormation key passes template Tags ({Key, Value}); its backend wants TagKey/TagValue."""
    from moto.kms.models import Key

    original = Key.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(
        cls: type[Any],
        /,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        props = dict(_props(cloudformation_json))
        props["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in props.get("Tags", [])]
        if isinstance(props.get("KeyPolicy"), dict):
            props["KeyPolicy"] = json.dumps(props["KeyPolicy"])
        key = original(
            cls, resource_name, {**cloudformation_json, "Properties": props}, account_id, region_name
        )
        return key

    setattr(Key, "create_from_cloudformation_json", classmethod(create))  # noqa: B010


def _change_sets_export_outputs() -> None:
    """moto's ExecuteChangeSet creates resources but never evaluates Outputs, so exports are missing.

    `cdk deploy` always deploys through change sets and passes cross-stack values as exports.
    """
    from moto.cloudformation.models import CloudFormationBackend, Stack, cloudformation_backends

    # A stack made by CreateChangeSet gets no view of the region's exports, so Fn::ImportValue fails.
    stack_init = Stack.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("cross_stack_resources") is None:
            backend = cloudformation_backends[kwargs["account_id"]][kwargs["region_name"]]
            kwargs["cross_stack_resources"] = backend.exports
        stack_init(self, *args, **kwargs)

    Stack.__init__ = init  # type: ignore[method-assign]
    original = CloudFormationBackend.execute_change_set

    def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        original(self, change_set_name, stack_name)
        change_set = self.change_sets.get(change_set_name) or next(
            cs for cs in self.change_sets.values() if cs.change_set_name == change_set_name
        )
        stack = self.stacks[change_set.stack_id]
        stack._parse_template()
        stack.output_map = stack._create_output_map()
        self._validate_export_uniqueness(stack)
        for export in stack.exports:
            self.exports[export.name] = export

    CloudFormationBackend.execute_change_set = execute_change_set  # type: ignore[method-assign]


def _sagemaker_names_from_template() -> None:
    """moto's CloudFormation ignores EndpointName, EndpointConfigName and ModelName and makes up names."""
    from moto.sagemaker import models

    for cls, prop in (
        (models.FakeEndpoint, "EndpointName"),
        (models.FakeEndpointConfig, "EndpointConfigName"),
        (models.Model, "ModelName"),
    ):
        setattr(cls, "cloudformation_name_type", staticmethod(lambda prop=prop: prop))  # noqa: B010


def register() -> list[str]:
    """Make moto's CloudFormation know the handlers; return the resource types added."""
    from moto.cloudformation import parsing

    _bucket_configuration()
    _conditional_statements_neutral()
    _kms_key_template_shapes()
    _change_sets_export_outputs()
    _sagemaker_names_from_template()
    # moto lists only CloudFormationModel's direct subclasses, and caches the map at first use.
    builtin = parsing.get_model_list
    parsing.get_model_list = functools.lru_cache(lambda: [*builtin(), *_HANDLERS])
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()
    return [handler.cloudformation_type() for handler in _HANDLERS]
