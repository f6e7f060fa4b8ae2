"""GFI's equations against values computed independently (plain torch ops, finite differences)."""

import pytest
import torch

from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion

MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)


def by_hand_mask(net, x, w):
    f1 = torch.relu(net.conv(x))  # l1, already at the input size (no upsampling needed)
    m = (w.view(1, -1, 1, 1) * f1).sum(1, keepdim=True)
    return (m - m.amin((2, 3), keepdim=True)) / (m.amax((2, 3), keepdim=True) - m.amin((2, 3), keepdim=True))


def by_hand_eq8(net, x, w, gamma):
    m = by_hand_mask(net, x, w)
    phi = x * m + MEAN * (1 - m)  # Eq. 2 with the mean-colour background
    f0 = lambda z: net.pool(torch.relu(net.conv(z)))  # noqa: E731
    return ((f0(phi) - f0(x)) ** 2).sum() + gamma * w.abs().sum()


def by_hand_eq9(net, x, w, c, lam, delta):
    m = by_hand_mask(net, x, w)
    phi = x * m + MEAN * (1 - m)
    phi_bg = x * (1 - m) + MEAN * m  # Eq. 4
    p = lambda z: net(z).softmax(-1)[0, c]  # noqa: E731
    return -p(phi) + lam * p(phi_bg) + delta * w.abs().sum()


@pytest.fixture
def tiny64(tiny, tiny_images):
    tiny.model.double()
    return tiny, tiny_images[:1].double()


def test_stage1_first_loss_is_eq8(tiny64):
    clf, x = tiny64
    e = GuidedFeatureInversion(clf, GFIConfig.paper(background="mean", iters1=1, stage2=False)).explain(x, 0)
    expected = by_hand_eq8(clf.model, x, torch.full((4,), 0.1, dtype=torch.float64), 10.0)
    assert e.loss_history["stage1"][0, 0].item() == pytest.approx(expected.item(), rel=1e-10)


def test_stage1_first_step_is_projected_adam(tiny64):
    # Adam's first step moves each w_i by lr against the sign of its gradient; then clip at 0.
    clf, x = tiny64
    lr, gamma = 0.05, 0.01
    e = GuidedFeatureInversion(clf, GFIConfig.paper(background="mean", iters1=1, lr1=lr, gamma=gamma,
                                                    stage2=False)).explain(x, 0)
    w0 = torch.full((4,), 0.1, dtype=torch.float64)
    grad = torch.zeros(4, dtype=torch.float64)
    for i in range(4):  # central finite differences of Eq. 8
        d = torch.zeros(4, dtype=torch.float64)
        d[i] = 1e-6
        grad[i] = (by_hand_eq8(clf.model, x, w0 + d, gamma) - by_hand_eq8(clf.model, x, w0 - d, gamma)) / 2e-6
    expected = (w0 - lr * grad.sign()).clamp(min=0)
    assert torch.allclose(e.stage1_weights[0], expected, atol=1e-6)


def test_stage2_first_loss_is_eq9(tiny64):
    clf, x = tiny64
    cfg = GFIConfig.paper(background="mean", iters1=3, iters2=1, lam=0.7, delta=0.3)
    e = GuidedFeatureInversion(clf, cfg).explain(x, 2)
    expected = by_hand_eq9(clf.model, x, e.stage1_weights[0], 2, 0.7, 0.3)
    assert e.loss_history["stage2"][0, 0, 0].item() == pytest.approx(expected.item(), rel=1e-9)


def test_stage2_halves_learning_rate_every_10_iterations(tiny64):
    clf, x = tiny64
    gfi = GuidedFeatureInversion(clf, GFIConfig.paper(background="mean", iters1=1, iters2=25))
    from gfi.masks.optimizer import MaskOptimizer

    seen = []
    orig = MaskOptimizer._step

    def spy(self, theta, state, lr):  # the learning rate of every update
        seen.append(lr)
        return orig(self, theta, state, lr)

    MaskOptimizer._step = spy
    try:
        gfi.explain(x, 0)
    finally:
        MaskOptimizer._step = orig
    stage2 = seen[1:]
    assert stage2[:10] == [0.01] * 10 and stage2[10:20] == [0.005] * 10 and stage2[20:] == [0.0025] * 5


def test_final_probabilities_are_those_of_kept_and_removed_images(tiny64):
    clf, x = tiny64
    e = GuidedFeatureInversion(clf, GFIConfig.paper(background="mean", iters1=2, iters2=2)).explain(x, 1)
    m = by_hand_mask(clf.model, x, e.weights[0, 0])
    assert torch.allclose(e.maps[0, 0], m[0, 0], atol=1e-9)
    kept = clf.model(x * m + MEAN * (1 - m)).softmax(-1)[0, 1]
    removed = clf.model(x * (1 - m) + MEAN * m).softmax(-1)[0, 1]
    assert e.prob_kept[0, 0].item() == pytest.approx(kept.item(), rel=1e-6)
    assert e.prob_removed[0, 0].item() == pytest.approx(removed.item(), rel=1e-6)


def test_l1_reading_at_zero():
    from gfi.methods.gfi import l1_penalty

    w = torch.zeros(3, requires_grad=True)
    l1_penalty(w, GFIConfig.paper(l1_grad_at_zero="one")).backward()
    assert torch.equal(w.grad, torch.ones(3))  # ||w||_1 = sum(w) on w >= 0
    w.grad = None
    l1_penalty(w, GFIConfig.paper(l1_grad_at_zero="zero")).backward()
    assert torch.equal(w.grad, torch.zeros(3))  # torch's abs: subgradient 0 at 0
    assert l1_penalty(torch.ones(4), GFIConfig(l1_norm="mean")).item() == 1.0


def test_log_score_terms_by_hand():
    from gfi.methods.gfi import target_terms

    logits = torch.tensor([[[[2.0, 0.0, -1.0]]], [[[0.5, 1.5, 0.0]]]])  # (2, B=1, K=1, 3)
    t = torch.tensor([[0]])
    gain, removed = target_terms(logits, t, multilabel=False, score="log")
    p_kept = torch.softmax(logits[0, 0, 0], -1)[0]
    p_removed = torch.softmax(logits[1, 0, 0], -1)[0]
    assert gain.item() == pytest.approx(torch.log(p_kept).item(), rel=1e-6)
    assert removed.item() == pytest.approx(-torch.log(1 - p_removed).item(), rel=1e-6)
    gain, removed = target_terms(logits, t, multilabel=True, score="prob")
    assert gain.item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    assert removed.item() == pytest.approx(torch.sigmoid(torch.tensor(0.5)).item())
