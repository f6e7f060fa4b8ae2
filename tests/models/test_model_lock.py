"""Two threads, one model: explainers on the same model in two threads take turns (the model's lock
around the frozen and hooked sections), each gets the map it gets alone, and the user's model is
left exactly as it was (train mode, ``requires_grad`` flags)."""

from __future__ import annotations

import threading
import time

import torch
from torch import nn

from gfi.methods.registry import get_method
from gfi.models.classifier import Classifier
from gfi.models.layers import LayerRef, capture, frozen, model_lock

SIZE = 16


class Slow(nn.Module):
    """The identity, except for the first forward of two threads: in the thread named ``first`` it
    sets ``inside`` and waits (up to 1 s) for ``go``; in the thread named ``second`` it sleeps 1.5 s.
    So, without a lock, the second call enters while the first is inside the model and leaves after it."""

    def __init__(self, inside: threading.Event, go: threading.Event) -> None:
        super().__init__()
        self.inside, self.go, self.slept = inside, go, False

    def forward(self, x):
        name = threading.current_thread().name
        if name == "first" and not self.inside.is_set():
            self.inside.set()
            self.go.wait(1.0)
        elif name == "second" and not self.slept:
            self.slept = True
            time.sleep(1.5)
        return x


class Net(nn.Module):
    def __init__(self, inside, go) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.slow = Slow(inside, go)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        x = self.relu(self.slow(self.bn1(self.conv1(x))))
        return self.fc(self.pool(self.relu(self.bn2(self.conv2(x)))).flatten(1))


def _setup():
    inside, go = threading.Event(), threading.Event()
    net = Net(inside, go)
    net.train()  # the user's model, as they left it: train mode, gradients on, one frozen parameter
    net.fc.bias.requires_grad_(False)
    clf = Classifier(net, mean=(0.0,) * 3, std=(1.0,) * 3, input_size=(SIZE, SIZE), inversion_layer="bn2",
                     channel_layer="bn2")
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    return net, clf, x, inside, go


def _state(net):
    return [m.training for m in net.modules()], [p.requires_grad for p in net.parameters()]


def _two_threads(clf, x, inside, go, first: str, second: str):
    """Run ``first`` in a thread that stops inside the model until ``second`` (in another thread) has
    begun its call; returns {method: maps or the exception}."""
    out: dict[str, object] = {}

    def call(method: str) -> None:
        try:
            settings = {"iters1": 4, "iters2": 4} if method == "gfi" else {}
            out[method] = get_method(method, clf, **settings).explain(x, 1).maps
        except Exception as exc:  # the test reports what each thread raised
            out[method] = exc

    def later() -> None:
        inside.wait(5)
        threading.Timer(0.2, go.set).start()  # the first call goes on once the second has tried to enter
        call(second)

    threads = [threading.Thread(target=call, args=(first,), name="first"),
               threading.Thread(target=later, name="second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_two_explainers_on_one_model_in_two_threads_take_turns_and_restore_the_model():
    net, clf, x, inside, go = _setup()
    before = _state(net)
    out = _two_threads(clf, x, inside, go, "gfi", "gradcam")
    assert not isinstance(out["gfi"], Exception), out["gfi"]
    assert not isinstance(out["gradcam"], Exception), out["gradcam"]
    assert _state(net) == before  # train mode and every requires_grad flag as the user left them
    # the slow module is a no-op in this thread: the same calls alone, one after the other
    alone_gfi = get_method("gfi", clf, iters1=4, iters2=4).explain(x, 1).maps
    alone_cam = get_method("gradcam", clf).explain(x, 1).maps
    torch.testing.assert_close(out["gfi"], alone_gfi)
    torch.testing.assert_close(out["gradcam"], alone_cam)


def test_gradcam_then_gfi_the_other_way_round():
    net, clf, x, inside, go = _setup()
    before = _state(net)
    out = _two_threads(clf, x, inside, go, "gradcam", "gfi")
    assert not any(isinstance(v, Exception) for v in out.values()), out
    assert _state(net) == before


def test_frozen_in_a_second_thread_waits_for_the_first():
    net, _, _, _, _ = _setup()
    entered = threading.Event()
    seen: list[bool] = []

    def second() -> None:
        with frozen(net):
            seen.append(entered.is_set())

    with frozen(net):
        t = threading.Thread(target=second)
        t.start()
        t.join(0.3)
        assert t.is_alive()  # waiting on the model's lock
        assert not any(p.requires_grad for p in net.parameters())
    entered.set()
    t.join(5)
    assert seen == [True]
    assert net.training and net.conv1.weight.requires_grad and not net.fc.bias.requires_grad


def test_hooks_record_only_their_own_thread():
    """A plain forward of the model in another thread passes gfi's hooks untouched (no StopForward)."""
    net, _, x, _, _ = _setup()
    net.eval()
    result: dict[str, object] = {}

    def other() -> None:
        try:
            result["logits"] = net(x)
        except BaseException as exc:  # StopForward is what main raised here
            result["logits"] = exc

    with capture(net, [LayerRef("bn2")], stop=True) as store:
        lock = model_lock(net)
        assert lock.acquire(blocking=False)  # re-entrant: this thread holds it inside the block
        lock.release()
        t = threading.Thread(target=other)
        t.start()
        t.join(5)
    assert isinstance(result["logits"], torch.Tensor), result["logits"]
    assert store == {}  # the other thread's activations were not recorded


def test_the_lock_is_one_per_model_object():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    assert model_lock(a) is model_lock(a)
    assert model_lock(a) is not model_lock(b)
