"""Hyperparameters.from_sagemaker: SageMaker's strings in, typed values out, every bad key named."""

from __future__ import annotations

import pytest

from training.hyperparameters import HyperparameterError, Hyperparameters


def test_strings_are_converted():
    hp = Hyperparameters.from_sagemaker(
        {"epochs": "12", "learning_rate": "0.01", "implicit": "false", "dataset": "ml-1m", "seed": '"3"'}
    )
    assert hp.epochs == 12 and isinstance(hp.epochs, int)
    assert hp.learning_rate == 0.01
    assert hp.implicit is False
    assert hp.dataset == "ml-1m"
    assert hp.seed == 3


def test_empty_gives_defaults_and_round_trips():
    hp = Hyperparameters.from_sagemaker({})
    assert hp == Hyperparameters()
    assert Hyperparameters.from_sagemaker(hp.to_sagemaker()) == hp
    assert all(isinstance(v, str) for v in hp.to_sagemaker().values())


def test_unknown_key_is_named_with_the_allowed_ones():
    with pytest.raises(HyperparameterError) as exc:
        Hyperparameters.from_sagemaker({"epochz": "3"})
    msg = str(exc.value)
    assert "'epochz'" in msg
    assert "epochs" in msg and "embedding_dim" in msg and "dataset_version" in msg


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("epochs", "ten"),
        ("epochs", "0"),
        ("batch_size", "2.5"),
        ("learning_rate", "-1"),
        ("implicit", "maybe"),
        ("id_dropout", "1.0"),
        ("dataset", ""),
    ],
)
def test_bad_value_names_key_and_value(key: str, value: str):
    with pytest.raises(HyperparameterError) as exc:
        Hyperparameters.from_sagemaker({key: value})
    assert f"{key}={value!r}" in str(exc.value)


def test_object_is_frozen_and_strict_on_construction():
    hp = Hyperparameters()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own ValidationError
        hp.epochs = 3  # type: ignore[misc]
    with pytest.raises(Exception):  # noqa: B017
        Hyperparameters(nope=1)  # type: ignore[call-arg]
