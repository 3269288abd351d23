"""Tests for eva_utils.training.history: a run's numbers and their JSON."""

import pytest

from eva_utils import training
from eva_utils.core.errors import UserError


def test_history_roundtrips_through_json(tmp_path):
    h = training.History()
    h.append(1, training.EpochStats(1.5, 0.4, lr=0.1), training.EpochStats(1.2, 0.5, [0.3, 0.5]), 2.0)
    path = h.save(tmp_path / "sub" / "history.json")
    assert training.History.load(path) == h
    (tmp_path / "bad.json").write_text('{"nope": [1]}')
    with pytest.raises(UserError, match="History"):
        training.History.load(tmp_path / "bad.json")


def test_epoch_stats_of_an_evaluation_have_no_learning_rate_and_compare_equal():
    # None, not NaN: dataclass equality compares fields with == on Python 3.13, and NaN != NaN
    assert training.EpochStats(1.0, 0.5).lr is None
    assert training.EpochStats(1.0, 0.5) == training.EpochStats(1.0, 0.5)
