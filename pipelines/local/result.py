"""What a local run returns, or raises when it fails."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class LocalRunError(RuntimeError):
    """The local run failed; carries the failing step and its reason."""

    def __init__(
        self, message: str, *, step: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.step = step
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        """The failure as a JSON-ready dict."""
        return {"status": "Failed", "failed_step": self.step, "reason": str(self), **self.details}


@dataclass
class LocalRunResult:
    """What a local run produced."""

    status: str
    execution: str
    dataset: str
    dataset_version: str
    git_commit: str
    steps: list[dict[str, Any]]
    evaluation: dict[str, Any]
    model_data_url: str
    evaluation_uri: str
    model_package_arn: str
    reused: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return dict(self.__dict__)

    def summary(self) -> str:
        """A few human lines."""
        m = self.evaluation
        return (
            f"{self.status}: {self.model_package_arn}{' (reused)' if self.reused else ''}\n"
            f"  rmse {m['regression_metrics']['rmse']['value']:.4f} "
            f"(rating baseline {m['baselines']['rating']['rmse']:.4f}), "
            f"hit_rate@10 {m['ranking_metrics']['hit_rate_at_10']['value']:.4f} "
            f"(popularity {m['baselines']['popularity']['hit_rate_at_10']:.4f})"
        )


def describe_json(result: LocalRunResult) -> str:
    """The result as one line of JSON."""
    return json.dumps(result.as_dict(), sort_keys=True, default=str)
