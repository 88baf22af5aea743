"""The MovieLens datasets we support, by name: standard library only, so settings and the CDK share it."""

from __future__ import annotations

from enum import StrEnum


class DatasetName(StrEnum):
    """A supported dataset; every place that accepts a dataset name validates against this."""

    ML_100K = "ml-100k"
    ML_1M = "ml-1m"

    @classmethod
    def values(cls) -> list[str]:
        """The names as plain strings, in declaration order."""
        return [member.value for member in cls]
