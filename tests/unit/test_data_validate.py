"""Validation of small raw datasets built here, clean and corrupted: exact counts per reason."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataset.schema import DATASETS, GENRES
from dataset.validate import REASONS, validate_dataset
from tests.hypothesis_budget import examples

ML100K = DATASETS["ml-100k"]
ML1M = DATASETS["ml-1m"]
NOW = 1_000_000_000


def _flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in GENRES)


def _u_item() -> bytes:
    return (
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{_flags('Animation', 'Comedy')}\n"
        f"2|GoldenEye (1995)|01-Jan-1995||http://y|{_flags('Action')}\n"
        f"3|unknown||||{_flags('unknown')}\n"
    ).encode()


U_USER = b"1|24|M|technician|85711\n2|53|F|other|94043\n"
U_DATA = b"1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881250951\n2\t3\t1\t881250952\n"


def _files(**over: bytes) -> dict[str, bytes]:
    files = {"u.data": U_DATA, "u.item": _u_item(), "u.user": U_USER}
    files.update({k.replace("_", "."): v for k, v in over.items()})
    return files


def _counts(v, table: str) -> tuple[int, int, int, dict[str, int]]:
    r = v.reports[table]
    assert r.rows_in == r.accepted + r.rejected
    return r.rows_in, r.accepted, r.rejected, r.reasons


def test_clean_dataset_is_fully_accepted_with_contract_types():
    v = validate_dataset(ML100K, _files(), now=NOW)
    assert v.ok
    assert _counts(v, "ratings") == (4, 4, 0, {})
    assert _counts(v, "movies") == (3, 3, 0, {})
    assert _counts(v, "users") == (2, 2, 0, {})
    movies = v.tables["movies"]
    assert movies["title"].tolist() == ["Toy Story", "GoldenEye", "unknown"]
    assert movies["year"].tolist()[:2] == [1995, 1995]
    assert movies["year"].isna().tolist() == [False, False, True]
    assert movies["genres"].tolist() == ["Animation|Comedy", "Action", "unknown"]
    assert str(movies["year"].dtype) == "Int16"
    ratings = v.tables["ratings"]
    assert [str(t) for t in ratings.dtypes] == ["int32", "int32", "float32", "int64"]
    assert [str(t) for t in v.tables["users"].dtypes] == ["int32", "int16", "object", "object", "object"]


def test_truncated_last_line():
    v = validate_dataset(ML100K, _files(u_data=U_DATA + b"2\t2\t4"), now=NOW)
    assert _counts(v, "ratings") == (5, 4, 1, {"truncated_line": 1})
    assert v.reports["ratings"].samples[0].line == 5
    assert v.reports["ratings"].samples[0].raw == "2\t2\t4"
    assert not v.ok


def test_unterminated_but_complete_last_line_is_accepted():
    v = validate_dataset(ML100K, _files(u_data=U_DATA + b"2\t2\t4\t881250953"), now=NOW)
    assert _counts(v, "ratings") == (5, 5, 0, {})


def test_bad_ratings():
    data = U_DATA + b"1\t3\t9\t881250960\n1\t3\t0\t881250961\n1\t3\tfive\t881250962\n"
    v = validate_dataset(ML100K, _files(u_data=data), now=NOW)
    assert _counts(v, "ratings") == (7, 4, 3, {"rating_out_of_range": 2, "not_a_number": 1})
    assert [s.line for s in v.reports["ratings"].samples] == [5, 6, 7]


def test_unknown_movie_and_user_ids():
    data = U_DATA + b"1\t99\t4\t881250960\n7\t1\t4\t881250961\n"
    v = validate_dataset(ML100K, _files(u_data=data), now=NOW)
    assert _counts(v, "ratings") == (6, 4, 2, {"unknown_movie_id": 1, "unknown_user_id": 1})
    fields = {s.reason: s.field for s in v.reports["ratings"].samples}
    assert fields == {"unknown_movie_id": "movie_id", "unknown_user_id": "user_id"}


def test_duplicate_rating_keeps_the_first():
    data = U_DATA + b"1\t1\t5\t881250949\n1\t1\t2\t881250949\n1\t1\t5\t881250999\n"
    v = validate_dataset(ML100K, _files(u_data=data), now=NOW)
    # Same (user, movie, timestamp) twice more: both rejected; a new timestamp is a new rating.
    assert _counts(v, "ratings") == (7, 5, 2, {"duplicate_rating": 2})
    assert [s.line for s in v.rejections] == [5, 6]


def test_non_utf8_title_rejects_the_movie_and_its_ratings():
    item = _u_item().replace(b"GoldenEye", b"Golden\xe9ye")
    v = validate_dataset(ML100K, _files(u_item=item), now=NOW)
    assert _counts(v, "movies") == (3, 2, 1, {"not_utf8": 1})
    sample = v.reports["movies"].samples[0]
    assert (sample.line, sample.reason) == (2, "not_utf8")
    assert "Golden\\xe9ye" in sample.raw
    # The one rating of movie 2 now points at a movie that is not accepted.
    assert _counts(v, "ratings") == (4, 3, 1, {"unknown_movie_id": 1})


def test_empty_file_is_an_error_naming_the_file():
    v = validate_dataset(ML100K, _files(u_data=b""), now=NOW)
    assert [(e.file, e.reason) for e in v.file_errors] == [("u.data", "empty_file")]
    assert "u.data" in v.file_errors[0].message
    assert _counts(v, "ratings") == (0, 0, 0, {})
    assert not v.ok


def test_missing_file_is_an_error_naming_the_file():
    files = _files()
    del files["u.user"]
    v = validate_dataset(ML100K, files, now=NOW)
    assert [(e.file, e.reason) for e in v.file_errors] == [("u.user", "missing_file")]
    assert _counts(v, "ratings") == (4, 0, 4, {"unknown_user_id": 4})


def test_wrong_column_count_and_blank_line():
    data = U_DATA + b"1\t3\t4\t881250960\textra\n\n2\t2\n"
    v = validate_dataset(ML100K, _files(u_data=data), now=NOW)
    assert _counts(v, "ratings") == (7, 4, 3, {"wrong_column_count": 2, "blank_line": 1})


def test_integer_and_timestamp_checks():
    data = (
        U_DATA
        + b"x\t1\t4\t881250960\n"
        + b"1\t0\t4\t881250960\n"
        + b"1\t3\t4\t-5\n"
        + b"1\t3\t4\t1.5\n"
        + b"1\t3\t4\t2000000000\n"
    )
    v = validate_dataset(ML100K, _files(u_data=data), now=NOW)
    assert _counts(v, "ratings") == (9, 4, 5, {"not_an_integer": 1, "id_out_of_range": 1, "bad_timestamp": 3})


def test_crlf_line_ends_are_tolerated():
    v = validate_dataset(ML100K, _files(u_data=U_DATA.replace(b"\n", b"\r\n")), now=NOW)
    assert _counts(v, "ratings") == (4, 4, 0, {})
    assert v.tables["ratings"]["timestamp"].tolist()[0] == 881250949


def test_movie_and_user_field_checks():
    item = _u_item() + f"4|X|1995-01-01|||{_flags()}\n5|||||{_flags()}\n".encode()
    item += b"6|Y||||" + b"|".join([b"2"] * len(GENRES)) + b"\n"
    item += f"1|Duplicate (1990)||||{_flags()}\n".encode()
    users = U_USER + b"3|200|M|x|1\n4|30|X|x|1\n5|30|M||1\n6|30|F|x|\n2|40|M|writer|1\n"
    v = validate_dataset(ML100K, _files(u_item=item, u_user=users), now=NOW)
    assert _counts(v, "movies") == (
        7,
        3,
        4,
        {"bad_date": 1, "missing_value": 1, "bad_genre_flag": 1, "duplicate_id": 1},
    )
    assert _counts(v, "users") == (
        7,
        2,
        5,
        {"age_out_of_range": 1, "bad_gender": 1, "missing_value": 2, "duplicate_id": 1},
    )


def test_every_reason_is_documented():
    data = U_DATA + b"1\t3\t9\t881250960\n\n"
    v = validate_dataset(ML100K, _files(u_data=data), now=NOW)
    assert {r.reason for r in v.rejections} <= set(REASONS)


def test_ml1m_layout():
    movies = (
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Misérables, Les (1995)::Drama|Musical\n"
        "3::Bad::Cartoon\n"
    ).encode()
    users = b"1::F::1::10::48067\n2::M::56::16::70072\n3::M::30::1::1\n4::M::25::21::1\n"
    ratings = b"1::1::5::978300760\n2::2::3::978300761\n1::3::3::978300762\n2::1::4.5::978300763\n"
    v = validate_dataset(
        ML1M, {"movies.dat": movies, "users.dat": users, "ratings.dat": ratings}, now=2_000_000_000
    )
    assert _counts(v, "movies") == (3, 2, 1, {"unknown_genre": 1})
    assert _counts(v, "users") == (4, 2, 2, {"age_out_of_range": 1, "bad_occupation": 1})
    assert _counts(v, "ratings") == (4, 3, 1, {"unknown_movie_id": 1})
    m = v.tables["movies"]
    assert m["title"].tolist() == ["Toy Story", "Misérables, Les"]
    assert m["genres"].tolist() == ["Animation|Children's|Comedy", "Drama|Musical"]
    u = v.tables["users"]
    assert u["occupation"].tolist() == ["K-12 student", "self-employed"]
    assert v.tables["ratings"]["rating"].tolist() == [5.0, 3.0, 4.5]


def test_large_file_counts_stay_exact():
    lines = [f"{1 + i % 2}\t{1 + i % 3}\t{1 + i % 5}\t{881250949 + i}" for i in range(20_000)]
    lines[123] = "1\t1\t7\t881250949"
    data = ("\n".join(lines) + "\n").encode()
    v = validate_dataset(ML100K, _files(u_data=data), now=NOW)
    assert _counts(v, "ratings") == (20_000, 19_999, 1, {"rating_out_of_range": 1})
    assert v.rejections[0].line == 124
    assert isinstance(v.tables["ratings"], pd.DataFrame)


@pytest.mark.parametrize("name", ["ml-100k", "ml-1m"])
def test_all_files_empty(name):
    spec = DATASETS[name]
    v = validate_dataset(spec, {f.name: b"" for f in spec.files}, now=NOW)
    assert sorted(e.file for e in v.file_errors) == sorted(f.name for f in spec.files)
    assert all(len(t) == 0 for t in v.tables.values())


_FIELD = st.sampled_from(["1", "2", "3", "99", "0", "-1", "4.5", "x", "", "881250949", "9999999999", "é"])


@settings(max_examples=examples(0.5), deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(_FIELD, min_size=0, max_size=6), st.sampled_from(["\t", "|"])),
        max_size=40,
    ),
    st.booleans(),
)
def test_every_row_is_accounted_for(rows, final_newline):
    lines = [sep.join(fields) for fields, sep in rows]
    data = "\n".join(lines).encode() + (b"\n" if final_newline and lines else b"")
    v = validate_dataset(ML100K, _files(u_data=data), now=NOW)
    ratings = v.reports["ratings"]
    # A row is a line ended by "\n", plus a non-empty unterminated tail.
    expected_rows = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    assert ratings.rows_in == expected_rows
    assert (
        ratings.rows_in == ratings.accepted + ratings.rejected == len(v.tables["ratings"]) + ratings.rejected
    )
    assert sum(ratings.reasons.values()) == ratings.rejected
    assert {r.reason for r in v.rejections} <= set(REASONS)
    assert sorted(r.line for r in v.rejections if r.file == "u.data") == sorted(
        set(r.line for r in v.rejections if r.file == "u.data")
    )
