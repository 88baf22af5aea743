"""The model's quality benchmark: its figures beside baselines computed on the same splits, and the targets.

    python -m bench.model [--json] [--quick] [--skip-ml1m]

ml-100k 5-fold cross-validation (RMSE, MAE) for the model, the global mean and the biased baseline;
leave-last-out ranking (HR@10, NDCG@10) for the model and popularity; seconds to train one fold;
ml-1m training time and peak memory, measured in a child process so the figure is its own.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from dataset.tables import load_tables
from features.compute import user_features
from modeldir import ReferenceScorer, SavedModel
from training.baselines import BiasedBaseline, GlobalMean, Popularity
from training.hyperparameters import Hyperparameters
from training.metrics import held_out_ranks, hit_rate_at_k, mae, ndcg_at_k, rmse

# Published ml-100k figures (Surprise's benchmark table, 5-fold CV) shown as a reference column.
PUBLISHED_RMSE = {"Surprise SVD": 0.934, "Surprise SVD++": 0.919, "Surprise BaselineOnly": 0.944}
PUBLISHED_MAE = {"Surprise SVD": 0.737, "Surprise SVD++": 0.721, "Surprise BaselineOnly": 0.748}
TARGET_RMSE = 0.915
TARGET_RANKING_RATIO = 1.5
TARGET_FOLD_SECONDS = 60.0
TARGET_ML1M_SECONDS = 600.0
TARGET_ML1M_PEAK_GIB = 4.0
K = 10
CV_SEED = 0

err = Console(stderr=True)
app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


def _fit_and_predict(
    train: pd.DataFrame, test: pd.DataFrame, movies: pd.DataFrame, hp: Hyperparameters
) -> tuple[npt.NDArray[np.float32], float, float, Any]:
    """Fit on `train` (features from `train` only), predict `test`; returns (pred, wall s, cpu s, result)."""
    from training.fit import TrainingData, fit, predict_ratings  # noqa: PLC0415  heavy: loads tensorflow only when called

    wall, cpu = time.perf_counter(), time.process_time()
    result = fit(TrainingData(ratings=train, movies=movies), hp)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    feats = user_features(train, movies).set_index("user_id")
    return predict_ratings(result, test, feats), wall, cpu, result


def kfold_indices(n: int, folds: int, seed: int) -> list[npt.NDArray[np.int64]]:
    """A seeded random partition of range(n) into `folds` parts (like Surprise's KFold, shuffled)."""
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, folds)]


def cross_validate(
    ratings: pd.DataFrame, movies: pd.DataFrame, hp: Hyperparameters, folds: int, run_folds: int
) -> dict[str, Any]:
    """RMSE and MAE per fold for the model, the global mean and the biased baseline."""

    parts = kfold_indices(len(ratings), folds, CV_SEED)
    rows: dict[str, dict[str, list[float]]] = {
        name: {"rmse": [], "mae": []} for name in ("model", "global_mean", "biased_baseline")
    }
    seconds: list[float] = []
    cpu_seconds: list[float] = []
    for i, test_idx in enumerate(parts[:run_folds]):
        mask = np.ones(len(ratings), bool)
        mask[test_idx] = False
        train, test = ratings.iloc[mask], ratings.iloc[test_idx]
        truth = test["rating"].to_numpy()
        err.print(f"[bold]fold {i + 1}/{run_folds}[/]: training on {len(train):,} ratings ...")
        pred, wall, cpu, _ = _fit_and_predict(train, test, movies, hp)
        seconds.append(wall)
        cpu_seconds.append(cpu)
        preds: dict[str, npt.NDArray[Any]] = {
            "model": pred,
            "global_mean": GlobalMean().fit(train).predict(test["user_id"], test["movie_id"]),
            "biased_baseline": BiasedBaseline().fit(train).predict(test["user_id"], test["movie_id"]),
        }
        for name, p in preds.items():
            rows[name]["rmse"].append(rmse(truth, p))
            rows[name]["mae"].append(mae(truth, p))
        err.print(
            f"  model RMSE {rows['model']['rmse'][-1]:.4f}, "
            f"baseline {rows['biased_baseline']['rmse'][-1]:.4f}, {wall:.1f} s wall ({cpu:.1f} s CPU)"
        )
    return {
        "split": f"random {folds}-way partition of the ratings, numpy seed {CV_SEED} (like Surprise KFold)",
        "folds_run": run_folds,
        "per_fold": rows,
        "fold_train_seconds": seconds,
        "fold_train_cpu_seconds": cpu_seconds,
    }


