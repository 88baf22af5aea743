"""Reading online features from the local Feast repo (SQLite online store)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from features.definition import FeatureView, feature_view
from features.feast_repo import FeastRepo

if TYPE_CHECKING:
    from feast import FeatureStore

FeatureValue = int | float | str | None


class UnknownEntityError(LookupError):
    """The online store holds no row for the requested entity."""


class FeastOnlineReader:
    """Online feature vectors by entity id, from one dataset's materialized Feast repo.

    Opening Feast costs seconds (import and registry load); a lookup afterwards is about a
    millisecond, so keep one reader per process. `get_user_features` has the shape serving's
    `OnlineFeatureStore` protocol asks for.
    """

    name = "feast-local"
    # A local SQLite read, no network: the server can call it on its event loop.
    blocking = False

    def __init__(self, dataset: str = "ml-100k", data_dir: Path | None = None) -> None:
        self.repo = FeastRepo.for_dataset(dataset, data_dir)
        manifest = self.repo.manifest()
        # Rows reach the online store by materialize (from the offline files) or by a push (the
        # pipeline's Prepare step through `feast serve`); either makes the store readable.
        if not (manifest.get("materialized") or manifest.get("pushed")):
            raise FileNotFoundError(
                f"the Feast repo at {self.repo.path} has neither been materialized nor pushed to: "
                f"run `mlops features materialize --dataset {dataset}`"
            )
        self._store: FeatureStore = self.repo.store()
        # The first lookup loads the registry and opens SQLite; pay for it here, not in a request.
        self._lookup(feature_view("user_features"), 0)

    def _lookup(self, view: FeatureView, key: int) -> dict[str, FeatureValue] | None:
        """The entity's features in definition order, or None when the online store lacks it."""
        refs = [f"{view.name}:{name}" for name in view.feature_names]
        raw = self._store.get_online_features(features=refs, entity_rows=[{view.join_key: int(key)}]).to_dict(
            include_event_timestamps=True
        )
        # Feast reports a missing entity as nulls with event time 0; a real row always has a later one.
        if not any(raw[f"{name}__ts"][0] for name in view.feature_names):
            return None
        return {name: raw[name][0] for name in view.feature_names}

    def features(self, view_name: str, key: int) -> dict[str, FeatureValue]:
        """The online features of one entity of a view; UnknownEntityError when there is none."""
        view = feature_view(view_name)
        row = self._lookup(view, key)
        if row is None:
            raise UnknownEntityError(
                f"{view.join_key} {key} is not in the online store of {self.repo.dataset} "
                f"({view.name}); check the id, or run `mlops features build` and `materialize` "
                "if the data changed"
            )
        return row

    def user_features(self, user_id: int) -> dict[str, FeatureValue]:
        """The user's online feature vector; UnknownEntityError for an unknown user."""
        return self.features("user_features", user_id)

    def movie_features(self, movie_id: int) -> dict[str, FeatureValue]:
        """The movie's online feature vector; UnknownEntityError for an unknown movie."""
        return self.features("movie_features", movie_id)

    def get_user_features(self, user_id: int) -> dict[str, float] | None:
        """Numeric user features for the serving protocol: None for an unknown user, nulls left out."""
        row = self._lookup(feature_view("user_features"), user_id)
        if row is None:
            return None
        out: dict[str, float] = {}
        for name, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                out[name] = float(value)
        return out
