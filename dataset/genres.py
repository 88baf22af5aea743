"""The MovieLens genre vocabulary: standard library only, so the feature definition can share it."""

from __future__ import annotations

from typing import Final

# The genre vocabulary, in the order of ml-100k's u.genre (ml-1m uses the same names minus "unknown").
# Normalized `genres` columns join names in this order, so equal genre sets give equal strings.
GENRES: Final[tuple[str, ...]] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
