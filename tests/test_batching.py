"""gfi.batching: images with equally many targets share one explain call, in a stable order."""

from __future__ import annotations

import torch

from gfi.batching import explain_grouped, group_by_target_count


def test_groups_by_count_in_order_of_first_appearance():
    assert group_by_target_count([[1], [2, 3], [], [4], [5, 6]]) == [[0, 3], [1, 4]]
    assert group_by_target_count([]) == []


def test_one_call_per_group_rows_match_images(tiny, tiny_images):
    class Recorder:
        def __init__(self, inner):
            self.inner, self.calls = inner, []

        def explain(self, x, targets):
            self.calls.append(targets)
            return self.inner.explain(x, targets)

    from gfi.methods.registry import get_method

    gradcam = get_method("gradcam", tiny)
    x = torch.cat([tiny_images, tiny_images[:1]])  # 3 images
    rec = Recorder(gradcam)
    out = explain_grouped(rec, x, [[1, 2], [3], [0, 4]])
    assert rec.calls == [[[1, 2], [0, 4]], [[3]]]
    assert [rows for rows, _ in out] == [[0, 2], [1]]
    _, e = out[0]
    alone = gradcam.explain(x[2:3], [[0, 4]])
    assert torch.allclose(e.maps[1], alone.maps[0], atol=1e-6) and e.targets[1].tolist() == [0, 4]
