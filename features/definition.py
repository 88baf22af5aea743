"""The single definition of every feature, as plain Python data.

Feast (`features.feast_repo`), SageMaker Feature Store (`features.sagemaker`), the feature computation
(`features.compute`) and the model's inputs all read their names and types from here. This module
imports only the standard library: the CDK environment, which has no Feast, imports it too.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Final, Literal

# The 19 MovieLens genres, shared with the data layer through a standard-library module, so this file
# still imports nothing heavy; movies' `genres` column joins these names with "|".
from dataset.genres import GENRES as GENRES

Dtype = Literal["int64", "float64", "string"]
DTYPES: Final[tuple[str, ...]] = ("int64", "float64", "string")


EVENT_TIME_COLUMN: Final = "event_timestamp"

# Prior count C of the Bayesian-average rating (C*m + sum)/(C + n): a movie needs about C ratings
# before its own mean outweighs the global mean m. 10 is roughly the median ml-100k movie's count
# (27) halved, so a handful of 5-star ratings cannot put an obscure movie above the classics.
BAYESIAN_PRIOR_COUNT: Final = 10

# SageMaker Feature Store's rule for feature names; Feast accepts the same set.
_NAME_RE: Final = re.compile(r"^[a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63}$")


@dataclass(frozen=True)
class Feature:
    """One feature: its name, type and meaning."""

    name: str
    dtype: Dtype
    description: str


@dataclass(frozen=True)
class Entity:
    """An entity: the key every feature row of a view is joined on."""

    name: str
    join_key: str
    dtype: Dtype
    description: str


@dataclass(frozen=True)
class FeatureView:
    """A group of features about one entity, stored and served together."""

    name: str
    entity: str
    join_key: str
    features: tuple[Feature, ...]
    ttl_days: int
    description: str
    event_time_column: str = EVENT_TIME_COLUMN

    @property
    def feature_names(self) -> list[str]:
        """The feature names, in definition order."""
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        """Return the feature called `name`, or raise KeyError naming the view's features."""
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"feature view {self.name!r} has no feature {name!r}; it has {self.feature_names}")


def genre_slug(genre: str) -> str:
    """The feature-name form of a genre: lower case, runs of other characters as one underscore."""
    slug = re.sub(r"[^a-z0-9]+", "_", genre.lower().replace("'", "")).strip("_")
    if not slug:
        raise ValueError(f"genre {genre!r} has no letters or digits to name a feature after")
    return slug


def genre_affinity_feature(genre: str) -> str:
    """The name of the user's affinity feature for `genre` (e.g. user_genre_affinity_sci_fi)."""
    return f"user_genre_affinity_{genre_slug(genre)}"


ENTITIES: Final[tuple[Entity, ...]] = (
    Entity("user", "user_id", "int64", "A MovieLens user (the dataset's user id)."),
    Entity("movie", "movie_id", "int64", "A MovieLens movie (the dataset's movie id)."),
)

_USER_FEATURES: Final[tuple[Feature, ...]] = (
    Feature("user_rating_count", "int64", "Number of ratings the user gave before the event time."),
    Feature("user_rating_mean", "float64", "Mean of those ratings."),
    Feature(
        "user_rating_std",
        "float64",
        "Population standard deviation of those ratings (0 for a single rating).",
    ),
    Feature(
        "user_days_since_last_rating",
        "float64",
        "Days from the user's last rating before the event time to the event time.",
    ),
    *(
        Feature(
            genre_affinity_feature(g),
            "float64",
            f"Share of the user's ratings given to {g} movies (a movie counts for each of its genres).",
        )
        for g in GENRES
    ),
)

_MOVIE_FEATURES: Final[tuple[Feature, ...]] = (
    Feature("movie_rating_count", "int64", "Number of ratings the movie got before the event time."),
    Feature("movie_rating_mean", "float64", "Mean of those ratings; null when there are none."),
    Feature(
        "movie_bayesian_rating",
        "float64",
        f"(C*m + sum of ratings)/(C + count) with C={BAYESIAN_PRIOR_COUNT} and m the mean of all "
        "ratings before the event time.",
    ),
    Feature("movie_genres", "string", "The movie's genres joined with '|' (empty when it has none)."),
    Feature("movie_release_year", "int64", "Release year; null when unknown."),
    Feature(
        "movie_popularity_rank",
        "int64",
        "1 = most-rated movie before the event time; ties go to the lower movie id.",
    ),
)

