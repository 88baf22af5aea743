"""Tables round-trip through Parquet with the contract's types; archives become the raw layout."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from dataset import store
from dataset.schema import DATASETS
from dataset.sources import SourceError, layout_from_archive
from dataset.tables import load_tables
from tests.unit.test_data_validate import U_DATA, U_USER, _u_item

ML100K = DATASETS["ml-100k"]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_archive_layout_transcodes_latin1_titles():
    item = _u_item().replace(b"GoldenEye", "GoldenÉye".encode("iso-8859-1"))
    archive = _zip(
        {"ml-100k/u.data": U_DATA, "ml-100k/u.item": item, "ml-100k/u.user": U_USER, "ml-100k/README": b"x"}
    )
    raw = layout_from_archive(ML100K, archive, "test.zip")
    assert sorted(raw.files) == ["u.data", "u.item", "u.user"]
    assert "GoldenÉye" in raw.files["u.item"].decode("utf-8")
    assert raw.provenance["transcoded_to_utf8_from"] == {"u.item": "iso-8859-1"}


def test_archive_missing_member_names_it():
    with pytest.raises(SourceError, match=r"has no u\.user"):
        layout_from_archive(ML100K, _zip({"ml-100k/u.data": U_DATA, "ml-100k/u.item": _u_item()}), "t.zip")
    with pytest.raises(SourceError, match="not a zip"):
        layout_from_archive(ML100K, b"not a zip", "t.zip")


def _put_raw(tmp_path, **files: bytes) -> None:
    raw = {"u.data": U_DATA, "u.item": _u_item(), "u.user": U_USER}
    raw.update({k.replace("_", "."): v for k, v in files.items()})
    d = tmp_path / "raw" / "ml-100k"
    d.mkdir(parents=True)
    for name, data in raw.items():
        (d / name).write_bytes(data)


def test_validate_writes_tables_that_load_with_contract_types(tmp_path):
    _put_raw(tmp_path)
    report = store.validate("ml-100k", tmp_path)
    assert report["tables_written"] and report["ok"]
    assert (report["rows_in"], report["accepted"], report["rejected"]) == (4, 4, 0)
    t = load_tables("ml-100k", tmp_path)
    assert [str(x) for x in t.ratings.dtypes] == ["int32", "int32", "float32", "int64"]
    assert [str(x) for x in t.movies.dtypes] == ["int32", "object", "Int16", "object"]
    assert [str(x) for x in t.users.dtypes] == ["int32", "int16", "object", "object", "object"]
    assert t.movies["year"].isna().sum() == 1


def test_fail_policy_writes_no_tables_and_quarantine_keeps_good_rows(tmp_path):
    _put_raw(tmp_path, u_data=U_DATA + b"1\t3\t9\t881250960\n")
    report = store.validate("ml-100k", tmp_path, store.Policy.FAIL)
    assert not report["tables_written"]
    with pytest.raises(FileNotFoundError, match="mlops data fetch --dataset ml-100k"):
        load_tables("ml-100k", tmp_path)
    report = store.validate("ml-100k", tmp_path, store.Policy.QUARANTINE)
    assert report["tables_written"] and report["reasons"] == {"rating_out_of_range": 1}
    assert len(load_tables("ml-100k", tmp_path).ratings) == 4
    lines = (tmp_path / "ml-100k" / "quarantine" / "ratings.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "file": "u.data",
            "line": 5,
            "reason": "rating_out_of_range",
            "field": "rating",
            "raw": "1\t3\t9\t881250960",
        }
    ]
