"""Step logic without containers: splits, drift statistics, NumPy scoring, ranking, registry request."""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import registry
from pipelines.steps import evaluate, prepare
from training.channels import SplitPolicy, split_ratings


def _ratings(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": rng.integers(1, 50, n).astype(np.int32),
            "movie_id": rng.integers(1, 80, n).astype(np.int32),
            "rating": rng.integers(1, 6, n).astype(np.float32),
            "timestamp": rng.integers(874_000_000, 893_000_000, n).astype(np.int64),
        }
    )


def test_split_is_a_seeded_partition() -> None:
    ratings = _ratings()
    splits = split_ratings(ratings, SplitPolicy.RANDOM_80_10_10, seed=7)
    assert {k: len(v) for k, v in splits.items()} == {"train": 800, "validation": 100, "test": 100}
    together = pd.concat(splits.values()).sort_values(list(ratings.columns)).reset_index(drop=True)
    pd.testing.assert_frame_equal(together, ratings.sort_values(list(ratings.columns)).reset_index(drop=True))
    again = split_ratings(ratings, SplitPolicy.RANDOM_80_10_10, seed=7)
    pd.testing.assert_frame_equal(again["test"], splits["test"])
    assert not split_ratings(ratings, SplitPolicy.RANDOM_80_10_10, seed=8)["test"].equals(splits["test"])


def test_baseline_statistics_cover_numeric_columns() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0], "name": ["a", "b", "c", "d"]})
    stats = prepare.baseline_statistics({"t": frame})["t"]
    assert stats["rows"] == 4 and set(stats["columns"]) == {"x"}
    x = stats["columns"]["x"]
    assert x["nulls"] == 1 and x["count"] == 4
    assert x["quantiles"]["0.5"] == 2.0 and sum(x["histogram"]["counts"]) == 3
    assert json.dumps(stats)  # JSON-ready


def _model_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    d, f = 3, 2
    towers = {
        "movie_ids": np.array([10, 20, 30, 40], dtype=np.int64),
        "movie_vectors": rng.normal(size=(4, d)).astype(np.float32),
        "movie_bias": rng.normal(size=4).astype(np.float32),
        "global_bias": np.float32(3.5),
        "user_ids": np.array([1, 2], dtype=np.int64),
        "user_id_vectors": rng.normal(size=(2, d)).astype(np.float32),
        "user_id_bias": rng.normal(size=2).astype(np.float32),
        "user_feature_weights": rng.normal(size=(f, d)).astype(np.float32),
        "user_feature_bias_weights": rng.normal(size=f).astype(np.float32),
        "feature_mean": np.array([1.0, 2.0], dtype=np.float32),
        "feature_std": np.array([2.0, 4.0], dtype=np.float32),
    }
    model = tmp_path / "model"
    model.mkdir()
    np.savez(model / "towers.npz", **towers)
    meta = {"user_feature_names": ["a", "b"], "rating_range": [1.0, 5.0], "mlflow_run_id": "run-1"}
    (model / "metadata.json").write_text(json.dumps(meta))
    return model


def test_towers_score_by_the_contract_formula(tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    features = pd.DataFrame({"user_id": [1, 2, 3], "a": [3.0, 1.0, 5.0], "b": [2.0, 6.0, 2.0]})
    towers = evaluate.Towers(model, features)
    t = np.load(model / "towers.npz")
    z = (features[["a", "b"]].to_numpy() - t["feature_mean"]) / t["feature_std"]
    # user 3 has features but no id row: feature part only.
    uv = z @ t["user_feature_weights"] + np.vstack([t["user_id_vectors"], np.zeros((1, 3))])
    ub = z @ t["user_feature_bias_weights"] + np.append(t["user_id_bias"], 0.0)
    expected = t["global_bias"] + ub[:, None] + t["movie_bias"][None, :] + uv @ t["movie_vectors"].T
    np.testing.assert_allclose(towers.score_all([1, 2, 3]), expected, rtol=1e-5)
    pred = towers.predict([1, 3], [20, 40])
    np.testing.assert_allclose(pred, np.clip([expected[0, 1], expected[2, 3]], 1.0, 5.0), rtol=1e-5)


def test_missing_user_feature_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\['b'\]"):
        evaluate.Towers(_model_dir(tmp_path), pd.DataFrame({"user_id": [1], "a": [1.0]}))


def test_held_out_is_highest_rated_then_latest() -> None:
    test = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2],
            "movie_id": [10, 20, 30, 40],
            "rating": [5.0, 5.0, 3.0, 2.0],
            "timestamp": [1, 2, 3, 4],
        }
    )
    assert evaluate.held_out(test).set_index("user_id")["movie_id"].to_dict() == {1: 20, 2: 40}


