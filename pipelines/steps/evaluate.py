"""Evaluate step: the model and its baselines on the test split, into evaluation.json.

Scores come from the saved model's towers (contract section 3) by modeldir's reference scorer, the
one serving's fast path is tested against. Rating metrics: RMSE and MAE on every test rating.
Ranking metrics: per test user, the held-out movie is their highest-rated test movie (latest on
ties), ranked among every catalog movie they did not rate in training; HitRate@10 and NDCG@10 over
those users.
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

import modeldir
from modeldir import ReferenceScorer
from pipelines.registry import METRIC_KEYS, REGISTRY_SECTION, lookup
from pipelines.steps.runner import run_step
from training.baselines import BiasedBaseline, Popularity
from training.metrics import held_out_ranks, hit_rate_at_k, mae, ndcg_at_k, rmse

ROOT = Path("/opt/ml/processing")
K = 10


class Towers:
    """The saved model scored by modeldir's reference scorer, with user features joined by user id.

    A user absent from the features table, or a missing (NaN) feature value, counts as at the training
    mean (z = 0), as in training and serving.
    """

    def __init__(self, model_dir: Path, user_features: pd.DataFrame) -> None:
        model = modeldir.load(model_dir)
        self.metadata: dict[str, Any] = model.metadata
        names = list(model.feature_names)
        missing = sorted(set(names) - set(user_features.columns))
        if missing:
            raise ValueError(f"user features lack {missing}, which the model's metadata.json lists")
        self._features = user_features.drop_duplicates("user_id", keep="last").set_index("user_id")[names]
        self.scorer = ReferenceScorer(model)
        self.movie_ids = self.scorer.movie_ids
        self.rating_range = self.scorer.rating_range

    def features_of(self, user_ids: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Raw features per user id, in the model's order; NaN where the table has no value."""
        ids = np.asarray(user_ids, dtype=np.int64)
        return self._features.reindex(ids).to_numpy(dtype=np.float64)

    def predict(self, user_ids: npt.ArrayLike, movie_ids: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Predicted ratings for (user, movie) pairs, clipped to the rating range."""
        return self.scorer.predict(user_ids, movie_ids, self.features_of(user_ids))

    def score_all(self, user_ids: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Top-K scores of every catalog movie (columns in `movie_ids` order) for each user."""
        return self.scorer.ranking_scores(user_ids, self.features_of(user_ids))


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
