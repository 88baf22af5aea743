"""Hypothesis profiles for every test: reproducible in CI, wider on demand, seeds printed on failure;
and the global random generators as each test found them.

- `ci` (when `CI=true`): derandomized, so a run's examples depend only on the code and the tests, and
  a failure reproduces on any machine.
- `dev` (the default elsewhere): random examples, Hypothesis's example database remembers failures.
- `wide` (`HYPOTHESIS_PROFILE=wide`): ten times the examples, for a long hunt before a release.

Every profile prints the reproduction blob (`@reproduce_failure(...)`) of a failing example. Tests
give their budget relative to the profile (`examples(8)` is eight times the profile's default), so
`wide` widens them all.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping

import numpy as np
import pytest
from hypothesis import settings

BASE_EXAMPLES = 100
# Each profile derives from Hypothesis's own defaults, not from whatever profile is loaded when this
# module runs: imported a second time (`from tests.conftest import ...`) under CI=true, a profile
# built from the current default would inherit `ci`'s derandomize.
_DEFAULT = settings.get_profile("default")
PROFILES = {
    "ci": settings(_DEFAULT, derandomize=True, print_blob=True, max_examples=BASE_EXAMPLES, deadline=None),
    "dev": settings(_DEFAULT, print_blob=True, max_examples=BASE_EXAMPLES, deadline=None),
    "wide": settings(_DEFAULT, print_blob=True, max_examples=10 * BASE_EXAMPLES, deadline=None),
}
for _name, _profile in PROFILES.items():
    settings.register_profile(_name, _profile)


def profile_name(env: Mapping[str, str] = os.environ) -> str:
    """The profile to load: HYPOTHESIS_PROFILE when set, `ci` when CI=true, else `dev`."""
    chosen = env.get("HYPOTHESIS_PROFILE") or ("ci" if env.get("CI", "").lower() == "true" else "dev")
    if chosen not in PROFILES:
        raise ValueError(f"HYPOTHESIS_PROFILE={chosen!r} is not a profile; use one of {', '.join(PROFILES)}")
    return chosen


settings.load_profile(profile_name())


@pytest.fixture(autouse=True)
def _global_random_state_restored() -> Iterator[None]:
    """Python's and NumPy's global generators as the test found them (set_random_seed sets both)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    yield
    random.setstate(python_state)
    np.random.set_state(numpy_state)
