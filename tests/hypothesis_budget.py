"""Example budgets relative to the loaded Hypothesis profile (profiles: tests/conftest.py)."""

from __future__ import annotations

from hypothesis import settings


def examples(multiple: float) -> int:
    """`multiple` times the loaded profile's max_examples (100 in ci and dev, 1000 in wide)."""
    return max(1, round(multiple * settings().max_examples))
