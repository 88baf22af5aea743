"""RecBole atomic files -> GroupLens layout, and the deterministic ml-1m id mapping."""

from __future__ import annotations

import pytest

from dataset.recbole import ml1m_from_recbole, ml100k_from_recbole
from dataset.schema import DATASETS
from dataset.validate import validate_dataset

INTER_100K = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t2\t3\t881250949\n186\t1\t4\t891717742\n"
)
ITEM_100K = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "1\tToy Story\t1995\tAnimation Children's Comedy\n"
    "2\tunkonwn\tunkonwn\tunknown\n"
)
USER_100K = (
    "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    "186\t39\tF\texecutive\t00000\n196\t49\tM\twriter\t55105\n"
)

INTER_1M = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n"
    "1m_1\tJumanji (1995)\t5\t978300760\r\n"
    "1m_2\tToy Story (1995)\t3\t978300761\r\n"
    "1m_2\tJumanji (1995)\t4\t978300762\r\n"
)
ITEM_1M = (
    "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\r\n"
    "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy\r\n"
    "Jumanji (1995)\tJumanji\t1995\tAdventure Children's Fantasy\r\n"
    "Misérables, Les (1995)\tMisérables, Les\t1995\tDrama Musical\r\n"
)
USER_1M = (
    "user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token\r\n"
    "1m_1\t1\tF\t10\t48067\r\n1m_2\t56\tM\t16\t70072\r\n"
)


def test_ml100k_conversion_to_grouplens_layout():
    files = ml100k_from_recbole(INTER_100K, ITEM_100K, USER_100K, prefix="ml-100k")
    assert files["u.data"] == b"196\t2\t3\t881250949\n186\t1\t4\t891717742\n"
    first, second = files["u.item"].decode().splitlines()
    assert first.startswith("1|Toy Story (1995)||||0|0|0|1|1|1|0")
    assert second.startswith("2|unkonwn||||1|0")
    assert files["u.user"] == b"186|39|F|executive|00000\n196|49|M|writer|55105\n"
    v = validate_dataset(DATASETS["ml-100k"], files, now=2_000_000_000)
    assert v.ok
    assert v.tables["movies"]["year"].tolist()[0] == 1995


def test_ml1m_conversion_maps_titles_and_users_deterministically():
    files = ml1m_from_recbole(INTER_1M, ITEM_1M, USER_1M, prefix="ml-1m")
    assert files["movies.dat"].decode().splitlines() == [
        "1::Toy Story (1995)::Animation|Children's|Comedy",
        "2::Jumanji (1995)::Adventure|Children's|Fantasy",
        "3::Misérables, Les (1995)::Drama|Musical",
    ]
    assert files["ratings.dat"] == b"1::2::5::978300760\n2::1::3::978300761\n2::2::4::978300762\n"
    assert files["users.dat"] == b"1::F::1::10::48067\n2::M::56::16::70072\n"
    assert ml1m_from_recbole(INTER_1M, ITEM_1M, USER_1M, prefix="ml-1m") == files
    v = validate_dataset(DATASETS["ml-1m"], files, now=2_000_000_000)
    assert v.ok, v.reports


def test_ml1m_duplicate_title_cannot_be_mapped():
    item = ITEM_1M + "Jumanji (1995)\tJumanji\t1995\tComedy\r\n"
    with pytest.raises(ValueError, match=r"Jumanji .* appears twice"):
        ml1m_from_recbole(INTER_1M, item, USER_1M, prefix="ml-1m")


def test_ml1m_unknown_title_in_ratings_is_an_error():
    inter = INTER_1M + "1m_1\tHeat (1995)\t4\t978300763\r\n"
    with pytest.raises(ValueError, match=r"ml-1m.inter line 5: movie 'Heat \(1995\)'"):
        ml1m_from_recbole(inter, ITEM_1M, USER_1M, prefix="ml-1m")


def test_bad_user_token_and_header_are_errors():
    with pytest.raises(ValueError, match="'u7' is not of the form 1m_<integer>"):
        ml1m_from_recbole(INTER_1M.replace("1m_1\tJ", "u7\tJ"), ITEM_1M, USER_1M, prefix="ml-1m")
    with pytest.raises(ValueError, match="header columns"):
        ml100k_from_recbole(INTER_100K.replace("rating", "score"), ITEM_100K, USER_100K, prefix="p")


def test_unknown_genre_name_is_an_error():
    with pytest.raises(ValueError, match="Cartoon"):
        ml100k_from_recbole(INTER_100K, ITEM_100K.replace("unknown\n", "Cartoon\n"), USER_100K, prefix="p")
