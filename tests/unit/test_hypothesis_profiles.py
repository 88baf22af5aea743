"""The Hypothesis profile is chosen as docs/testing.md says, and each prints its reproduction blob."""

from __future__ import annotations

import pytest
from hypothesis import settings

from tests.conftest import PROFILES, profile_name


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "dev"),
        ({"CI": "true"}, "ci"),
        ({"CI": "false"}, "dev"),
        ({"CI": "true", "HYPOTHESIS_PROFILE": "wide"}, "wide"),
        ({"HYPOTHESIS_PROFILE": "ci"}, "ci"),
    ],
)
def test_profile_is_chosen_from_the_environment(env, expected) -> None:
    assert profile_name(env) == expected


def test_unknown_profile_is_named() -> None:
    with pytest.raises(ValueError, match="'nope' is not a profile; use one of ci, dev, wide"):
        profile_name({"HYPOTHESIS_PROFILE": "nope"})


def test_ci_is_derandomized_wide_is_wider_and_all_print_the_blob() -> None:
    ci, dev, wide = (settings.get_profile(name) for name in ("ci", "dev", "wide"))
    assert ci.derandomize and not dev.derandomize
    assert wide.max_examples == 10 * dev.max_examples
    assert all(settings.get_profile(name).print_blob for name in PROFILES)
