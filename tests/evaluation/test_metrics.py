import numpy as np
import pytest
import torch
from torch import nn

from eva_utils import data
from eva_utils.core.errors import UserError
from eva_utils.evaluation import metrics as evaluation


class Linear(nn.Module):
    def __init__(self, exits=1):
        super().__init__()
        torch.manual_seed(0)
        self.heads = nn.ModuleList(nn.Linear(3 * 32 * 32, 10) for _ in range(exits))

    def forward(self, x):
        outs = [h(x.flatten(1)) for h in self.heads]
        return outs if len(outs) > 1 else outs[0]


@pytest.fixture(scope="module")
def test_set():
    return data.load_sample(train=False)


def test_predict_matches_a_direct_forward(test_set):
    model = Linear().train()
    loader = data.make_loader(test_set, batch_size=64, num_workers=0)
    pred = evaluation.predict(model, loader)
    images = torch.stack([test_set[i][0] for i in range(len(test_set))])
    with torch.no_grad():
        probs = torch.softmax(model.eval()(images), 1).numpy()
    np.testing.assert_allclose(pred.probs, probs, atol=1e-5)
    assert np.array_equal(pred.labels, test_set.labels)
    assert np.array_equal(pred.indices, np.arange(1000))
    assert pred.preds.tolist() == probs.argmax(1).tolist()


def test_predict_restores_training_mode_and_picks_exits(test_set):
    model = Linear(exits=3).train()
    loader = data.make_loader(test_set, batch_size=200, num_workers=0)
    first = evaluation.predict(model, loader, output_index=0)
    last = evaluation.predict(model, loader)
    assert model.training
    assert not np.allclose(first.probs, last.probs)


def test_predict_refuses_shuffled_loaders(test_set):
    with pytest.raises(UserError, match="unshuffled"):
        evaluation.predict(Linear(), data.make_loader(test_set, 64, shuffle=True, num_workers=0))


def _fake_predictions():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.4, 0.6], [0.2, 0.8], [0.55, 0.45]], np.float32)
    labels = np.array([0, 0, 1, 0, 1])
    return evaluation.Predictions(probs, probs.argmax(1), labels, np.arange(5))


def test_misclassified_most_confident_first():
    pred = _fake_predictions()
    assert evaluation.misclassified(pred).tolist() == [3, 1, 4]  # confidences 0.8, 0.7, 0.55
    assert evaluation.misclassified(pred, k=2).tolist() == [3, 1]
    assert evaluation.accuracy(pred) == pytest.approx(0.4)


def test_confusion_matrix_and_per_class_accuracy_agree_with_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    cm = evaluation.confusion_matrix(labels, preds, 10)
    assert np.array_equal(cm, metrics.confusion_matrix(labels, preds, labels=range(10)))
    np.testing.assert_allclose(evaluation.per_class_accuracy(labels, preds, 10),
                               metrics.recall_score(labels, preds, average=None, labels=range(10)))


def test_per_class_accuracy_of_an_absent_class_is_nan():
    acc = evaluation.per_class_accuracy(np.array([0, 0]), np.array([0, 1]), 3)
    assert acc[0] == 0.5 and np.isnan(acc[2])
    with pytest.raises(UserError, match="outside"):
        evaluation.confusion_matrix(np.array([0, 5]), np.array([0, 1]), 3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_predict_and_evaluate(test_set, dtype):
    from eva_utils import models, training

    torch.manual_seed(0)
    full = models.resnet18(width=8).eval()
    half = models.resnet18(width=8).eval()
    half.load_state_dict(full.state_dict())
    half = half.to(dtype)
    subset = torch.utils.data.Subset(test_set, range(0, 1000, 10))
    loader = data.make_loader(subset, batch_size=50, num_workers=0)
    ref, got = evaluation.predict(full, loader), evaluation.predict(half, loader)
    assert got.probs.dtype == np.float32
    np.testing.assert_allclose(got.probs, ref.probs, atol=0.05)  # half precision, not equality
    stats = training.evaluate(half, loader, device="cpu")
    assert 0.0 <= stats.acc <= 1.0 and np.isfinite(stats.loss)
    assert stats.acc == pytest.approx(evaluation.accuracy(got), abs=0.03)
