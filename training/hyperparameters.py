"""The recommender's hyperparameters: one typed, validated object, parsed from SageMaker's strings."""

from __future__ import annotations

import json
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class HyperparameterError(ValueError):
    """A hyperparameter is unknown or has a bad value; the message names it and says what is allowed."""


class Hyperparameters(BaseModel):
    """Everything that shapes a training run.

    Two towers share no parameter: the rating tower (embedding_dim, l2_*, implicit*) and the ranking
    tower (ranking_*), trained jointly; docs/model.md has the measured figures.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(
        default=42, ge=0, description="Seed of the initial weights, the shuffles and the id dropout."
    )
    epochs: int = Field(default=6, ge=1, le=1000, description="Epochs of the full training set.")
    batch_size: int = Field(default=1024, ge=1, le=1_048_576, description="Ratings per gradient step.")
    learning_rate: float = Field(default=3e-3, gt=0.0, le=1.0, description="Adam's peak learning rate.")
    lr_decay: bool = Field(default=True, description="Cosine-decay the learning rate to 5% over the run.")
    embedding_dim: int = Field(default=32, ge=1, le=1024, description="Size of user and movie vectors.")
    l2_embedding: float = Field(default=0.15, ge=0.0, description="L2 on the id vectors in each batch.")
    l2_bias: float = Field(default=0.005, ge=0.0, description="L2 on the id biases in each batch.")
    l2_feature: float = Field(
        default=1e-4, ge=0.0, description="L2 on the feature weights (user and movie side)."
    )
    implicit: bool = Field(default=True, description="SVD++-like term: a user is also the movies they rated.")
    implicit_half_life: float = Field(
        default=0.0,
        ge=0.0,
        description="The implicit term halves a rating's weight every this many ratings back (0: equal).",
    )
    ranking_weight: float = Field(
        default=1.0,
        ge=0.0,
        description="Weight of the ranking tower's loss (softmax over the catalog) beside the rating MSE "
        "(0: no ranking tower; top-K then ranks by the rating score).",
    )
    ranking_dim: int = Field(default=32, ge=1, le=1024, description="Size of the ranking tower's vectors.")
    ranking_half_life: float = Field(
        default=10.0,
        ge=0.0,
        description="The ranking tower's user history halves a rating's weight every this many ratings "
        "back (0: equal).",
    )
    ranking_l2: float = Field(
        default=1e-3, ge=0.0, description="L2 on the ranking tower's user id vectors in each batch."
    )
    ranking_temperature: float = Field(
        default=0.05, gt=0.0, le=10.0, description="The ranking loss's softmax reads score / temperature."
    )
    id_dropout: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="Fraction of examples trained without the user's id part, so features alone work.",
    )
    early_stopping_patience: int = Field(
        default=3,
        ge=0,
        description="Stop after this many epochs without a better validation RMSE (0: never).",
    )
    dataset: str = Field(
        default="ml-100k", min_length=1, description="Dataset name, for metadata and lineage."
    )
    dataset_version: str = Field(
        default="unversioned",
        min_length=1,
        description="Dataset version (DVC hash), for metadata and lineage.",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, data: Any) -> Any:
        # pydantic's own extra="forbid" error names the key but not the valid ones.
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                raise ValueError(
                    f"unknown hyperparameter(s) {', '.join(repr(k) for k in unknown)}; "
                    f"valid names: {', '.join(cls.allowed_keys())}"
                )
        return data

    @classmethod
    def allowed_keys(cls) -> list[str]:
        """The hyperparameter names this model accepts."""
        return sorted(cls.model_fields)

    @classmethod
    def from_sagemaker(cls, raw: dict[str, Any]) -> Self:
        """Parse SageMaker's hyperparameters.json values (strings, maybe JSON-quoted) into checked values."""
        allowed = cls.allowed_keys()
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise HyperparameterError(
                f"unknown hyperparameter(s) {', '.join(repr(k) for k in unknown)} in hyperparameters.json; "
                f"allowed: {', '.join(allowed)}"
            )
        values: dict[str, Any] = {}
        for key, value in raw.items():
            values[key] = _unquote(value) if isinstance(value, str) else value
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                key = ".".join(str(p) for p in err["loc"]) or "?"
                problems.append(f"{key}={raw.get(key)!r}: {err['msg']}")
            raise HyperparameterError(
                "bad hyperparameter value(s) in hyperparameters.json: "
                + "; ".join(problems)
                + ". Fix the value in the training job's hyperparameters."
            ) from None

    def to_sagemaker(self) -> dict[str, str]:
        """The SageMaker form (every value a string) that `from_sagemaker` reads back."""
        return {k: json.dumps(v) if isinstance(v, bool) else str(v) for k, v in self.model_dump().items()}


def _unquote(value: str) -> str:
    # Some SageMaker SDKs JSON-encode every value ('"20"'); accept both forms.
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError:
            return text
        return decoded if isinstance(decoded, str) else text
    return text
