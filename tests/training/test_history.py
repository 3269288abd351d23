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


_EPOCH = {"epoch": [1], "train_loss": [1.0], "train_acc": [0.5], "test_loss": [1.1], "test_acc": [0.4]}


@pytest.mark.parametrize(("text", "said"), [
    (b"5", "got 5"), (b"null", "got null"), (b"[]", "got []"),
    (b'{"epoch": [1], "train_loss": "x"}', "train_loss must be a list of numbers"),
    (b'{"epoch": [1], "train_loss": ["1.0"]}', "train_loss must be a list of numbers"),
    (b'{"epoch": [1], "train_loss": [true]}', "train_loss must be a list of numbers"),
    (b'{"epoch": [1, 2], "train_loss": [1.0]}', "2 epochs, but 1 entries in train_loss"),
    (b'{"epoch": [1], "test_exit_acc": [0.5]}', "test_exit_acc must be a list of lists"),
    (b"\xff\xfe{}", "codec can't decode"),
    (b'{"epoch": [1], "test_acc": [NaN]}', "test_acc holds nan; its values must be finite and between 0 and 1"),
    (b'{"epoch": [1], "test_acc": [-5.0]}', "test_acc holds -5.0"),
    (b'{"epoch": [1], "train_loss": [Infinity]}', "train_loss holds inf; its values must be finite and not negative"),
    (b'{"epoch": [1], "train_loss": [1' + b"0" * 400 + b']}', "train_loss holds 1000"),
    (b"[" * 100_000 + b"]" * 100_000, "recursion"),
    (b'{"epoch": [5, 3], "test_acc": [0.97, 0.99]}', "epoch 3 follows epoch 5; each epoch must be larger"),
    (b'{"epoch": [1, 1]}', "epoch 1 follows epoch 1"),
    (b'{"epoch": [0]}', "epoch holds 0; epochs are whole numbers from 1 up"),
    (b'{"epoch": [1.5]}', "epoch holds 1.5; epochs are whole numbers from 1 up"),
])
def test_a_damaged_history_is_refused_in_one_sentence(tmp_path, text, said):
    path = tmp_path / "history.json"
    path.write_bytes(text)
    with pytest.raises(UserError, match=f"history {path}") as caught:
        training.History.load(path)
    assert said in str(caught.value)


def test_lr_seconds_and_exit_accuracy_may_be_missing_but_not_short():
    assert len(training.History.from_dict(_EPOCH)) == 1  # a history that did not record them
    with pytest.raises(UserError, match="1 epochs, but 2 entries in lr"):
        training.History.from_dict({**_EPOCH, "lr": [0.1, 0.2]})


def test_the_first_difference_between_two_histories_is_named():
    nan = float("nan")
    one = training.History.from_dict({**_EPOCH, "lr": [nan]})
    assert one.difference(training.History.from_dict({**_EPOCH, "lr": [nan]})) is None  # NaN, an lr not recorded
    other = training.History.from_dict({**_EPOCH, "lr": [nan], "test_acc": [0.99]})
    assert one.difference(other, ("history.json", "the checkpoint")) == \
        "test_acc of epoch 1: 0.4 in history.json, 0.99 in the checkpoint"
    assert one.difference(training.History()) == "1 epochs in this history, 0 in the other"
