"""The feature definition as SageMaker Feature Store feature groups, in plain dicts.

The CDK side (`CfnFeatureGroup`) and boto3 (`create_feature_group`, `put_record`) take these
as they are. Standard library only: `.venv-cdk`, which has no Feast or pandas, imports this module.

Event time: SageMaker wants a Fractional or an ISO-8601 String feature; we use Fractional (Unix
seconds, UTC), the same instant Feast stores in the view's `event_timestamp` column.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from datetime import datetime
from typing import Final, TypedDict

from features.definition import FEATURE_VIEWS, FeatureView, entity

SAGEMAKER_TYPES: Final[dict[str, str]] = {"int64": "Integral", "float64": "Fractional", "string": "String"}
EVENT_TIME_TYPE: Final = "Fractional"


class FeatureDefinition(TypedDict):
    """One SageMaker FeatureDefinition."""

    FeatureName: str
    FeatureType: str


class FeatureGroupSpec(TypedDict):
    """What `CfnFeatureGroup` / `create_feature_group` need from the definition."""

    FeatureGroupName: str
    Description: str
    RecordIdentifierFeatureName: str
    EventTimeFeatureName: str
    FeatureDefinitions: list[FeatureDefinition]


class RecordValue(TypedDict):
    """One value of a `put_record` Record."""

    FeatureName: str
    ValueAsString: str


def feature_definitions(view: FeatureView) -> list[FeatureDefinition]:
    """The view's FeatureDefinitions: record identifier, event time, then the features in order."""
    key = entity(view.entity)
    out: list[FeatureDefinition] = [
        {"FeatureName": view.join_key, "FeatureType": SAGEMAKER_TYPES[key.dtype]},
        {"FeatureName": view.event_time_column, "FeatureType": EVENT_TIME_TYPE},
    ]
    out.extend({"FeatureName": f.name, "FeatureType": SAGEMAKER_TYPES[f.dtype]} for f in view.features)
    return out


def feature_group_spec(view: FeatureView) -> FeatureGroupSpec:
    """The feature group for one view; the CDK prefixes `FeatureGroupName` per environment."""
    return {
        "FeatureGroupName": view.name,
        # CreateFeatureGroup caps descriptions at 128 characters.
        "Description": view.description[:128],
        "RecordIdentifierFeatureName": view.join_key,
        "EventTimeFeatureName": view.event_time_column,
        "FeatureDefinitions": feature_definitions(view),
    }


def feature_group_specs() -> list[FeatureGroupSpec]:
    """One feature group per feature view of the definition."""
    return [feature_group_spec(v) for v in FEATURE_VIEWS]


def _is_null(value: object) -> bool:
    """None, NaN, pandas' NA and NaT: the values SageMaker stores by leaving the feature out."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    # pandas' missing markers, recognised by type name because this module must not import pandas.
    return type(value).__name__ in {"NAType", "NaTType"}


def _event_time(value: object, view: FeatureView) -> str:
    """Unix seconds of an event time given as a timezone-aware datetime or a number."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(
                f"{view.name}.{view.event_time_column} = {value!r} has no time zone; event times are UTC"
            )
        return repr(value.timestamp())
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return repr(float(value))
    raise TypeError(
        f"{view.name}.{view.event_time_column} = {value!r} ({type(value).__name__}) is neither a datetime "
        "nor Unix seconds"
    )


def _as_string(name: str, dtype: str, value: object, view: FeatureView) -> str:
    """Format one value for ValueAsString, refusing values that do not fit the declared type."""
    if dtype == "int64" and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    if dtype == "float64" and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return repr(float(value))
    if dtype == "string" and isinstance(value, str):
        return value
    raise TypeError(
        f"{view.name}.{name} is declared {dtype} but got {value!r} ({type(value).__name__}); "
        "compute features with features.compute, which follows the definition"
    )


def to_record(view: FeatureView, row: Mapping[str, object]) -> list[RecordValue]:
    """A `put_record` Record for one feature row; null features are left out, as SageMaker expects."""
    expected = [view.join_key, view.event_time_column, *view.feature_names]
    missing = [n for n in expected if n not in row]
    extra = [n for n in row if n not in expected]
    if missing or extra:
        raise ValueError(
            f"row for feature group {view.name!r}: missing {missing}, unexpected {extra}; "
            f"a row has exactly {expected}"
        )
    key = row[view.join_key]
    if _is_null(key):
        raise ValueError(f"row for feature group {view.name!r} has no {view.join_key}")
    record: list[RecordValue] = [
        {
            "FeatureName": view.join_key,
            "ValueAsString": _as_string(view.join_key, entity(view.entity).dtype, key, view),
        },
        {
            "FeatureName": view.event_time_column,
            "ValueAsString": _event_time(row[view.event_time_column], view),
        },
    ]
    for f in view.features:
        value = row[f.name]
        if not _is_null(value):
            record.append({"FeatureName": f.name, "ValueAsString": _as_string(f.name, f.dtype, value, view)})
    return record
