import math

import pytest
import torch

from hamgan.metrics.inception_score import inception_score, inception_score_from_probs


def test_uniform_predictions_score_one():
    mean, std = inception_score_from_probs(torch.full((100, 1008), 1 / 1008), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 5, 10, 20])
def test_k_equally_likely_one_hot_classes_score_k(k):
    labels = torch.arange(200) % k  # every split of 20 holds each class equally often for these k
    probs = torch.nn.functional.one_hot(labels, 1008).double()
    mean, std = inception_score_from_probs(probs, splits=10)
    assert mean == pytest.approx(k, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)


def test_logits_are_softmaxed():
    logits = torch.nn.functional.one_hot(torch.arange(40) % 4, 1008).float() * 100.0  # confident: ~one-hot
    mean, _ = inception_score(logits, splits=2)
    assert mean == pytest.approx(4.0, rel=1e-6)


def test_splits_give_mean_and_population_std():
    # split 1: two classes -> 2; split 2: one class -> 1; remainder dropped
    probs = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1, 3, 3, 3, 3, 5]), 1008).double()
    mean, std = inception_score_from_probs(probs, splits=2)
    assert mean == pytest.approx(1.5)
    assert std == pytest.approx(0.5)
    # one split over 8 samples: marginal (1/4, 1/4, 1/2), score = exp(entropy of the marginal)
    entropy = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    assert inception_score_from_probs(probs[:8], splits=1)[0] == pytest.approx(math.exp(entropy))


def test_too_few_samples_for_splits_is_an_error():
    with pytest.raises(ValueError, match="10 splits needs at least 10 samples"):
        inception_score_from_probs(torch.full((5, 1008), 1 / 1008), splits=10)