def leave_last_out(ratings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's last rating by time (ties: the later row) held out; the rest is training."""
    ordered = ratings.reset_index(drop=True)
    ordered = ordered.assign(_row=np.arange(len(ordered))).sort_values(["user_id", "timestamp", "_row"])
    last = ordered.groupby("user_id").tail(1)
    train = ordered.drop(index=last.index)
    # A user whose only rating is held out has nothing to train on; they stay cold-start users.
    return train.drop(columns="_row"), last.drop(columns="_row")


def ranking(ratings: pd.DataFrame, movies: pd.DataFrame, hp: Hyperparameters) -> dict[str, Any]:
    """HR@K and NDCG@K of the model and of popularity, ranking every movie each user has not rated."""
    from training.fit import TrainingData, fit  # noqa: PLC0415  heavy: loads tensorflow only when called
    from training.model import RATING_RANGE  # noqa: PLC0415  heavy: loads tensorflow only when called

    train, held = leave_last_out(ratings)
    err.print(f"[bold]ranking[/]: training on {len(train):,} ratings, {len(held):,} users held out ...")
    result = fit(TrainingData(ratings=train, movies=movies), hp)
    t = result.towers
    feats = user_features(train, movies).set_index("user_id").reindex(held["user_id"])
    # The score serving's top-K uses (the ranking tower's when the model has one), by the reference scorer.
    scorer = ReferenceScorer(SavedModel.from_arrays(t, result.user_feature_names, RATING_RANGE))
    scores = scorer.ranking_scores(
        held["user_id"].to_numpy(np.int64), feats[result.user_feature_names].to_numpy(np.float64)
    )
    movie_pos = pd.Index(t["movie_ids"])
    exclude = np.zeros(scores.shape, bool)
    user_pos = pd.Index(held["user_id"].to_numpy())
    exclude[user_pos.get_indexer(train["user_id"]), movie_pos.get_indexer(train["movie_id"])] = True
    target = movie_pos.get_indexer(held["movie_id"])
    model_ranks = held_out_ranks(scores, target, exclude)
    pop = Popularity().fit(train).score_movies(t["movie_ids"])
    pop_ranks = held_out_ranks(np.broadcast_to(pop, scores.shape), target, exclude)
    out: dict[str, Any] = {
        "protocol": f"per user, the last rating by time held out; all {len(movie_pos)} movies ranked "
        "except those the user rated in training",
        "users": len(held),
        "model": {"hr": hit_rate_at_k(model_ranks, K), "ndcg": ndcg_at_k(model_ranks, K)},
        "popularity": {"hr": hit_rate_at_k(pop_ranks, K), "ndcg": ndcg_at_k(pop_ranks, K)},
    }
    err.print(f"  model HR@{K} {out['model']['hr']:.4f} vs popularity {out['popularity']['hr']:.4f}")
    return out


@dataclass(frozen=True)
class Target:
    """One benchmark target: the figure, the limit, and which way is better."""

    name: str
    value: float | None
    limit: float
    higher_is_better: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON form: value, limit, ratio to the limit, PASS/FAIL (NOT MEASURED when value is None)."""
        if self.value is None:
            return {
                "name": self.name,
                "value": None,
                "limit": self.limit,
                "ratio": None,
                "status": "NOT MEASURED",
            }
        ok = self.value >= self.limit if self.higher_is_better else self.value <= self.limit
        return {
            "name": self.name,
            "value": self.value,
            "limit": self.limit,
            "ratio": self.value / self.limit,
            "status": "PASS" if ok else "FAIL",
        }


def ml1m_child(hp_json: str) -> None:
    """Train on ml-1m (90% random split), print one JSON line: seconds, peak RSS, held-out RMSE."""

    tables = load_tables("ml-1m")
    hp = Hyperparameters.model_validate_json(hp_json)
    parts = kfold_indices(len(tables.ratings), 10, CV_SEED)
    mask = np.ones(len(tables.ratings), bool)
    mask[parts[0]] = False
    train, test = tables.ratings.iloc[mask], tables.ratings.iloc[parts[0]]
    pred, wall, cpu, result = _fit_and_predict(train, test, tables.movies, hp)

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux reports KiB
    print(
        json.dumps(
            {
                "train_ratings": len(train),
                "train_seconds": wall,
                "train_cpu_seconds": cpu,
                "peak_rss_gib": peak_kib / 2**20,
                "rmse_10pct_holdout": rmse(test["rating"], pred),
                "mae_10pct_holdout": mae(test["rating"], pred),
                "epochs_run": result.epochs_run,
            }
        )
    )


def run_ml1m(hp: Hyperparameters) -> dict[str, Any]:
    """Run `ml1m_child` in a fresh interpreter; its peak RSS is then the training's own."""
    err.print("[bold]ml-1m[/]: training in a child process (peak memory is measured there) ...")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.model", "--ml1m-child", hp.model_dump_json()],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return {"error": f"ml-1m training failed (exit {proc.returncode}): {tail}"}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def summarize(cv: dict[str, Any], rank: dict[str, Any], ml1m: dict[str, Any] | None) -> dict[str, Any]:
    """Aggregate the runs into the benchmark's JSON object, targets included."""
    cv_summary = {
        name: {metric: _stats(vals) for metric, vals in figs.items()} for name, figs in cv["per_fold"].items()
    }
    pop_hr, pop_ndcg = rank["popularity"]["hr"], rank["popularity"]["ndcg"]
    ratios = {
        "hr": rank["model"]["hr"] / pop_hr if pop_hr else None,
        "ndcg": rank["model"]["ndcg"] / pop_ndcg if pop_ndcg else None,
    }
    m1 = ml1m if ml1m is not None and "error" not in ml1m else None
    targets = [
        Target("ml-100k 5-fold mean RMSE", cv_summary["model"]["rmse"]["mean"], TARGET_RMSE, False),
        Target(f"HR@{K} / popularity's", ratios["hr"], TARGET_RANKING_RATIO, True),
        Target(f"NDCG@{K} / popularity's", ratios["ndcg"], TARGET_RANKING_RATIO, True),
        Target(
            "ml-100k seconds per fold (slowest)", max(cv["fold_train_seconds"]), TARGET_FOLD_SECONDS, False
        ),
        Target("ml-1m training seconds", m1["train_seconds"] if m1 else None, TARGET_ML1M_SECONDS, False),
        Target("ml-1m peak RSS GiB", m1["peak_rss_gib"] if m1 else None, TARGET_ML1M_PEAK_GIB, False),
    ]
    return {
        "dataset": "ml-100k",
        "cross_validation": {**{k: v for k, v in cv.items() if k != "per_fold"}, "per_fold": cv["per_fold"]},
        "rating": cv_summary,
        "published_reference": {"rmse": PUBLISHED_RMSE, "mae": PUBLISHED_MAE},
        "ranking": {**rank, "k": K, "ratio_to_popularity": ratios},
        "ml1m": ml1m,
        "load_average_1m": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "targets": [t.as_dict() for t in targets],
    }


def render(report: dict[str, Any]) -> None:
    """Print the benchmark as rich tables on stdout."""
    out = Console()
    cv = report["rating"]
    t = Table(title=f"ml-100k rating prediction, {report['cross_validation']['split']}")
    for col in ("predictor", "RMSE mean ± std", "MAE mean ± std", "folds"):
        t.add_column(col)
    for name in ("model", "biased_baseline", "global_mean"):
        r = cv[name]
        t.add_row(
            name,
            f"{r['rmse']['mean']:.4f} ± {r['rmse']['std']:.4f}",
            f"{r['mae']['mean']:.4f} ± {r['mae']['std']:.4f}",
            str(r["rmse"]["n"]),
        )
    for name, value in report["published_reference"]["rmse"].items():
        t.add_row(
            f"{name} (published)", f"{value:.3f}", f"{report['published_reference']['mae'][name]:.3f}", "5"
        )
    out.print(t)
    rk = report["ranking"]
    t = Table(title=f"ml-100k ranking: {rk['protocol']} ({rk['users']} users)")
    for col in ("ranker", f"HR@{K}", f"NDCG@{K}"):
        t.add_column(col)
    t.add_row("model", f"{rk['model']['hr']:.4f}", f"{rk['model']['ndcg']:.4f}")
    t.add_row("popularity", f"{rk['popularity']['hr']:.4f}", f"{rk['popularity']['ndcg']:.4f}")
    t.add_row(
        "model / popularity",
        f"{rk['ratio_to_popularity']['hr']:.2f}x",
        f"{rk['ratio_to_popularity']['ndcg']:.2f}x",
    )
    out.print(t)
    if report["ml1m"] is not None:
        out.print(f"ml-1m: {json.dumps(report['ml1m'])}")
    t = Table(title=f"targets (load average {report['load_average_1m']:.1f} on {report['cpu_count']} cores)")
    for col in ("target", "value", "limit", "ratio", "status"):
        t.add_column(col)
    for tg in report["targets"]:
        value = "-" if tg["value"] is None else f"{tg['value']:.4g}"
        ratio = "-" if tg["ratio"] is None else f"{tg['ratio']:.3f}"
        style = {"PASS": "green", "FAIL": "red"}.get(tg["status"], "yellow")
        t.add_row(tg["name"], value, f"{tg['limit']:g}", ratio, f"[{style}]{tg['status']}[/]")
    out.print(t)


@app.command()
def main(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="One CV fold and no ml-1m run.")] = False,
    skip_ml1m: Annotated[bool, typer.Option("--skip-ml1m", help="Leave the ml-1m run out.")] = False,
    ml1m_child_hp: Annotated[str | None, typer.Option("--ml1m-child", hidden=True)] = None,
) -> None:
    """Run the model benchmark on ml-100k (and ml-1m) and print figures beside the baselines."""
    if ml1m_child_hp is not None:
        ml1m_child(ml1m_child_hp)
        return

    tables = load_tables("ml-100k")
    hp = Hyperparameters(dataset="ml-100k")
    cv = cross_validate(tables.ratings, tables.movies, hp, folds=5, run_folds=1 if quick else 5)
    rank = ranking(tables.ratings, tables.movies, hp)
    ml1m = None if (quick or skip_ml1m) else run_ml1m(Hyperparameters(dataset="ml-1m", **ML1M_OVERRIDES))
    report = summarize(cv, rank, ml1m)
    report["hyperparameters"] = hp.model_dump()
    if ml1m is not None:
        ml1m["hyperparameters"] = Hyperparameters(dataset="ml-1m", **ML1M_OVERRIDES).model_dump()
    if as_json:
        print(json.dumps(report))
    else:
        render(report)


# ml-1m has 10x the ratings: larger batches keep an epoch's step count in check. Both towers train,
# as shipped: the time and memory reported are those of the model a user gets.
ML1M_OVERRIDES: dict[str, Any] = {"batch_size": 4096}


if __name__ == "__main__":
    app()
