"""The shuffling buffer: the model runs on no more tokens than the trainer will read."""

from __future__ import annotations

import torch

from sae_training.activations import ShufflingBuffer

RESID = "blocks.1.hook_resid_post"


def make(tiny, **kw) -> ShufflingBuffer:
    args = dict(
        text="tasks:ioi,filler", context_size=17, model_batch_size=8, buffer_tokens=512, batch_size=128
    )
    return ShufflingBuffer(tiny, RESID, **{**args, **kw})


def test_buffer_with_a_known_total_runs_the_model_on_little_more_than_it_serves(tiny):
    steps, batch = 11, 128
    capped, uncapped = make(tiny, total_rows=steps * batch), make(tiny)
    served = [capped.next_batch().x for _ in range(steps)]
    for _ in range(steps):
        uncapped.next_batch()
    rows_per_lm_batch = 8 * 16  # contexts x non-BOS positions
    assert capped.contexts_consumed * 16 <= steps * batch + rows_per_lm_batch
    assert uncapped.contexts_consumed * 16 >= steps * batch + 512 // 2  # the unread half-buffer
    assert torch.cat(served).shape[0] == steps * batch


def test_buffer_past_its_total_keeps_serving(tiny):
    buf = make(tiny, total_rows=256)
    for _ in range(5):
        assert buf.next_batch().x.shape == (128, tiny.cfg.d_model)