def test_ranking_excludes_training_movies() -> None:
    movie_ids = np.array([10, 20, 30], dtype=np.int64)
    scores = np.array([[3.0, 2.0, 1.0]])
    targets = pd.DataFrame({"user_id": [1], "movie_id": [20]})
    train = pd.DataFrame({"user_id": [1], "movie_id": [10]})
    assert evaluate.ranking_metrics(scores, movie_ids, targets, train)["hit_rate_at_10"] == 1.0
    ndcg = evaluate.ranking_metrics(scores, movie_ids, targets, train)["ndcg_at_10"]
    assert ndcg == pytest.approx(1.0)  # rank 1 once movie 10 (rated in training) is excluded
    ndcg_with_seen = evaluate.ranking_metrics(scores, movie_ids, targets, train.iloc[0:0])["ndcg_at_10"]
    assert ndcg_with_seen == pytest.approx(1 / np.log2(3))


def test_extract_refuses_paths_leaving_the_model_dir(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "x.txt"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as archive:
        archive.add(payload, arcname="../outside.txt")
    with pytest.raises(ValueError, match=r"outside\.txt"):
        evaluate.extract(evil, tmp_path / "model")


def _report() -> dict[str, object]:
    return evaluate.build_report(
        model={"rmse": 0.91, "mae": 0.72, "hit_rate_at_10": 0.2, "ndcg_at_10": 0.1},
        rating_baseline={"rmse": 0.95, "mae": 0.75, "name": "biased"},
        popularity={"hit_rate_at_10": 0.12, "ndcg_at_10": 0.06},
        lineage={"mlflow_run_id": "run-1"},
        test_rows=100,
    )


def test_registry_request_carries_metrics_and_lineage() -> None:
    lineage = registry.Lineage("ml-100k", "abc.dir", "deadbeef", "run-1", "local:p/x")
    request = registry.model_package_request(
        group="g", image_uri="img", model_data_url="s3://b/model.tar.gz",
        evaluation_uri="s3://b/evaluation.json", report=_report(), lineage=lineage,
        approval_status="PendingManualApproval", instance_type="ml.m5.large",
    )  # fmt: skip
    metadata = request["CustomerMetadataProperties"]
    assert metadata["dataset_version"] == "abc.dir" and metadata["mlflow_run_id"] == "run-1"
    assert (
        metadata["metric_rmse"] == "0.910000" and metadata["baseline_popularity_hit_rate_at_10"] == "0.120000"
    )
    assert all(isinstance(v, str) for v in metadata.values())
    assert request["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == "s3://b/evaluation.json"
    assert request["MetadataProperties"] == {"CommitId": "deadbeef", "GeneratedBy": "local:p/x"}


def test_lookup_names_the_missing_path() -> None:
    with pytest.raises(KeyError, match=r"ranking_metrics\.nope"):
        registry.lookup(_report(), "ranking_metrics.nope.value")
    with pytest.raises(ValueError, match=r"s3://x/evaluation\.json"):
        registry.read_report("{not json", "s3://x/evaluation.json")


def test_prepare_refuses_a_rejected_row_with_the_report(tmp_path: Path) -> None:
    raw = tmp_path / "input" / "raw"
    raw.mkdir(parents=True)
    genres = "|".join(["0"] * 19)
    (raw / "u.item").write_text(f"1|Toy Story (1995)|01-Jan-1995||http://x|{genres}\n")
    (raw / "u.user").write_text("1|24|M|technician|85711\n")
    (raw / "u.data").write_text("1\t1\t5\t881250949\n1\t1\t9\t881250950\n")
    args = argparse.Namespace(dataset="ml-100k", dataset_version="", split_seed=1, feature_store="none")
    with pytest.raises(prepare.PrepareError, match="rating_out_of_range"):
        prepare.prepare(args, root=tmp_path)
    assert not (tmp_path / "output" / "train").exists()


def test_a_change_to_the_model_dir_contract_changes_the_code_version(tmp_path: Path, monkeypatch) -> None:
    """Evaluate and training run modeldir in the ML image: editing it must not reuse an old model."""
    import subprocess

    from pipelines.local import keys
    from pipelines.local.keys import code_version

    (tmp_path / "modeldir").mkdir()
    (tmp_path / "modeldir" / "score.py").write_text("SCALE = 1\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.setattr(keys, "ROOT", tmp_path)
    before = code_version()
    (tmp_path / "modeldir" / "score.py").write_text("SCALE = 2\n")
    assert code_version() != before
