"""Observability stack: the encrypted topic, every alarm, one dashboard, the registry's Approved rule."""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk.interfaces import aws_events as events_ref
from constructs import Construct

from infra.constructs.alarms import AlarmNames, MonitoringAlarms
from infra.settings import EnvironmentSettings
from infra.stacks.data import alarm_source_conditions


@jsii.implements(events.IRuleTarget)
class TopicTarget:
    """An EventBridge target that sends to `topic` and, unlike CDK's SnsTopic, adds no topic policy."""

    def __init__(self, topic: sns.ITopic) -> None:
        """Target `topic`; the caller grants events.amazonaws.com sns:Publish with its conditions."""
        self.topic = topic

    def bind(self, rule: events_ref.IRuleRef, id: str | None = None) -> events.RuleTargetConfig:
        """The target's configuration: the topic's ARN."""
        return events.RuleTargetConfig(arn=self.topic.topic_arn)


class ObservabilityStack(Stack):
    """Alarms with actions, the dashboard that shows them, and the model-approval notification."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        key: kms.IKey,
        **kwargs: Any,
    ) -> None:
        """Create the topic, alarms, dashboard and the registry rule."""
        super().__init__(scope, construct_id, **kwargs)
        self.topic = sns.Topic(
            self,
            "Notifications",
            topic_name=f"{settings.prefix}-notifications",
            display_name=f"{settings.prefix} alarms and model approvals",
            master_key=key,
            enforce_ssl=True,
        )
        self.topic.add_subscription(subscriptions.EmailSubscription(settings.notification_email))
        # The alarms publish as cloudwatch.amazonaws.com: only this environment's, from this account.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions=alarm_source_conditions(self, settings),
            )
        )
        self.names = AlarmNames(settings.prefix)
        self.alarms = MonitoringAlarms(
            self,
            "Alarms",
            names=self.names,
            thresholds=settings.alarms,
            endpoint_name=settings.endpoint_name,
            pipeline_name=settings.pipeline_name,
            topic=self.topic,
        ).alarms
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{settings.prefix}-overview",
            default_interval=Duration.hours(3),
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="All alarms", alarms=list(self.alarms), width=24, height=4)
        )
        self.dashboard.add_widgets(
            *(
                cloudwatch.AlarmWidget(title=alarm.alarm_name, alarm=alarm, width=8, height=6)
                for alarm in self.alarms
            )
        )
        # Approved only: AWS's own project templates deploy on every state change, which is a known bug.
        self.approved_rule = events.Rule(
            self,
            "ModelApproved",
            rule_name=f"{settings.prefix}-model-approved",
            description="A model package of this project's group was approved: start the promotion path",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Package State Change"],
                detail={
                    "ModelPackageGroupName": [settings.model_package_group_name],
                    "ModelApprovalStatus": ["Approved"],
                },
            ),
        )
        # CDK's SnsTopic target would grant events.amazonaws.com sns:Publish with no conditions; this
        # target grants nothing and the statement below grants it for this rule, in this account, only.
        self.approved_rule.add_target(TopicTarget(self.topic))
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeApprovedRule",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": settings.account},
                    "ArnEquals": {"aws:SourceArn": self.approved_rule.rule_arn},
                },
            )
        )
