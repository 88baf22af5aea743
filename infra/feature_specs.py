"""Feature group specs from the one feature definition, through the features room's SageMaker exporter."""

from __future__ import annotations

from infra.constructs.feature_group import FeatureGroupSpec


def feature_group_specs() -> list[FeatureGroupSpec]:
    """One spec per feature view of `features.definition`."""
    from features.definition import FEATURE_VIEWS

    types = {"int64": "Integral", "float64": "Fractional", "string": "String"}
    out = []
    for view in FEATURE_VIEWS:
        feats = [{"FeatureName": view.join_key, "FeatureType": "Integral"}]
        feats += [{"FeatureName": f.name, "FeatureType": types[f.dtype]} for f in view.features]
        feats.append({"FeatureName": view.event_time_column, "FeatureType": "String"})
        out.append(
            FeatureGroupSpec(view.name, view.join_key, view.event_time_column, feats, view.description)
        )
    return out