FEATURE_VIEWS: Final[tuple[FeatureView, ...]] = (
    FeatureView(
        name="user_features",
        entity="user",
        join_key="user_id",
        features=_USER_FEATURES,
        # Snapshots are written at least weekly for every user who has rated, so a row older than
        # 30 days means the pipeline stopped: better a null than a stale value.
        ttl_days=30,
        description="A user's rating behaviour and genre taste, from their ratings before the event time.",
    ),
    FeatureView(
        name="movie_features",
        entity="movie",
        join_key="movie_id",
        features=_MOVIE_FEATURES,
        ttl_days=30,
        description="A movie's metadata and how it was rated before the event time.",
    ),
)


def feature_view(name: str) -> FeatureView:
    """Return the feature view called `name`, or raise KeyError naming the known views."""
    for view in FEATURE_VIEWS:
        if view.name == name:
            return view
    raise KeyError(f"no feature view {name!r}; the definition has {[v.name for v in FEATURE_VIEWS]}")


def entity(name: str) -> Entity:
    """Return the entity called `name`, or raise KeyError naming the known entities."""
    for e in ENTITIES:
        if e.name == name:
            return e
    raise KeyError(f"no entity {name!r}; the definition has {[e.name for e in ENTITIES]}")


def _view_problems(view: FeatureView, entity_names: dict[str, Entity]) -> list[str]:
    """What is wrong with one view's entity, TTL and names."""
    problems: list[str] = []
    ent = entity_names.get(view.entity)
    if ent is None:
        problems.append(f"view {view.name!r}: unknown entity {view.entity!r}")
    elif ent.join_key != view.join_key:
        problems.append(f"view {view.name!r}: join key {view.join_key!r} != entity's {ent.join_key!r}")
    if view.ttl_days <= 0:
        problems.append(f"view {view.name!r}: ttl_days must be positive, got {view.ttl_days}")
    if not _NAME_RE.match(view.name):
        problems.append(f"view name {view.name!r} is not a legal SageMaker feature group name")
    for name in (view.join_key, view.event_time_column, *view.feature_names):
        if not _NAME_RE.match(name):
            problems.append(f"view {view.name!r}: {name!r} is not a legal SageMaker feature name")
    return problems


def _feature_problems(view: FeatureView, seen: dict[str, str]) -> list[str]:
    """What is wrong with one view's features; `seen` maps feature names to the view that has them."""
    problems: list[str] = []
    for f in view.features:
        if f.dtype not in DTYPES:
            problems.append(f"feature {f.name!r}: dtype {f.dtype!r} is not one of {DTYPES}")
        if not f.description:
            problems.append(f"feature {f.name!r} has no description")
        if f.name in seen:
            problems.append(f"feature {f.name!r} is defined in both {seen[f.name]!r} and {view.name!r}")
        seen[f.name] = view.name
        if f.name in (view.join_key, view.event_time_column):
            problems.append(f"feature {f.name!r} clashes with view {view.name!r}'s key or event time")
    return problems


def validate_definition(
    entities: tuple[Entity, ...] = ENTITIES, views: tuple[FeatureView, ...] = FEATURE_VIEWS
) -> None:
    """Raise ValueError on any broken invariant of a definition (names, types, references)."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    entity_names = {e.name: e for e in entities}
    if len(entity_names) != len(entities):
        problems.append("duplicate entity names")
    if len({v.name for v in views}) != len(views):
        problems.append("duplicate feature view names")
    problems.extend(
        f"entity {e.name!r}: dtype {e.dtype!r} is not one of {DTYPES}"
        for e in entities
        if e.dtype not in DTYPES
    )
    for view in views:
        problems.extend(_view_problems(view, entity_names))
        problems.extend(_feature_problems(view, seen))
    if problems:
        raise ValueError("invalid feature definition:\n  " + "\n  ".join(problems))


def definition_version(
    entities: tuple[Entity, ...] = ENTITIES,
    views: tuple[FeatureView, ...] = FEATURE_VIEWS,
    bayesian_prior_count: int = BAYESIAN_PRIOR_COUNT,
) -> str:
    """A short content hash of a definition: it changes whenever a name, type, TTL or the prior changes."""
    payload = {
        "entities": [asdict(e) for e in entities],
        "views": [asdict(v) for v in views],
        "bayesian_prior_count": bayesian_prior_count,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


validate_definition()
DEFINITION_VERSION: Final[str] = definition_version()
