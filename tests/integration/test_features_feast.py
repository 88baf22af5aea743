"""The Feast repo on real ml-100k: the CLI builds, materializes and shows; Feast joins point-in-time.

Runs the real `mlops` CLI in subprocesses against a temporary data directory (fetching ml-100k
with `mlops data fetch`), then checks Feast's answers against `features.compute`, and Feast's
registry against the SageMaker export, in this environment and in the CDK one (.venv-cdk).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.compute import user_features
from features.definition import FEATURE_VIEWS, feature_view
from features.feast_repo import FeastRepo, historical_features, registered_schema
from features.sagemaker import feature_group_specs
from standins.ports import free_port
from tests.integration.conftest import seed_wheel_cache

ROOT = Path(__file__).resolve().parents[2]
MLOPS = ROOT / ".venv" / "bin" / "mlops"
CDK_PYTHON = ROOT / ".venv-cdk" / "bin" / "python"
DATASET = "ml-100k"

pytestmark = pytest.mark.slow


def run_cli(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLOPS_DATA_DIR": str(data_dir)}
    proc = subprocess.run(
        [str(MLOPS), *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"mlops {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def one_json(proc: subprocess.CompletedProcess[str]) -> dict:
    """stdout must be exactly one JSON object."""
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"stdout is not one JSON line:\n{proc.stdout[-2000:]}"
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def built(tmp_path_factory, wheel_cache: Path) -> dict:
    """Fetch ml-100k, then `mlops features build` and `mlops features materialize`, through the CLI."""
    data_dir = tmp_path_factory.mktemp("features-data")
    seed_wheel_cache(wheel_cache, data_dir)
    # --no-dvc: a test must not rewrite the project's dvc.lock.
    run_cli(data_dir, "data", "fetch", "--dataset", DATASET, "--no-dvc", "--json")
    build = one_json(run_cli(data_dir, "features", "build", "--dataset", DATASET, "--json"))
    materialize = one_json(run_cli(data_dir, "features", "materialize", "--dataset", DATASET, "--json"))
    from dataset.tables import load_tables

    return {
        "data_dir": data_dir,
        "build": build,
        "materialize": materialize,
        "tables": load_tables(DATASET, data_dir),
    }


def test_build_and_materialize_report(built):
    build, mat = built["build"], built["materialize"]
    assert build["dataset"] == DATASET
    # ml-100k spans 1997-09-20 .. 1998-04-22: weekly snapshots plus the final one.
    assert build["snapshots"] == 31
    assert build["last_snapshot"] == "1998-04-22T23:10:39+00:00"
    assert build["rows"]["movie_features"] == 31 * 1682
    assert mat["online_entities"] == {"user_features": 943, "movie_features": 1682}


def test_show_prints_the_users_latest_features(built):
    out = one_json(run_cli(built["data_dir"], "features", "show", "--user-id", "1", "--json"))
    assert out["user_id"] == 1 and out["view"] == "user_features"
    tables = built["tables"]
    expected = user_features(tables.ratings, tables.movies).set_index("user_id").loc[1]
    assert list(out["features"]) == feature_view("user_features").feature_names
    assert out["features"]["user_rating_count"] == 272
    for name, value in out["features"].items():
        assert value == pytest.approx(float(expected[name]), rel=1e-12), name


def test_show_unknown_user_fails_loudly(built):
    proc = run_cli(built["data_dir"], "features", "show", "--user-id", "99999", "--json", check=False)
    assert proc.returncode == 1
    out = one_json(proc)
    assert out["ok"] is False
    assert "user_id 99999 is not in the online store" in out["error"]


def _store(built):
    return FeastRepo.for_dataset(DATASET, built["data_dir"]).store()


def test_feast_registry_and_sagemaker_export_agree(built):
    feast_to_sagemaker = {"Int64": "Integral", "Float64": "Fractional", "String": "String"}
    store = _store(built)
    registered = registered_schema(store)
    specs = {s["FeatureGroupName"]: s for s in feature_group_specs()}
    assert set(registered) == set(specs) == {v.name for v in FEATURE_VIEWS}
    for view in FEATURE_VIEWS:
        spec = specs[view.name]
        exported = {d["FeatureName"]: d["FeatureType"] for d in spec["FeatureDefinitions"]}
        fv = store.get_feature_view(view.name)
        # The record identifier is Feast's join key, the event time Feast's timestamp field.
        assert fv.entity_columns[0].name == spec["RecordIdentifierFeatureName"] == view.join_key
        assert exported.pop(spec["RecordIdentifierFeatureName"]) == "Integral"
        assert fv.batch_source.timestamp_field == spec["EventTimeFeatureName"]
        exported.pop(spec["EventTimeFeatureName"])
        as_sagemaker = {name: feast_to_sagemaker[t] for name, t in registered[view.name].items()}
        assert as_sagemaker == exported
        assert list(registered[view.name]) == view.feature_names


def test_cdk_environment_exports_the_same_groups():
    """.venv-cdk has no Feast or pandas; it must import the definition and exporter and get the same specs."""
    code = "import json, features.sagemaker as s; print(json.dumps(s.feature_group_specs()))"
    proc = subprocess.run(
        [str(CDK_PYTHON), "-c", code], capture_output=True, text=True, cwd=ROOT, check=False, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(json.dumps(feature_group_specs()))
    here = subprocess.run(
        [sys.executable, "-c", "import features.definition as d; print(d.DEFINITION_VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    )
    there = subprocess.run(
        [str(CDK_PYTHON), "-c", "import features.definition as d; print(d.DEFINITION_VERSION)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert here.stdout == there.stdout


def test_historical_features_join_point_in_time(built):
    tables = built["tables"]
    times = [
        pd.Timestamp(t)
        for t in sorted(
            pd.read_parquet(
                FeastRepo.for_dataset(DATASET, built["data_dir"]).offline_path(feature_view("user_features")),
                columns=["event_timestamp"],
            )["event_timestamp"].unique()
        )
    ]
    t_k, t_next = times[10], times[11]
    view = feature_view("user_features")
    first_of_user_2 = min(
        t for t in times if (user_features(tables.ratings, tables.movies, as_of=t)["user_id"] == 2).any()
    )
    entity_df = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2],
            "event_timestamp": [
                t_k + pd.Timedelta(days=3),  # between two snapshots: the earlier one applies
                t_next,  # exactly at a snapshot: that snapshot applies (it used only earlier ratings)
                times[0] - pd.Timedelta(days=1),  # before any snapshot: nothing
                times[-1] + pd.Timedelta(days=view.ttl_days + 1),  # past the TTL: nothing
                first_of_user_2 - pd.Timedelta(seconds=1),  # before the user's first rating: nothing
            ],
        }
    )
    got = historical_features(_store(built), entity_df, view)
    # One row per entity row, in order: none dropped, even where Feast finds nothing.
    assert len(got) == len(entity_df)
    pd.testing.assert_frame_equal(got[["user_id", "event_timestamp"]], entity_df, check_dtype=False)
    for row, as_of in ((0, t_k), (1, t_next)):
        expected = user_features(tables.ratings, tables.movies, as_of=as_of).set_index("user_id").loc[1]
        for name in view.feature_names:
            assert got.loc[row, name] == pytest.approx(float(expected[name]), rel=1e-12), (row, name)
    # Seven days apart, so the two rows differ: the join really picked a different snapshot for each.
    assert got.loc[1, "user_days_since_last_rating"] != got.loc[0, "user_days_since_last_rating"]
    assert got.loc[[2, 3, 4], view.feature_names].isna().all().all()


def test_online_reader(built):
    from features.online import FeastOnlineReader, UnknownEntityError

    reader = FeastOnlineReader(DATASET, built["data_dir"])
    user = reader.user_features(1)
    assert list(user) == feature_view("user_features").feature_names
    assert reader.get_user_features(1) == {k: float(v) for k, v in user.items()}
    assert reader.get_user_features(99999) is None
    with pytest.raises(UnknownEntityError, match="user_id 99999"):
        reader.user_features(99999)
    unknown_year = reader.movie_features(267)  # ml-100k's "unknown" movie has no release year
    assert unknown_year["movie_release_year"] is None
    assert unknown_year["movie_genres"] == "unknown"
    top = reader.movie_features(50)  # Star Wars: the most-rated movie of ml-100k
    assert top["movie_popularity_rank"] == 1
    assert top["movie_rating_count"] == 583


def test_feast_feature_server_serves_the_repo(built):
    """Serving reads user features from `feast serve` over HTTP: the generated repo must work there too."""
    import signal
    import time
    import urllib.error
    import urllib.request

    repo = FeastRepo.for_dataset(DATASET, built["data_dir"])
    port = free_port()
    feast = ROOT / ".venv" / "bin" / "feast"
    log = (built["data_dir"] / "feast-serve.log").open("w")
    proc = subprocess.Popen(
        [str(feast), "-c", str(repo.path), "serve", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # a start-up limit, not a measured figure: Feast imports slowly
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"feast serve exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"feast serve did not answer /health on port {port}; see {log.name}")
            time.sleep(2)
        names = feature_view("user_features").feature_names
        body = json.dumps(
            {"features": [f"user_features:{n}" for n in names], "entities": {"user_id": [1, 99999]}}
        ).encode()
        request = urllib.request.Request(
            f"{base}/get-online-features", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            doc = json.loads(resp.read())
        columns = dict(zip(doc["metadata"]["feature_names"], doc["results"], strict=True))
        tables = built["tables"]
        expected = user_features(tables.ratings, tables.movies).set_index("user_id").loc[1]
        for name in names:
            assert columns[name]["statuses"] == ["PRESENT", "NOT_FOUND"], name
            assert columns[name]["values"][0] == pytest.approx(float(expected[name]), rel=1e-12), name
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
