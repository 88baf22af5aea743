"""The SageMaker training contract: every `/opt/ml` path and config file, behind one typed object."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# Keys of hyperparameters.json that configure the container, not the model; the entry point takes
# them out before the model's own parser (which rejects keys it does not know) sees the rest.
CONTAINER_KEYS = ("mlflow_tracking_uri", "mlflow_experiment", "mlflow_timeout_seconds")


class ContractError(ValueError):
    """A file of the training contract is missing or malformed; the message names it and the fix."""


@dataclass(frozen=True)
class ResourceConfig:
    """`resourceconfig.json`: which host this container is and which hosts take part."""

    current_host: str
    hosts: tuple[str, ...]

    @property
    def is_distributed(self) -> bool:
        """True when the job runs on more than one instance."""
        return len(self.hosts) > 1

    @property
    def worker_index(self) -> int:
        """This host's position in `hosts`; index 0 is the chief."""
        return self.hosts.index(self.current_host)

    @property
    def is_chief(self) -> bool:
        """The chief writes the model, the checkpoints and the MLflow run; the others do not."""
        return self.worker_index == 0


@dataclass(frozen=True)
class SageMakerEnv:
    """The container's view of SageMaker: `/opt/ml` in a job, any directory laid out alike in tests."""

    root: Path

    @classmethod
    def from_root(cls, root: Path) -> SageMakerEnv:
        """The contract rooted at `root` (`/opt/ml` in a real container)."""
        return cls(root=Path(root))

    @property
    def input_data_dir(self) -> Path:
        """Parent of the channels, one directory per channel."""
        return self.root / "input" / "data"

    @property
    def config_dir(self) -> Path:
        """Where SageMaker writes hyperparameters.json, resourceconfig.json, inputdataconfig.json."""
        return self.root / "input" / "config"

    @property
    def hyperparameters_path(self) -> Path:
        """SageMaker's hyperparameters, every value a string."""
        return self.config_dir / "hyperparameters.json"

    @property
    def resource_config_path(self) -> Path:
        """Which host this is and which hosts take part."""
        return self.config_dir / "resourceconfig.json"

    @property
    def model_dir(self) -> Path:
        """Where the model goes; SageMaker uploads it as model.tar.gz."""
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        """Holds `failure`; SageMaker uploads `output/data` as output.tar.gz."""
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        """Extra outputs, uploaded beside the model as output.tar.gz."""
        return self.output_dir / "data"

    @property
    def failure_path(self) -> Path:
        """The failure reason; SageMaker shows its text as the job's FailureReason."""
        return self.output_dir / "failure"

    @property
    def checkpoints_dir(self) -> Path:
        """Synced to S3 by SageMaker (managed spot training) and restored when a job restarts."""
        return self.root / "checkpoints"

    def channel(self, name: str) -> Path:
        """One input channel's directory; a clear error when the job was started without it."""
        path = self.input_data_dir / name
        if not path.is_dir():
            present = (
                sorted(p.name for p in self.input_data_dir.iterdir()) if self.input_data_dir.is_dir() else []
            )
            raise ContractError(
                f"input channel {name!r} is missing: {path} does not exist (channels present: "
                f"{', '.join(present) or 'none'}). Start the training job with a {name!r} channel."
            )
        return path

    def read_hyperparameters(self) -> dict[str, str]:
        """hyperparameters.json as a dict of strings; absent means none were given."""
        path = self.hyperparameters_path
        if not path.exists():
            return {}
        raw = _read_json_object(path)
        bad = {k: v for k, v in raw.items() if not isinstance(v, str | int | float | bool)}
        if bad:
            key = next(iter(bad))
            raise ContractError(
                f"hyperparameter {key!r} in {path} is {bad[key]!r}; hyperparameter values must be "
                "strings (SageMaker's form) or plain numbers. Pass it as a string."
            )
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}

    def read_resource_config(self) -> ResourceConfig:
        """resourceconfig.json; a single host named `algo-1` when the file is absent."""
        path = self.resource_config_path
        if not path.exists():
            return ResourceConfig(current_host="algo-1", hosts=("algo-1",))
        raw = _read_json_object(path)
        current, hosts = raw.get("current_host"), raw.get("hosts")
        if (
            not isinstance(current, str)
            or not isinstance(hosts, list)
            or not all(isinstance(h, str) for h in hosts)
        ):
            raise ContractError(
                f"{path} must hold 'current_host' (a string) and 'hosts' (a list of strings); "
                f"got current_host={current!r}, hosts={hosts!r}."
            )
        if current not in hosts:
            raise ContractError(f"current_host {current!r} in {path} is not one of hosts {hosts!r}.")
        return ResourceConfig(current_host=current, hosts=tuple(hosts))

    def write_failure(self, reason: str) -> None:
        """Write the failure reason where SageMaker reads it (first line short and actionable).

        SageMaker shows the start of the file as the job's FailureReason; the rest (a traceback) stays
        in the file for whoever opens the job's output.
        """
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.failure_path.write_text(reason)


def split_container_keys(raw: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split hyperparameters into (the container's own keys, the model's keys)."""
    container = {k: v for k, v in raw.items() if k in CONTAINER_KEYS}
    model = {k: v for k, v in raw.items() if k not in CONTAINER_KEYS}
    return container, model


def _read_json_object(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ContractError(
            f"{path} is not valid JSON ({err}); SageMaker writes a JSON object there."
        ) from err
    if not isinstance(data, dict):
        raise ContractError(f"{path} holds a {type(data).__name__}, not a JSON object.")
    return data
