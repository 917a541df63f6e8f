"""Fine-tuning's pieces without file I/O: the text targets of a split, the loop over steps and its
figures, and raw-video scoring (the run, ``finetune.run``, saves what these return)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from cavnet.extract.config import ExtractConfig
from cavnet.extract.manifest import Manifest, ManifestRow
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.metrics import Scores
from cavnet.finetune import distributed as fd
from cavnet.finetune.data import ClipBatch


@dataclass
class Targets:
    """What each manifest row of a split is pulled towards: ``text`` (N, Dt) and positive ``groups`` (N,)
    (the class for label targets, identical texts for video-text targets); indexed by batch positions.
    With a tuned sentence encoder ``text`` is None and ``strings`` maps each group to the text it embeds."""

    text: torch.Tensor | None
    groups: torch.Tensor
    strings: dict[int, str] | None = None


def targets_for(rows: list[ManifestRow], m: Manifest, init: Checkpoint, config: ExtractConfig, kind: str,
                device: torch.device, tuned: bool = False) -> Targets:
    """Label targets: the checkpoint's class embeddings. Video-text targets: each video's own text, embedded
    with the text model recorded in the store config (the class prompt when it has none). ``tuned``: the
    texts themselves (class prompts, or each video's string), for the sentence encoder to embed per batch."""
    from cavnet.extract.text_tables import class_prompts, video_strings

    if tuned:
        prompts = class_prompts(m.classes, config.prompt_template)
        if kind == "label":
            return Targets(None, torch.tensor([r.label for r in rows]).to(device), dict(enumerate(prompts)))
        unique, groups = np.unique(np.array(video_strings(Manifest(tuple(rows), m.classes), prompts), dtype=object),
                                   return_inverse=True)
        return Targets(None, torch.from_numpy(groups.astype(np.int64)).to(device),
                       {i: str(t) for i, t in enumerate(unique)})
    class_emb = init.class_embedding.float()
    if kind == "label":
        labels = torch.tensor([r.label for r in rows])
        return Targets(class_emb[labels].to(device), labels.to(device))
    from cavnet.extract.text_tables import embed_texts
    from cavnet.fuse.data import text_groups

    tables = embed_texts(Manifest(tuple(rows), m.classes), config, "cpu")
    text = torch.from_numpy(tables.video_embedding)
    return Targets(text.to(device), torch.from_numpy(text_groups(tables.video_embedding)).to(device))


@dataclass
class EpochStats:
    """Running figures of the steps taken so far in one epoch, summed over the processes."""

    steps: int = 0
    loss_sum: float = 0.0
    videos: int = 0
    clips: int = 0
    substitutes: int = 0
    seconds: float = 0.0
    wait: float = 0.0
    losses: list[float] = field(default_factory=list)
    last: dict[str, float] = field(default_factory=dict)  # clips, seconds and data wait of the latest step

    def summary(self) -> dict[str, float]:
        secs = max(self.seconds, 1e-9)
        return {"loss": self.loss_sum / max(1, self.steps), "steps": self.steps, "videos": self.videos,
                "clips": self.clips, "substitutes": self.substitutes, "seconds": self.seconds,
                "videos_per_s": self.videos / secs, "clips_per_s": self.clips / secs,
                "data_wait": self.wait / secs}


def run_steps(batches: Iterable[ClipBatch], step: Callable[[ClipBatch], float],
              after_step: Callable[[EpochStats], bool], env: fd.DistEnv, device: torch.device) -> EpochStats:
    """``step`` (one optimiser step on a batch on ``device``; returns its loss) over ``batches`` until they
    run out or ``after_step(stats)`` returns False; the figures are summed over the processes."""
    stats = EpochStats()
    t_wait = time.perf_counter()
    for batch in batches:
        t0 = time.perf_counter()
        batch = batch.to(device)
        value = step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t1 = time.perf_counter()
        counts = fd.gather(torch.tensor([len(batch), int(batch.vmask.sum()), batch.substitutes],
                                        device=device), env).view(-1, 3).sum(dim=0).tolist()
        stats.steps += 1
        stats.loss_sum += value
        stats.losses.append(value)
        stats.videos, stats.clips, stats.substitutes = (stats.videos + counts[0], stats.clips + counts[1],
                                                        stats.substitutes + counts[2])
        stats.wait += t0 - t_wait
        stats.seconds += t1 - t_wait
        stats.last = {"clips": counts[1], "seconds": t1 - t_wait, "wait": t0 - t_wait}
        t_wait = time.perf_counter()
        if not after_step(stats):
            break
    return stats


BatchDone = Callable[[list[int], list[str], np.ndarray], None]


@torch.no_grad()
def score_videos(net: nn.Module, batches: Iterable[ClipBatch], class_emb: torch.Tensor, head: str,
                 device: torch.device, env: fd.DistEnv, on_batch: BatchDone | None = None,
                 modalities: bool = False) -> Scores:
    """Scores of this process's videos, gathered from every process; videos that do not decode are
    counted in ``statuses`` (and their position in ``status_of``) and left out, like the unusable rows of
    a store. ``on_batch(positions, statuses, scores)``, after each batch of this process: its manifest rows,
    their statuses and scores (n, C) float32, NaN rows for the videos that did not decode. ``modalities``
    (a model of both streams): also the same videos' scores with the audio and with the visual stream masked
    (``Scores.masked``, keys of ``fuse.scoring.modality.DROPS``), from the same backbone features."""
    net.eval()
    out, labels, audio, positions, statuses, status_of = [], [], [], [], {}, {}
    both = modalities and net.fusion.config.modalities == "av"
    masked: dict[str, list[torch.Tensor]] = {"visual_only": [], "audio_only": []} if both else {}
    c = int(class_emb.shape[0])

    def scored(emb: torch.Tensor) -> torch.Tensor:
        return (emb if head == "linear" else net.fusion.score_classes(emb, class_emb)).float().cpu()

    for batch in batches:
        for s, pos in zip(batch.statuses, batch.positions.tolist()):
            statuses[s] = statuses.get(s, 0) + 1
            status_of[int(pos)] = s
        keep = batch.valid
        done = np.full((len(keep), c), np.nan, np.float32)
        if keep.any():
            on = batch.to(device)
            k = keep.to(device)
            vm, am = on.vmask[k], on.amask[k]
            visual, sound = net.features(on.clips[k], vm, on.examples[k], am)  # what forward runs, kept
            out.append(scored(net.fusion(visual, vm, sound, am)))
            if both:  # the model's own missing-modality path: the masked stream's tokens all padding
                masked["visual_only"].append(scored(net.fusion(visual, vm, sound, torch.zeros_like(am))))
                masked["audio_only"].append(scored(net.fusion(visual, torch.zeros_like(vm), sound, am)))
            labels.append(on.labels[k].cpu())
            audio.append(am.any(dim=1).cpu())
            positions.append(on.positions[k].cpu())
            done[keep.numpy()] = out[-1].numpy()
        if on_batch is not None:
            on_batch(batch.positions.tolist(), list(batch.statuses), done)
    empty = np.zeros((0, c), np.float32)
    local = (torch.cat(out).numpy() if out else empty,
             torch.cat(labels).numpy() if labels else np.zeros(0, np.int64),
             torch.cat(audio).numpy() if audio else np.zeros(0, bool),
             torch.cat(positions).numpy() if positions else np.zeros(0, np.int64), statuses, status_of,
             {key: torch.cat(v).numpy() if v else empty for key, v in masked.items()})
    parts = fd.gather_objects(local, env)
    merged: dict[str, int] = {}
    every: dict[int, str] = {}
    for p in parts:
        for s, n in p[4].items():
            merged[s] = merged.get(s, 0) + n
        every.update(p[5])
    order = np.argsort(np.concatenate([p[3] for p in parts]), kind="stable")
    return Scores(*(np.concatenate([p[i] for p in parts])[order] for i in range(4)), merged, every,
                  {key: np.concatenate([p[6][key] for p in parts])[order] for key in masked})
