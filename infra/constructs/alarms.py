"""CloudWatch alarms whose actions notify an SNS topic: the endpoint's and the pipeline's."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.settings import AlarmSettings

VARIANT_NAME = "AllTraffic"


@dataclass(frozen=True)
class AlarmNames:
    """Alarm names are fixed by the environment, so the Serving stack can name its rollback alarms."""

    prefix: str

    @property
    def errors_5xx(self) -> str:
        """Endpoint 5xx errors."""
        return f"{self.prefix}-endpoint-5xx"

    @property
    def latency_p99(self) -> str:
        """Endpoint p99 model latency."""
        return f"{self.prefix}-endpoint-p99-latency"

    @property
    def rate_4xx(self) -> str:
        """Endpoint 4xx rate."""
        return f"{self.prefix}-endpoint-4xx-rate"

    @property
    def no_invocations(self) -> str:
        """Invocations dropping to (or under) the floor."""
        return f"{self.prefix}-endpoint-invocations-low"

    @property
    def cpu(self) -> str:
        """Endpoint CPU."""
        return f"{self.prefix}-endpoint-cpu"

    @property
    def memory(self) -> str:
        """Endpoint memory."""
        return f"{self.prefix}-endpoint-memory"

    @property
    def pipeline_failed(self) -> str:
        """Pipeline execution failed."""
        return f"{self.prefix}-pipeline-failed"


def _endpoint_metric(
    name: str, endpoint: str, *, namespace: str = "AWS/SageMaker", statistic: str = "Sum", minutes: int = 1
) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=namespace,
        metric_name=name,
        dimensions_map={"EndpointName": endpoint, "VariantName": VARIANT_NAME},
        statistic=statistic,
        period=Duration.minutes(minutes),
    )


class MonitoringAlarms(Construct):
    """Every alarm of one environment, each with its action on the topic enabled."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: AlarmNames,
        thresholds: AlarmSettings,
        endpoint_name: str,
        pipeline_name: str,
        topic: sns.ITopic,
    ) -> None:
        """Create the alarms; `self.alarms` keeps them in dashboard order."""
        super().__init__(scope, construct_id)
        invocations = _endpoint_metric("Invocations", endpoint_name)
        errors_4xx = _endpoint_metric("Invocation4XXErrors", endpoint_name)
        specs: list[tuple[str, str, cloudwatch.IMetric, float, cloudwatch.ComparisonOperator, str]] = [
            (
                names.errors_5xx,
                "Endpoint answered 5xx errors: the canary rolls back on this alarm.",
                _endpoint_metric("Invocation5XXErrors", endpoint_name),
                thresholds.error_5xx_count,
                cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                "notBreaching",
            ),
            (
                names.latency_p99,
                "Endpoint p99 model latency above the threshold: the canary rolls back on this alarm.",
                # ModelLatency is in microseconds.
                _endpoint_metric("ModelLatency", endpoint_name, statistic="p99"),
                thresholds.p99_latency_ms * 1000,
                cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                "notBreaching",
            ),
            (
                names.rate_4xx,
                "Share of requests answered 4xx (percent) above the threshold: clients send bad input.",
                cloudwatch.MathExpression(
                    expression="IF(inv > 0, 100 * e4 / inv, 0)",
                    using_metrics={"e4": errors_4xx, "inv": invocations},
                    period=Duration.minutes(5),
                    label="4xx rate (%)",
                ),
                thresholds.error_4xx_rate_percent,
                cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                "notBreaching",
            ),
            (
                names.no_invocations,
                "Invocations in an hour dropped to the floor: traffic stopped reaching the endpoint.",
                _endpoint_metric("Invocations", endpoint_name, minutes=60),
                thresholds.min_invocations_per_hour,
                cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
                # No datapoint means no traffic at all, which is exactly what this alarm is for.
                "breaching",
            ),
            (
                names.cpu,
                "Endpoint CPU utilization (percent of one core, summed over cores) above the threshold.",
                _endpoint_metric(
                    "CPUUtilization",
                    endpoint_name,
                    namespace="/aws/sagemaker/Endpoints",
                    statistic="Average",
                    minutes=5,
                ),
                thresholds.cpu_percent,
                cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                "notBreaching",
            ),
            (
                names.memory,
                "Endpoint memory utilization (percent) above the threshold.",
                _endpoint_metric(
                    "MemoryUtilization",
                    endpoint_name,
                    namespace="/aws/sagemaker/Endpoints",
                    statistic="Average",
                    minutes=5,
                ),
                thresholds.memory_percent,
                cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                "notBreaching",
            ),
            (
                names.pipeline_failed,
                "A training pipeline execution failed.",
                cloudwatch.Metric(
                    namespace="AWS/Sagemaker/ModelBuildingPipeline",
                    metric_name="ExecutionFailed",
                    dimensions_map={"PipelineName": pipeline_name},
                    statistic="Sum",
                    period=Duration.minutes(5),
                ),
                1,
                cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                "notBreaching",
            ),
        ]
        self.alarms: list[cloudwatch.Alarm] = []
        action = actions.SnsAction(topic)
        for alarm_name, description, metric, threshold, operator, missing in specs:
            alarm = cloudwatch.Alarm(
                self,
                alarm_name.removeprefix(f"{names.prefix}-"),
                alarm_name=alarm_name,
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                comparison_operator=operator,
                evaluation_periods=1,
                treat_missing_data=_missing(missing),
                actions_enabled=True,
            )
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            self.alarms.append(alarm)


def _missing(value: str) -> cloudwatch.TreatMissingData:
    return {
        "breaching": cloudwatch.TreatMissingData.BREACHING,
        "notBreaching": cloudwatch.TreatMissingData.NOT_BREACHING,
    }[value]
