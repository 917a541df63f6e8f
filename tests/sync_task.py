"""A synchrony task in memory: the class is which visual pattern is on screen WHILE a sound plays.

Each video has ``steps`` time steps; clip t and audio segment t cover the same step (as in a store). The
visual token of a step is one of ``patterns`` prototypes plus noise; the audio token is silence plus noise,
except at ``sound_steps`` steps where one of ``sounds`` prototypes plays. While it plays the screen shows
the target pattern; the other steps show ``distractors`` other patterns, each for ``sound_steps`` steps too,
so every pattern on screen is shown equally long. Class = (target pattern, sound): patterns x sounds classes.

What each model can reach in principle: a model that pools each stream before fusing (late fusion) knows
the sound and the set of patterns on screen, not which one was on while the sound played, so it is capped
at 1 / (distractors + 1) (25 % by default); a model that relates the streams in time can reach 100 %.

    python tests/sync_task.py --seeds 3      # late fusion, content-only and time-aware CAV-Net
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cavnet.fuse.config import FusionConfig
from cavnet.fuse.model import CAVNet

MODELS = {"late fusion": {"fusion": "late"}, "CAV-Net content-only": {"time_encoding": "none"},
          "CAV-Net time-aware": {"time_encoding": "shared"}}


@dataclass(frozen=True)
class SyncTask:
    steps: int = 8
    patterns: int = 6
    sounds: int = 3
    sound_steps: int = 2
    distractors: int = 3
    dim: int = 16
    noise: float = 0.5

    @property
    def classes(self) -> int:
        return self.patterns * self.sounds

    @property
    def late_fusion_cap(self) -> float:
        return 1.0 / (self.distractors + 1)


@dataclass(frozen=True)
class SyncTraining:
    train: int = 800
    val: int = 500
    epochs: int = 12
    batch_size: int = 64
    lr: float = 3e-3
    d_model: int = 32


def make_videos(task: SyncTask, videos: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """visual (N, steps, dim), audio (N, steps, dim), labels (N,); prototypes fixed, videos drawn by ``seed``."""
    if (task.distractors + 1) * task.sound_steps != task.steps or task.distractors >= task.patterns:
        raise ValueError("steps must be (distractors + 1) x sound_steps, distractors < patterns")
    protos = np.random.default_rng(12345)
    visual_protos = protos.normal(size=(task.patterns, task.dim))
    audio_protos = protos.normal(size=(task.sounds + 1, task.dim))  # the last one is silence
    rng = np.random.default_rng(seed)
    visual = np.empty((videos, task.steps, task.dim))
    audio = np.empty((videos, task.steps, task.dim))
    labels = np.empty(videos, np.int64)
    for i in range(videos):
        target, sound = int(rng.integers(task.patterns)), int(rng.integers(task.sounds))
        others = rng.permutation([p for p in range(task.patterns) if p != target])[:task.distractors]
        screen = rng.permutation(np.repeat([target, *others], task.sound_steps))
        track = np.where(screen == target, sound, task.sounds)
        visual[i] = visual_protos[screen] + task.noise * rng.normal(size=(task.steps, task.dim))
        audio[i] = audio_protos[track] + task.noise * rng.normal(size=(task.steps, task.dim))
        labels[i] = target * task.sounds + sound
    return (torch.tensor(visual, dtype=torch.float32), torch.tensor(audio, dtype=torch.float32),
            torch.from_numpy(labels))


def train_and_score(task: SyncTask, training: SyncTraining, overrides: dict, seed: int) -> float:
    """Train CAV-Net (``overrides`` of FusionConfig) with cross-entropy; val top-1 (%)."""
    visual, audio, labels = make_videos(task, training.train, seed=100 + seed)
    val_v, val_a, val_y = make_videos(task, training.val, seed=99)
    torch.manual_seed(seed)
    config = FusionConfig(visual_dim=task.dim, audio_dim=task.dim, head="linear", num_classes=task.classes,
                          d_model=training.d_model, heads=4, gate_hidden=32, max_len=task.steps, dropout=0.0,
                          **overrides)
    model = CAVNet(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=0.01)
    batches = -(-training.train // training.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, training.lr, total_steps=training.epochs * batches)
    order = torch.Generator().manual_seed(seed)
    for _ in range(training.epochs):
        model.train()
        for idx in torch.randperm(training.train, generator=order).split(training.batch_size):
            loss = F.cross_entropy(model(visual[idx], None, audio[idx], None), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        return 100.0 * float((model(val_v, None, val_a, None).argmax(1) == val_y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task, training = SyncTask(), SyncTraining()
    print(f"{task}\n{training}\nlate-fusion cap {100 * task.late_fusion_cap:.0f} %, chance "
          f"{100 / task.classes:.1f} %\n\n| model | val top-1 (%) per seed | mean ± std |\n|---|---|---|")
    for name, overrides in MODELS.items():
        t0 = time.perf_counter()
        accs = np.array([train_and_score(task, training, overrides, s) for s in range(args.seeds)])
        std = accs.std(ddof=1) if len(accs) > 1 else 0.0
        print(f"| {name} | {', '.join(f'{a:.1f}' for a in accs)} | {accs.mean():.1f} ± {std:.1f} |"
              f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
