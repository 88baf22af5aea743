"""Several instances: resourceconfig.json -> TF_CONFIG -> MultiWorkerMirroredStrategy."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from training.contract import ContractError, ResourceConfig

# The port the workers' gRPC servers listen on inside each instance.
DEFAULT_PORT = 2222
# Overrides where each host's worker listens, as `host=address:port,...`: several workers on one
# machine (each on its own port) or a network where host names do not resolve.
WORKERS_ENV = "MLOPS_TF_WORKERS"


def worker_addresses(
    resource: ResourceConfig, port: int = DEFAULT_PORT, overrides: Mapping[str, str] | None = None
) -> list[str]:
    """`address:port` of every host's worker, in the order of `hosts` (the chief first)."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(resource.hosts))
    if unknown:
        raise ContractError(
            f"{WORKERS_ENV} names host(s) {', '.join(unknown)} that are not in resourceconfig.json's "
            f"hosts {list(resource.hosts)}; name only those hosts."
        )
    return [overrides.get(host, f"{host}:{port}") for host in resource.hosts]


def parse_worker_overrides(text: str) -> dict[str, str]:
    """Parse `host=address:port,host=address:port` (the MLOPS_TF_WORKERS format)."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, sep, address = item.partition("=")
        if not sep or not host or ":" not in address:
            raise ContractError(
                f"{WORKERS_ENV} entry {item!r} is not `host=address:port` (e.g. algo-1=127.0.0.1:23456)."
            )
        out[host] = address
    return out


def tf_config(
    resource: ResourceConfig, port: int = DEFAULT_PORT, overrides: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The TF_CONFIG that makes this host a worker of the job's cluster."""
    return {
        "cluster": {"worker": worker_addresses(resource, port, overrides)},
        "task": {"type": "worker", "index": resource.worker_index},
    }


def strategy_for(resource: ResourceConfig, environ: Mapping[str, str] | None = None) -> Any:
    """MultiWorkerMirroredStrategy for several hosts (setting TF_CONFIG); None for one host.

    Must run before any other TensorFlow operation in the process, as TF requires.
    """
    if not resource.is_distributed:
        return None
    environ = os.environ if environ is None else environ
    overrides = parse_worker_overrides(environ.get(WORKERS_ENV, ""))
    os.environ["TF_CONFIG"] = json.dumps(tf_config(resource, DEFAULT_PORT, overrides))
    import tensorflow as tf  # noqa: PLC0415  heavy: loads tensorflow only when called

    return tf.distribute.MultiWorkerMirroredStrategy()


def weights_digest(arrays: Mapping[str, npt.ArrayLike]) -> str:
    """SHA-256 over named arrays (names, dtypes, shapes, bytes): equal on workers that hold equal weights."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(np.asarray(arrays[name]))
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def wait_for_all_workers(strategy: Any, workers: int) -> None:
    """Block until every worker gets here: no worker may end the job while the chief still writes.

    SageMaker local mode stops every container as soon as one exits, and a non-chief worker finishes
    first (it exports nothing and tracks nothing), which would cut the chief off mid-export.
    """
    import tensorflow as tf  # noqa: PLC0415  heavy: loads tensorflow only when called

    arrived = int(strategy.reduce(tf.distribute.ReduceOp.SUM, tf.constant(1), axis=None))
    if arrived != workers:
        raise RuntimeError(
            f"{arrived} worker(s) reached the end of training, expected {workers} (the hosts in "
            "resourceconfig.json): the cluster is not the one the job was started with."
        )
