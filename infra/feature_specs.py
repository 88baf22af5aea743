"""Feature group specs from the one feature definition, through the features room's SageMaker exporter."""

from __future__ import annotations

from features.sagemaker import feature_group_specs as exported_specs
from infra.constructs.feature_group import FeatureGroupSpec


def feature_group_specs() -> list[FeatureGroupSpec]:
    """One spec per feature view of `features.definition`, exactly as `features.sagemaker` exports it."""
    return [
        FeatureGroupSpec(
            name=spec["FeatureGroupName"],
            record_identifier=spec["RecordIdentifierFeatureName"],
            event_time=spec["EventTimeFeatureName"],
            features=[
                {"FeatureName": f["FeatureName"], "FeatureType": f["FeatureType"]}
                for f in spec["FeatureDefinitions"]
            ],
            description=spec["Description"],
        )
        for spec in exported_specs()
    ]
