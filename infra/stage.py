"""One Stage per environment: Data -> Features -> ML platform -> Observability -> Serving."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from infra.constructs.feature_group import FeatureGroupSpec
from infra.pipeline_body import role_arn
from infra.settings import EnvironmentSettings
from infra.stacks.data import DataStack
from infra.stacks.features import FeaturesStack
from infra.stacks.ml_platform import MlPlatformStack
from infra.stacks.observability import ObservabilityStack
from infra.stacks.serving import ServingStack


class EnvironmentStage(cdk.Stage):
    """Every stack of one environment; Serving only when an approved model package ARN is known."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        feature_specs: list[FeatureGroupSpec] | None = None,
        **kwargs: Any,
    ) -> None:
        """Create the stacks of `settings`' environment."""
        env = cdk.Environment(account=settings.account, region=settings.region)
        super().__init__(scope, construct_id, env=env, **kwargs)
        self.settings = settings
        tags = {"project": settings.project, "environment": settings.name}
        self.data = DataStack(self, "Data", settings=settings, stack_name=f"{settings.prefix}-data")
        self.features = FeaturesStack(
            self,
            "Features",
            settings=settings,
            key=self.data.key,
            specs=feature_specs,
            stack_name=f"{settings.prefix}-features",
        )
        self.ml_platform = MlPlatformStack(
            self,
            "MlPlatform",
            settings=settings,
            key=self.data.key,
            stack_name=f"{settings.prefix}-ml-platform",
        )
        self.observability = ObservabilityStack(
            self,
            "Observability",
            settings=settings,
            key=self.data.key,
            stack_name=f"{settings.prefix}-observability",
        )
        self.serving: ServingStack | None = None
        if settings.model_package_arn is not None:
            self.serving = ServingStack(
                self,
                "Serving",
                settings=settings,
                key=self.data.key,
                # By its fixed ARN, not a cross-stack token, so Serving deploys without updating MlPlatform.
                role_arn=role_arn(settings, "model"),
                alarm_names=self.observability.names,
                stack_name=f"{settings.prefix}-serving",
            )
            # The rollback alarms are referred to by name, so the dependency must be stated.
            self.serving.add_dependency(self.observability)
            self.serving.add_dependency(self.ml_platform)
        # Buckets are referred to by name (see project_bucket), so these dependencies must be stated too.
        self.features.add_dependency(self.data)
        self.ml_platform.add_dependency(self.data)
        for stack in self.stacks:
            for key, value in tags.items():
                cdk.Tags.of(stack).add(key, value)

    @property
    def stacks(self) -> list[cdk.Stack]:
        """The stage's stacks in deploy order."""
        out: list[cdk.Stack] = [self.data, self.features, self.ml_platform, self.observability]
        if self.serving is not None:
            out.append(self.serving)
        return out
