"""Observability stack: the encrypted topic, every alarm, one dashboard, the registry's Approved rule."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.constructs.alarms import AlarmNames, MonitoringAlarms
from infra.settings import EnvironmentSettings


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
        self.approved_rule.add_target(targets.SnsTopic(self.topic))
