import math

import numpy as np

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


def test_splits_follow_improved_gan_and_give_mean_and_population_std():
    # improved-gan's parts: [i*n//splits, (i+1)*n//splits), nothing dropped. n = 9, 2 splits: [0:4] and [4:9]
    probs = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1, 3, 3, 3, 3, 5]), 1008).double()
    mean, std = inception_score_from_probs(probs, splits=2)
    p5 = torch.tensor([0.8, 0.2])  # part 2: class 3 four times, class 5 once -> exp(entropy of its marginal)
    second = math.exp(float(-(p5 * p5.log()).sum()))
    assert mean == pytest.approx((2.0 + second) / 2)
    assert std == pytest.approx(abs(2.0 - second) / 2)
    # one split over 8 samples: marginal (1/4, 1/4, 1/2), score = exp(entropy of the marginal)
    entropy = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    assert inception_score_from_probs(probs[:8], splits=1)[0] == pytest.approx(math.exp(entropy))


def improved_gan_is(logits: np.ndarray, splits: int) -> tuple[float, float]:
    """improved-gan's get_inception_score on given logits (its graph: softmax of pool3 @ W, no bias), in numpy."""
    e = np.exp(logits - logits.max(1, keepdims=True))
    preds = e / e.sum(1, keepdims=True)
    scores = []
    for i in range(splits):
        part = preds[(i * preds.shape[0] // splits):((i + 1) * preds.shape[0] // splits), :]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores)), float(np.std(scores))


def test_both_bias_conventions_on_synthetic_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(103, 1008))  # no bias: what InceptionFeatures returns
    bias = rng.normal(scale=2.0, size=1008)
    ours = inception_score(torch.from_numpy(logits), splits=10)
    assert ours == pytest.approx(improved_gan_is(logits, 10), rel=1e-10)  # default: improved-gan, no bias
    with_bias = inception_score(torch.from_numpy(logits), splits=10, bias=torch.from_numpy(bias))
    assert with_bias == pytest.approx(improved_gan_is(logits + bias, 10), rel=1e-10)  # TF-GAN / StudioGAN
    assert with_bias[0] != pytest.approx(ours[0], rel=1e-3)  # the conventions give different numbers


def test_too_few_samples_for_splits_is_an_error():
    with pytest.raises(ValueError, match="10 splits needs at least 10 samples"):
        inception_score_from_probs(torch.full((5, 1008), 1 / 1008), splits=10)
