"""Serving stack: the model from an approved package, data capture, blue/green canary, autoscaling."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.constructs.alarms import VARIANT_NAME, AlarmNames
from infra.constructs.security_group import https_to_vpc_only
from infra.settings import EnvironmentSettings
from infra.stacks.data import project_bucket


class ServingStack(Stack):
    """The real-time endpoint of one environment."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        key: kms.IKey,
        role_arn: str,
        alarm_names: AlarmNames,
        **kwargs: Any,
    ) -> None:
        """Create model, endpoint config and endpoint; needs settings.model_package_arn."""
        super().__init__(scope, construct_id, **kwargs)
        capture_bucket = project_bucket(self, settings, "capture")
        if settings.model_package_arn is None:
            raise ValueError(
                f"environment {settings.name!r} has no model_package_arn; pass the approved package with "
                "-c model_package_arn=arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>"
            )
        vpc_config = None
        if settings.vpc is not None:
            self.security_group = https_to_vpc_only(
                self,
                "EndpointSecurityGroup",
                vpc=settings.vpc,
                description=f"{settings.prefix} endpoint: no inbound, HTTPS out to VPC endpoints only",
                egress_description="HTTPS to the interface VPC endpoints, inside this VPC only",
            )
            vpc_config = sagemaker.CfnModel.VpcConfigProperty(
                security_group_ids=[self.security_group.attr_group_id], subnets=settings.vpc.subnet_ids
            )
        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                model_package_name=settings.model_package_arn
            ),
            enable_network_isolation=settings.network_isolation,
            vpc_config=vpc_config,
        )
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            kms_key_id=key.key_arn,
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT_NAME,
                    model_name=self.model.attr_model_name,
                    initial_instance_count=settings.endpoint_min_instances,
                    instance_type=settings.endpoint_instance_type,
                    initial_variant_weight=1.0,
                )
            ],
            data_capture_config=sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                enable_capture=settings.data_capture_percent > 0,
                initial_sampling_percentage=settings.data_capture_percent,
                destination_s3_uri=capture_bucket.s3_url_for_object("capture"),
                kms_key_id=key.key_arn,
                capture_options=[
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
                ],
                capture_content_type_header=sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
                    json_content_types=["application/json"]
                ),
            ),
        )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=settings.endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            deployment_config=sagemaker.CfnEndpoint.DeploymentConfigProperty(
                blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
                    traffic_routing_configuration=sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                        type="CANARY",
                        canary_size=sagemaker.CfnEndpoint.CapacitySizeProperty(
                            type="CAPACITY_PERCENT", value=settings.canary_percent
                        ),
                        wait_interval_in_seconds=settings.canary_wait_seconds,
                    ),
                    termination_wait_in_seconds=settings.termination_wait_seconds,
                    maximum_execution_timeout_in_seconds=max(
                        600, 2 * (settings.canary_wait_seconds + settings.termination_wait_seconds) + 1800
                    ),
                ),
                auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                    alarms=[
                        sagemaker.CfnEndpoint.AlarmProperty(alarm_name=alarm_names.errors_5xx),
                        sagemaker.CfnEndpoint.AlarmProperty(alarm_name=alarm_names.latency_p99),
                    ]
                ),
            ),
        )
        self.scalable_target = autoscaling.CfnScalableTarget(
            self,
            "ScalableTarget",
            service_namespace="sagemaker",
            resource_id=f"endpoint/{settings.endpoint_name}/variant/{VARIANT_NAME}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=settings.endpoint_min_instances,
            max_capacity=settings.endpoint_max_instances,
        )
        self.scalable_target.add_dependency(self.endpoint)
        self.scaling_policy = autoscaling.CfnScalingPolicy(
            self,
            "InvocationsScaling",
            policy_name=f"{settings.prefix}-invocations-per-instance",
            policy_type="TargetTrackingScaling",
            scaling_target_id=self.scalable_target.ref,
            target_tracking_scaling_policy_configuration=autoscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
                target_value=settings.invocations_per_instance_target,
                predefined_metric_specification=autoscaling.CfnScalingPolicy.PredefinedMetricSpecificationProperty(
                    predefined_metric_type="SageMakerVariantInvocationsPerInstance"
                ),
                scale_in_cooldown=300,
                scale_out_cooldown=60,
            ),
        )
