"""GFI's rivals (GFIConfig.rivals): each target is contrasted with the model's own strongest other
classes for the image, less those whose Grad-CAM map overlaps the target's (another name of the
same object). Checked by hand on a linear model whose maps and logits are known, then: a target's
map is the same alone and with other targets, bit for bit; the paper preset has no rivals."""

import logging

import pytest
import torch
from torch import nn

from gfi import targets
from gfi.errors import SettingsError
from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion
from gfi.models.classifier import Classifier

#: the hand model's head: logit_j = W_j . mean(A) + b_j, with A the image itself (3 channels)
W = torch.tensor([[2.0, 0.0, 0.0],   # 0 cat: channel 0 (left half)
                  [0.0, 0.0, 4.0],   # 1 tabby: channel 2 (left half too): another name of the cat
                  [0.0, 2.0, 0.0],   # 2 dog: channel 1 (right half)
                  [1.0, 1.0, 0.0],   # 3 ball: everywhere, but a weak class
                  [1.0, 1.0, 0.0]])  # 4 rug: everywhere
B = torch.tensor([2.0, 1.0, 1.5, -5.0, 0.0])


class Linear(nn.Module):
    """l0 = l1 = ``feat`` (the image itself), global average pooling, the hand-set head (W, B)."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Identity()
        self.fc = nn.Linear(3, 5)
        with torch.no_grad():
            self.fc.weight.copy_(W)
            self.fc.bias.copy_(B)

    def forward(self, x):
        return self.fc(self.feat(x).mean((2, 3)))


@pytest.fixture
def hand():
    clf = Classifier(Linear(), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(4, 4),
                     inversion_layer="feat", channel_layer="feat",
                     class_names=["cat", "tabby", "dog", "ball", "rug"])
    x = torch.zeros(1, 3, 4, 4)
    x[:, 0, :, :2] = 1.0  # the cat on the left
    x[:, 2, :, :2] = 0.5  # what "tabby" reads, on the same pixels
    x[:, 1, :, 2:] = 1.0  # the dog on the right
    return clf, x


def test_rivals_by_hand(hand):
    """Logits: cat 3, dog 2.5, tabby 2, rug 1, ball -4. Grad-CAM maps (the gradient of a logit is
    W_j / 16 everywhere): cat and tabby the left half, dog the right half, rug uniform; cosine with
    the cat's: tabby 1, dog 0, rug 8 / (sqrt(8) sqrt(16)) = 0.707. The cat's top-3 rivals are dog,
    tabby, rug (not the weak ball); at rival_overlap 0.5 tabby and rug are skipped, at 0.8 only tabby."""
    clf, x = hand
    logits = clf(x)
    torch.testing.assert_close(logits, torch.tensor([[3.0, 2.0, 2.5, -4.0, 1.0]]))
    t = torch.tensor([[0, 2]])
    r = GuidedFeatureInversion(clf, rivals=3).find_rivals(x, t, logits)
    assert r.index.tolist() == [[[2, 1, 4], [0, 1, 4]]]
    half = 8 / (8 ** 0.5 * 16 ** 0.5)
    torch.testing.assert_close(r.similarity, torch.tensor([[[0.0, 1.0, half], [0.0, 0.0, half]]]))
    assert r.keep.tolist() == [[[True, False, False], [True, True, False]]]
    torch.testing.assert_close(r.own, W[[0, 2]].unsqueeze(0) / 16)
    torch.testing.assert_close(r.weights[0, 0], W[[2, 1, 4]] / 16)
    loose = GuidedFeatureInversion(clf, rivals=3, rival_overlap=0.8).find_rivals(x, t, logits)
    assert loose.keep.tolist() == [[[True, False, True], [True, True, True]]]
    # more rivals than classes: every other class
    assert GuidedFeatureInversion(clf, rivals=50).find_rivals(x, t, logits).index.shape == (1, 2, 4)


def test_the_start_subtracts_the_mean_of_the_kept_rivals_by_hand(hand):
    """Stage 2 of the cat starts from Grad-CAM's weights of y_cat - beta * y_dog (its one kept
    rival), those of the dog from y_dog - beta * mean(y_cat, y_tabby), rescaled to mean |w| = w_init."""
    clf, x = hand
    t = torch.tensor([[0, 2]])
    for beta in (1.0, 0.5):
        gfi = GuidedFeatureInversion(clf, rivals=3, rival_init=beta)
        got = gfi.gradient_weights(x, t, gfi.find_rivals(x, t, clf(x)))
        want = torch.stack([W[0] - beta * W[2], W[2] - beta * (W[0] + W[1]) / 2]).unsqueeze(0) / 16
        torch.testing.assert_close(got, want * (0.1 / want.abs().mean(-1, keepdim=True)))


def test_a_target_whose_rivals_are_all_skipped_gets_its_map_without_rivals(hand):
    """Tabby's one rival (rivals=1) is the cat, which names the same object: it is skipped, and the
    map is the map without rivals, bit for bit (the rival terms add nothing)."""
    clf, x = hand
    fast = dict(iters1=2, iters2=6)
    plain = GuidedFeatureInversion(clf, rivals=0, **fast).explain(x, [[1]])
    rivals = GuidedFeatureInversion(clf, rivals=1, rival_keep=1.0, rival_exclusion=10.0, **fast)
    assert not rivals.find_rivals(x, torch.tensor([[1]]), clf(x)).keep.any()
    got = rivals.explain(x, [[1]])
    assert torch.equal(got.maps, plain.maps) and torch.equal(got.weights, plain.weights)
    # the cat's one rival, the dog, is kept: the dog's channel weighs against the cat
    assert GuidedFeatureInversion(clf, rivals=1, **fast).explain(x, [[0]]).weights[0, 0, 1] < 0
    assert GuidedFeatureInversion(clf, rivals=0, **fast).explain(x, [[0]]).weights[0, 0, 1] >= 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("terms", [{}, {"rival_keep": 1.0, "rival_exclusion": 10.0, "rival_overlap": 0.9}])
def test_with_rivals_each_target_is_its_map_alone_bit_for_bit(tiny, tiny_images, dtype, terms):
    """The rivals come from the model's output on the image and the target alone, never from the
    other targets: K = 1..4 targets together, each map equal to its map alone, to the last bit."""
    clf, x = tiny.to(dtype), tiny_images.to(dtype)
    gfi = GuidedFeatureInversion(clf, iters1=2, iters2=8, rivals=3, **terms)
    alone = {c: gfi.explain(x, [[c], [c]]) for c in range(5)}
    assert any(gfi.find_rivals(x, torch.tensor([[c], [c]]), clf(x)).keep.any() for c in range(5))
    for k in range(1, 5):
        targets = [list(range(k)), list(range(4, 4 - k, -1))]
        together = gfi.explain(x, targets)
        for b in range(2):
            for j, c in enumerate(targets[b]):
                assert torch.equal(together.maps[b, j], alone[c].maps[b, 0]), (k, b, c)
                assert torch.equal(together.weights[b, j], alone[c].weights[b, 0]), (k, b, c)


def test_rivals_change_the_map_and_the_modes_still_agree_on_one_target(tiny, tiny_images):
    fast = dict(iters1=2, iters2=4)
    plain = GuidedFeatureInversion(tiny, rivals=0, **fast).explain(tiny_images, [[1], [3]])
    one = {mode: GuidedFeatureInversion(tiny, rivals=3, rival_overlap=1.0, joint=mode, **fast).explain(
        tiny_images, [[1], [3]]).maps for mode in GFIConfig.JOINT_TERMS}
    assert not torch.equal(one["independent"], plain.maps)
    assert torch.equal(one["independent"], one["contrastive"]) and torch.equal(one["independent"], one["separate"])


def test_the_default_has_rivals_and_the_paper_preset_none():
    assert (GFIConfig().rivals, GFIConfig().rival_init, GFIConfig().rival_overlap) == (10, 2.0, 0.5)
    assert GFIConfig.fast().rivals == 10
    assert GFIConfig.paper().rivals == 0
    assert GFIConfig.paper(rivals=2).rivals == 2


@pytest.mark.parametrize("name,value", [("rival_keep", 1.0), ("rival_exclusion", 5.0), ("rival_init", 3.0),
                                        ("rival_overlap", 0.9)])
def test_a_rival_field_without_rivals_is_refused_in_one_line(name, value):
    with pytest.raises(SettingsError, match=f"{name}=.* is read only with rivals > 0.*--rivals N") as err:
        GFIConfig(rivals=0, **{name: value})
    assert "\n" not in str(err.value)
    with pytest.raises(SettingsError, match="--rivals N"):  # strings, as --set gives them
        GFIConfig.paper().with_overrides({name: str(value)})


@pytest.mark.parametrize("make", [lambda: targets.Softmax(0), lambda: targets.Logit(0),
                                  lambda: targets.Contrastive(0, [2], beta=0.5)])
def test_a_target_that_is_not_a_class_index_is_explained_without_rivals_said_once(hand, caplog, make):
    """Rivals are other classes of the image, contrasted through their logits: they apply to plain
    class indices (ints, ClassTarget). Any other target is explained as with rivals=0, bit for bit,
    and the log says so once per explainer."""
    clf, x = hand
    fast = dict(iters1=2, iters2=6)
    plain = GuidedFeatureInversion(clf, rivals=0, **fast).explain(x, [[make()]])
    gfi = GuidedFeatureInversion(clf, rivals=1, **fast)
    with caplog.at_level(logging.INFO, logger="gfi"):
        got = gfi.explain(x, [[make()]])
        gfi.explain(x, [[make()]])
    assert torch.equal(got.maps, plain.maps) and torch.equal(got.weights, plain.weights)
    said = [r.getMessage() for r in caplog.records if "without rivals" in r.getMessage()]
    assert len(said) == 1 and "rivals=1 applies to class indices" in said[0] and make().describe() in said[0]
    # a ClassTarget is a class index: its rival (the dog) weighs against the cat, as with the int
    with_class = gfi.explain(x, [[targets.ClassTarget(0)]])
    assert torch.equal(with_class.maps, gfi.explain(x, [[0]]).maps)
    assert with_class.weights[0, 0, 1] < 0


def test_a_start_that_its_rivals_empty_falls_back_to_the_start_without_them(hand):
    """Tabby's rivals at rival_overlap 0.8 are the dog and the rug (the cat names its object). At
    rival_init 5 the start y_tabby - 5 mean(y_dog, y_rug) weighs every pixel below 0 (left:
    0.5 * 4 - 5 * 0.5 * 1 < 0; right: -5 * 1.5 * 1), an empty map that stage 2 cannot leave: tabby then
    starts without its rivals, and its map is the map without rivals, bit for bit. At rival_init 1
    the start keeps pixels, and the rivals stay."""
    clf, x = hand
    t = torch.tensor([[1]])
    strong = GuidedFeatureInversion(clf, rivals=3, rival_overlap=0.8, rival_init=5.0, iters1=2, iters2=6)
    r = strong.find_rivals(x, t, clf(x))
    assert r.keep.tolist() == [[[False, True, True]]]
    raw = strong.gradient_weights(x, t, r)  # without the features: no check
    assert (torch.einsum("bkc,bchw->bkhw", raw, x) <= 0).all()
    plain = GuidedFeatureInversion(clf, rivals=0, iters1=2, iters2=6)
    torch.testing.assert_close(strong.gradient_weights(x, t, r, x), plain.gradient_weights(x, t))
    got, want = strong.explain(x, [[1]]), plain.explain(x, [[1]])
    assert torch.equal(got.maps, want.maps) and not got.collapsed.any()
    mild = GuidedFeatureInversion(clf, rivals=3, rival_overlap=0.8, rival_init=1.0)
    w = mild.gradient_weights(x, t, mild.find_rivals(x, t, clf(x)), x)
    assert (torch.einsum("bkc,bchw->bkhw", w, x) > 0).any()
    assert not torch.allclose(w, plain.gradient_weights(x, t))


def test_a_class_the_model_barely_sees_has_no_rivals(hand):
    """Ball's probability is e^-4 / (e^3 + e^2 + e^2.5 + e^-4 + e^1) = 4.3e-4: below rival_min_prob
    (1e-3) it keeps no rival, and its map is the map without rivals, bit for bit; at 1e-4 its rivals
    (cat, dog, tabby: each map overlaps the uniform ball's by 0.707, under rival_overlap 0.8) are kept."""
    clf, x = hand
    t = torch.tensor([[3]])
    p = torch.tensor([3.0, 2.0, 2.5, -4.0, 1.0]).softmax(0)[3]
    assert 1e-4 < p < 1e-3
    default = GuidedFeatureInversion(clf, rivals=3, rival_overlap=0.8, iters1=2, iters2=6)
    assert GFIConfig().rival_min_prob == 1e-3 and not default.find_rivals(x, t, clf(x)).keep.any()
    want = GuidedFeatureInversion(clf, rivals=0, iters1=2, iters2=6).explain(x, [[3]])
    got = default.explain(x, [[3]])
    assert torch.equal(got.maps, want.maps) and torch.equal(got.weights, want.weights)
    low = GuidedFeatureInversion(clf, rivals=3, rival_overlap=0.8, rival_min_prob=1e-4).find_rivals(x, t, clf(x))
    assert low.index.tolist() == [[[0, 2, 1]]] and low.keep.all()
