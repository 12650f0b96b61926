"""The one integer and number validator (rql_lite.checks): what passes, and messages that name the argument."""
import argparse

import numpy as np
import pytest

from rql_lite import checks


def test_integers_in_range_pass_and_come_back_as_int():
    assert checks.check_int(np.int64(3), "n", 1) == 3 and type(checks.check_int(np.int64(3), "n", 1)) is int
    assert checks.check_int(None, "max_steps", 1, allow_none=True) is None
    assert checks.check_int(5, "seed", 0, 5) == 5


@pytest.mark.parametrize("value, kwargs, message", [
    (0, dict(minimum=1), "--steps must be an integer >= 1, got 0"),
    (2.0, dict(minimum=1), "--steps must be an integer >= 1, got 2.0"),
    (True, dict(minimum=0), "--steps must be an integer >= 0, got True"),
    (7, dict(minimum=0, maximum=5), "--steps must be an integer between 0 and 5, got 7"),
    (None, dict(minimum=1), "--steps must be an integer >= 1, got None"),
    (-1, dict(minimum=0, allow_none=True, none_means="one per core"),
     "--steps must be None (one per core) or an integer >= 0, got -1"),
])
def test_a_bad_integer_is_named_with_what_was_expected(value, kwargs, message):
    with pytest.raises(ValueError) as err:
        checks.check_int(value, "--steps", **kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize("value, kwargs, message", [
    (float("inf"), {}, "alpha must be a finite number, got inf"),
    (True, {}, "alpha must be a finite number, got True"),
    (-1.0, dict(minimum=0.0), "alpha must be a finite number >= 0, got -1.0"),
    (1.0, dict(above=0.0, below=1.0, hint="kappa", note="0.9 is close to max"),
     "alpha (kappa) must be a finite number strictly between 0 and 1, got 1.0; 0.9 is close to max"),
    (1.5, dict(minimum=0.0, maximum=1.0), "alpha must be a finite number in [0, 1], got 1.5"),
])
def test_a_bad_number_is_named_with_what_was_expected(value, kwargs, message):
    with pytest.raises(ValueError) as err:
        checks.check_number(value, "alpha", **kwargs)
    assert str(err.value) == message
    assert checks.check_number(0.5, "alpha", 0.0, 1.0) == 0.5


def test_command_line_words_are_parsed_then_checked():
    count = checks.int_argument(1)
    assert count("3") == 3
    for word, message in (("0", "must be an integer >= 1, got 0"), ("ten", "expected an integer, got 'ten'")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            count(word)
    positive = checks.number_argument(above=0.0)
    assert positive("2.5") == 2.5
    with pytest.raises(argparse.ArgumentTypeError, match="must be a finite number > 0, got inf"):
        positive("inf")
