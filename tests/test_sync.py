"""Audio-visual synchrony (issue 19): the shared time encoding lets CAV-Net relate what happens at the same
time in both streams; without it, CAV-Net stays near the late-fusion cap of the synchrony task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sync_task import MODELS, SyncTask, SyncTraining, make_videos, train_and_score


def test_the_task_hides_the_target_from_pooled_streams():
    """Every pattern on screen is shown equally long and the audio track only says which sound: the bags of
    tokens do not tell the target apart from the distractors."""
    task = SyncTask(noise=0.0)
    visual, audio, labels = make_videos(task, 50, seed=0)
    for v, a, y in zip(visual, audio, labels):
        patterns, counts = np.unique(v.numpy().round(4), axis=0, return_counts=True)
        assert len(patterns) == task.distractors + 1 and set(counts) == {task.sound_steps}
        _, track_counts = np.unique(a.numpy().round(4), axis=0, return_counts=True)
        assert sorted(track_counts) == [task.sound_steps, task.steps - task.sound_steps]
        assert 0 <= int(y) < task.classes
    assert len(torch.unique(labels)) > task.classes // 2
    assert task.late_fusion_cap == 0.25
    with pytest.raises(ValueError):
        make_videos(SyncTask(steps=7), 1, seed=0)


def test_time_aware_cavnet_learns_synchrony_that_content_only_cannot():
    torch.set_num_threads(1)
    task, training = SyncTask(), SyncTraining()
    top1 = {name: train_and_score(task, training, overrides, seed=0) for name, overrides in MODELS.items()}
    late, content, timed = top1["late fusion"], top1["CAV-Net content-only"], top1["CAV-Net time-aware"]
    assert late <= 100 * task.late_fusion_cap + 10, top1
    assert timed >= late + 30 and timed >= 90, top1
    assert content <= late + 15, top1  # near the late-fusion level: it cannot tell which clip is synchronous
