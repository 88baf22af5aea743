"""Evaluate step: the model and its baselines on the test split, into evaluation.json.

Scores come from the saved model's towers (contract section 3) in NumPy, exactly as serving
computes them. Rating metrics: RMSE and MAE on every test rating. Ranking metrics: per test user,
the held-out movie is their highest-rated test movie (latest on ties), ranked among every catalog
movie they did not rate in training; HitRate@10 and NDCG@10 over those users.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipelines.steps.runner import run_step

ROOT = Path("/opt/ml/processing")
K = 10


class Towers:
    """The saved model's NumPy scoring (contract section 3)."""

    def __init__(self, model_dir: Path, user_features: pd.DataFrame) -> None:
        self.metadata: dict[str, Any] = json.loads((model_dir / "metadata.json").read_text())
        t = np.load(model_dir / "towers.npz")
        self.movie_ids = t["movie_ids"].astype(np.int64)
        self.movie_vectors = t["movie_vectors"].astype(np.float64)
        self.movie_bias = t["movie_bias"].astype(np.float64)
        self.global_bias = float(t["global_bias"])
        names = list(self.metadata["user_feature_names"])
        missing = sorted(set(names) - set(user_features.columns))
        if missing:
            raise ValueError(f"user features lack {missing}, which the model's metadata.json lists")
        features = user_features.set_index("user_id")[names].astype(np.float64).fillna(0.0)
        z = (features.to_numpy() - t["feature_mean"]) / t["feature_std"]
        id_row = pd.Series(np.arange(len(t["user_ids"])), index=t["user_ids"].astype(np.int64))
        rows = id_row.reindex(features.index).to_numpy()
        known = ~np.isnan(rows)
        d = self.movie_vectors.shape[1]
        vectors = z @ t["user_feature_weights"].astype(np.float64)
        bias = z @ t["user_feature_bias_weights"].astype(np.float64)
        vectors[known] += t["user_id_vectors"][rows[known].astype(np.int64)]
        bias[known] += t["user_id_bias"][rows[known].astype(np.int64)]
        self.user_index = pd.Series(np.arange(len(features)), index=features.index.astype(np.int64))
        self.user_vectors = vectors.reshape(-1, d)
        self.user_bias = bias
        # Top-K ranks with the ranking tower when the model has one (contract section 3), as serving does.
        self.rank_user_vectors: npt.NDArray[np.float64] | None = None
        if "rank_movie_vectors" in t.files:
            self.rank_movie_vectors = t["rank_movie_vectors"].astype(np.float64)
            self.rank_movie_bias = t["rank_movie_bias"].astype(np.float64)
            rank = z @ t["rank_user_feature_weights"].astype(np.float64)
            rank[known] += t["rank_user_id_vectors"][rows[known].astype(np.int64)]
            self.rank_user_vectors = rank.reshape(-1, self.rank_movie_vectors.shape[1])
        low, high = self.metadata.get("rating_range", [1.0, 5.0])
        self.rating_range = (float(low), float(high))

    def _users(self, user_ids: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        rows = self.user_index.reindex(np.asarray(user_ids, dtype=np.int64)).to_numpy()
        known = ~np.isnan(rows)
        d = self.user_vectors.shape[1]
        vectors = np.zeros((rows.size, d))
        bias = np.zeros(rows.size)
        vectors[known] = self.user_vectors[rows[known].astype(np.int64)]
        bias[known] = self.user_bias[rows[known].astype(np.int64)]
        return vectors, bias

    def predict(self, user_ids: npt.ArrayLike, movie_ids: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Predicted ratings for (user, movie) pairs, clipped to the rating range."""
        uv, ub = self._users(user_ids)
        col = pd.Series(np.arange(self.movie_ids.size), index=self.movie_ids).reindex(np.asarray(movie_ids))
        cols = col.to_numpy()
        known = ~np.isnan(cols)
        mv = np.zeros_like(uv)
        mb = np.zeros(cols.size)
        mv[known] = self.movie_vectors[cols[known].astype(np.int64)]
        mb[known] = self.movie_bias[cols[known].astype(np.int64)]
        raw = self.global_bias + ub + mb + np.einsum("ij,ij->i", uv, mv)
        return np.asarray(np.clip(raw, *self.rating_range), dtype=np.float64)

    def score_all(self, user_ids: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Top-K scores of every catalog movie (columns in `movie_ids` order) for each user."""
        if self.rank_user_vectors is not None:
            rows = self.user_index.reindex(np.asarray(user_ids, dtype=np.int64)).to_numpy()
            known = ~np.isnan(rows)
            ru = np.zeros((rows.size, self.rank_user_vectors.shape[1]))
            ru[known] = self.rank_user_vectors[rows[known].astype(np.int64)]
            return np.asarray(
                ru @ self.rank_movie_vectors.T + self.rank_movie_bias[None, :], dtype=np.float64
            )
        uv, ub = self._users(user_ids)
        scores = self.global_bias + ub[:, None] + self.movie_bias[None, :] + uv @ self.movie_vectors.T
        return np.asarray(scores, dtype=np.float64)


def extract(archive_path: Path, target: Path) -> None:
    """Extract model.tar.gz, refusing members that would land outside `target`."""
    # Debian 12's Python 3.11.2 predates tarfile's extraction filters, so check members ourselves.
    with tarfile.open(archive_path) as archive:
        for member in archive.getmembers():
            resolved = (target / member.name).resolve()
            if not resolved.is_relative_to(target.resolve()) or member.issym() or member.islnk():
                raise ValueError(
                    f"{archive_path} member {member.name!r} is a link or leaves the model directory"
                )
        archive.extractall(target)  # noqa: S202 (members checked above)


def held_out(test: pd.DataFrame) -> pd.DataFrame:
    """One row per test user: their highest-rated test movie, the latest on ties."""
    ordered = test.sort_values(["user_id", "rating", "timestamp", "movie_id"])
    return ordered.groupby("user_id", as_index=False).tail(1).reset_index(drop=True)


def ranking_metrics(
    scores: npt.NDArray[np.float64],
    movie_ids: npt.NDArray[np.int64],
    targets: pd.DataFrame,
    train: pd.DataFrame,
) -> dict[str, float]:
    """HitRate@10 and NDCG@10 of held-out movies, excluding each user's training movies."""
    from training.metrics import held_out_ranks, hit_rate_at_k, ndcg_at_k

    col = pd.Series(np.arange(movie_ids.size), index=movie_ids)
    keep = targets["movie_id"].isin(col.index).to_numpy()
    targets = targets[keep]
    scores = scores[keep]
    users = pd.Series(np.arange(len(targets)), index=targets["user_id"].to_numpy())
    exclude = np.zeros(scores.shape, dtype=bool)
    seen = train[train["user_id"].isin(users.index) & train["movie_id"].isin(col.index)]
    exclude[users.reindex(seen["user_id"]).to_numpy(), col.reindex(seen["movie_id"]).to_numpy()] = True
    target_cols = col.reindex(targets["movie_id"]).to_numpy()
    exclude[np.arange(len(targets)), target_cols] = False
    ranks = held_out_ranks(scores, target_cols, exclude)
    return {
        "hit_rate_at_10": hit_rate_at_k(ranks, K),
        "ndcg_at_10": ndcg_at_k(ranks, K),
        "users": len(targets),
    }


def build_report(
    *,
    model: dict[str, float],
    rating_baseline: dict[str, Any],
    popularity: dict[str, float],
    lineage: dict[str, str],
    test_rows: int,
) -> dict[str, Any]:
    """evaluation.json: SageMaker's model-quality layout plus baselines, lineage and registry strings."""
    from pipelines.registry import METRIC_KEYS, REGISTRY_SECTION, lookup

    report: dict[str, Any] = {
        "regression_metrics": {
            "rmse": {"value": model["rmse"]},
            "mae": {"value": model["mae"]},
        },
        "ranking_metrics": {
            "hit_rate_at_10": {"value": model["hit_rate_at_10"]},
            "ndcg_at_10": {"value": model["ndcg_at_10"]},
        },
        "baselines": {"rating": rating_baseline, "popularity": popularity},
        "lineage": lineage,
        "test_rows": test_rows,
    }
    report[REGISTRY_SECTION] = {
        key: f"{float(lookup(report, path)):.6f}" for key, path in METRIC_KEYS.items()
    }
    return report


def evaluate(args: argparse.Namespace, root: Path = ROOT) -> dict[str, Any]:
    """Run the whole step with inputs and outputs under `root`; return the report."""
    from training.baselines import BiasedBaseline, Popularity
    from training.metrics import mae, rmse

    inputs = root / "input"
    train = pd.read_parquet(inputs / "train" / "ratings.parquet")
    test = pd.read_parquet(inputs / "test" / "ratings.parquet")
    user_features = pd.read_parquet(inputs / "features" / "user_features.parquet")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        archives = sorted((inputs / "model").glob("*.tar.gz"))
        if archives:
            extract(archives[0], model_dir)
        else:
            model_dir = inputs / "model"
        if not (model_dir / "towers.npz").is_file():
            raise FileNotFoundError(f"no towers.npz in the model artifact under {inputs / 'model'}")
        towers = Towers(model_dir, user_features)

    predicted = towers.predict(test["user_id"], test["movie_id"])
    targets = held_out(test)
    model = {
        "rmse": rmse(test["rating"], predicted),
        "mae": mae(test["rating"], predicted),
        **ranking_metrics(towers.score_all(targets["user_id"]), towers.movie_ids, targets, train),
    }
    biased = BiasedBaseline().fit(train)
    baseline_predicted = biased.predict(test["user_id"], test["movie_id"])
    rating_baseline = {
        "name": "biased (global mean + regularized user and movie biases)",
        "rmse": rmse(test["rating"], baseline_predicted),
        "mae": mae(test["rating"], baseline_predicted),
    }
    popularity_scores = Popularity().fit(train).score_movies(towers.movie_ids)
    popularity = ranking_metrics(
        np.tile(popularity_scores, (len(targets), 1)), towers.movie_ids, targets, train
    )
    metadata = towers.metadata
    lineage = {
        "dataset": str(metadata.get("dataset", "")),
        "dataset_version": str(metadata.get("dataset_version", "")),
        "git_commit": args.git_commit,
        "mlflow_run_id": str(metadata.get("mlflow_run_id") or "none"),
        "model_name": str(metadata.get("model_name", metadata.get("name", ""))),
    }
    report = build_report(
        model=model,
        rating_baseline=rating_baseline,
        popularity=popularity,
        lineage=lineage,
        test_rows=len(test),
    )
    out = root / "output" / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    return report


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 with the report on stdout, or 1 with the reason in the failure file."""
    parser = argparse.ArgumentParser(prog="pipelines.steps.evaluate")
    parser.add_argument("--git-commit", default="unknown")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return run_step("Evaluate", lambda: evaluate(args), lambda e: f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    raise SystemExit(main())
