import argparse

import pytest

from eva_utils.apps.argtypes import finite_float, non_negative_int, positive_float, positive_int


@pytest.mark.parametrize(
    "kind, text, expected",
    [(positive_int, "3", 3), (non_negative_int, "0", 0), (positive_float, "1e-3", 1e-3), (positive_float, "2", 2.0),
     (finite_float, "-0.5", -0.5)],
)
def test_accepted(kind, text, expected):
    assert kind(text) == expected and type(kind(text)) is type(expected)


@pytest.mark.parametrize(
    "kind, text, message",
    [
        (positive_int, "0", "must be a positive integer, got 0"),
        (positive_int, "2.5", "expected a positive integer, got '2.5'"),
        (non_negative_int, "-1", "must be 0 or more, got -1"),
        (non_negative_int, "one", "expected a whole number"),
        (positive_float, "0", "must be a positive number"),
        (positive_float, "nan", "must be a positive number"),
        (positive_float, "fast", "expected a positive number, got 'fast'"),
        (positive_float, "inf", "must be a positive number, got inf"),
        (finite_float, "nan", "must be a finite number, got nan"),
        (finite_float, "-inf", "must be a finite number"),
    ],
)
def test_refused_with_what_was_wrong(kind, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        kind(text)
