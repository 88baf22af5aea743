"""The generated Feast repo gives every feature view a push source, named as Prepare pushes to it."""

from __future__ import annotations

from pathlib import Path

from features.definition import FEATURE_VIEWS
from features.feast_repo import FeastRepo, feast_objects, push_source_name


def test_every_view_reads_its_push_source(tmp_path: Path) -> None:
    from feast import FeatureView, PushSource

    objects = feast_objects(FeastRepo.for_dataset("ml-100k", tmp_path))
    views = {o.name: o for o in objects if isinstance(o, FeatureView)}
    pushes = {o.name for o in objects if isinstance(o, PushSource)}
    assert pushes == {push_source_name(v) for v in FEATURE_VIEWS}
    for view in FEATURE_VIEWS:
        fv = views[view.name]
        assert fv.stream_source is not None and fv.stream_source.name == push_source_name(view)
        # materialize still reads the offline Parquet file
        assert fv.batch_source.path == f"offline/{view.name}.parquet"
