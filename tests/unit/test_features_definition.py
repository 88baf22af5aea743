"""Invariants of the one feature definition."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from features import definition as d


def test_contract_names_exist():
    assert [e.join_key for e in d.ENTITIES] == ["user_id", "movie_id"]
    assert all(e.dtype == "int64" for e in d.ENTITIES)
    user = d.feature_view("user_features")
    movie = d.feature_view("movie_features")
    assert (user.entity, user.join_key, movie.entity, movie.join_key) == (
        "user",
        "user_id",
        "movie",
        "movie_id",
    )
    for name in ("user_rating_count", "user_rating_mean", "user_rating_std", "user_days_since_last_rating"):
        user.feature(name)
    for name in (
        "movie_rating_count",
        "movie_rating_mean",
        "movie_bayesian_rating",
        "movie_genres",
        "movie_release_year",
        "movie_popularity_rank",
    ):
        movie.feature(name)
    affinity = [n for n in user.feature_names if n.startswith("user_genre_affinity_")]
    assert len(affinity) == len(d.GENRES) == 19
    assert all(user.feature(n).dtype == "float64" for n in affinity)
    assert all(v.event_time_column == "event_timestamp" for v in d.FEATURE_VIEWS)


def test_names_unique_and_sagemaker_legal():
    legal = re.compile(r"^[a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63}$")
    names = [f.name for v in d.FEATURE_VIEWS for f in v.features]
    assert len(names) == len(set(names))
    for v in d.FEATURE_VIEWS:
        for name in (v.name, v.join_key, v.event_time_column, *v.feature_names):
            assert legal.match(name), name
            assert len(name) <= 64
        for f in v.features:
            assert f.dtype in d.DTYPES
            assert f.description


def test_genre_slugs():
    assert d.genre_affinity_feature("Children's") == "user_genre_affinity_childrens"
    assert d.genre_affinity_feature("Film-Noir") == "user_genre_affinity_film_noir"
    assert d.genre_affinity_feature("Sci-Fi") == "user_genre_affinity_sci_fi"
    with pytest.raises(ValueError, match="'--'"):
        d.genre_slug("--")


def test_lookups_name_what_exists():
    with pytest.raises(KeyError, match="user_features"):
        d.feature_view("users")
    with pytest.raises(KeyError, match="user_rating_count"):
        d.feature_view("user_features").feature("nope")
    with pytest.raises(KeyError, match="movie"):
        d.entity("film")


def test_version_is_a_content_hash():
    assert re.fullmatch(r"[0-9a-f]{12}", d.DEFINITION_VERSION)
    assert d.definition_version() == d.DEFINITION_VERSION
    user = d.feature_view("user_features")
    changed_type = dataclasses.replace(
        user, features=(dataclasses.replace(user.features[0], dtype="float64"), *user.features[1:])
    )
    views = (changed_type, d.feature_view("movie_features"))
    assert d.definition_version(views=views) != d.DEFINITION_VERSION
    longer_ttl = (dataclasses.replace(user, ttl_days=31), d.feature_view("movie_features"))
    assert d.definition_version(views=longer_ttl) != d.DEFINITION_VERSION
    assert d.definition_version(bayesian_prior_count=11) != d.DEFINITION_VERSION


def test_validation_catches_broken_definitions():
    user = d.feature_view("user_features")
    movie = d.feature_view("movie_features")
    clash = dataclasses.replace(movie, features=(*movie.features, user.features[0]))
    with pytest.raises(ValueError, match="'user_rating_count' is defined in both"):
        d.validate_definition(views=(user, clash))
    bad_name = dataclasses.replace(user, features=(d.Feature("user rating!", "int64", "x"),))
    with pytest.raises(ValueError, match="'user rating!' is not a legal SageMaker feature name"):
        d.validate_definition(views=(bad_name, movie))
    bad_type = dataclasses.replace(user, features=(d.Feature("x", "int32", "x"),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype 'int32'"):
        d.validate_definition(views=(bad_type, movie))
    bad_entity = dataclasses.replace(user, entity="customer")
    with pytest.raises(ValueError, match="unknown entity 'customer'"):
        d.validate_definition(views=(bad_entity, movie))
    with pytest.raises(ValueError, match="ttl_days must be positive"):
        d.validate_definition(views=(dataclasses.replace(user, ttl_days=0), movie))


def test_definition_imports_only_the_standard_library():
    code = (
        "import sys; import features.definition, features.sagemaker; "
        "heavy = {'pandas', 'numpy', 'feast', 'aws_cdk', 'pyarrow'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_genres_agree_with_the_data_layer():
    """The movies table joins dataset.schema.GENRES; the affinity features must cover exactly those."""
    from dataset.schema import GENRES

    assert tuple(GENRES) == d.GENRES
