"""Zero-shot label texts on AV-Synth: how well `cavnet predict --labels` does with paraphrased class names.

    python tools/zero_shot_avsynth.py WORK [VIDEOS] [CLASSES]

Generates AV-Synth (seed 0) in WORK, extracts it in-process with the tiny backbones, fuse-trains 40 epochs
(d_model 64) against the class prompts, then scores the val split against the class names and against
three paraphrase sets built from the corpus's caption synonyms (held out from training, whose prompts are
the class names). Figures are in docs/api.md.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from cavnet.extract.backbones.audio_cnn import TINY_LOGMEL
from cavnet.extract.config import AudioSampling, ClipSampling, ExtractConfig
from cavnet.extract.store.writer import StoreDims, consolidate, write_shard
from cavnet.extract.synth import SOUND_PATTERNS, VISUAL_PATTERNS, class_table, synth
from cavnet.extract.embed import embed_files
from cavnet.extract.text_tables import embed_texts
from cavnet.extract.datasets import load_manifest
from cavnet.pipelines.fuse_train import run_fuse_train
from cavnet.fuse.train_config import TrainConfig
from cavnet.finetune.predict import Predictor


def main() -> None:
    torch.set_num_threads(1)
    w = Path(sys.argv[1]) / "avsynth-zero-shot"  # replaced on every run
    videos = int(sys.argv[2]) if len(sys.argv) > 2 else 120
    classes = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    CONFIG = ExtractConfig(visual="resnext3d-tiny", audio="audio-cnn-tiny",
                           sampling=ClipSampling(clips=2, frames=8, short_side=48, size=48),
                           audio_sampling=AudioSampling(2), logmel=TINY_LOGMEL)
    shutil.rmtree(w, ignore_errors=True)
    synth(w/"c", videos=videos, classes=classes, seed=0, workers=2)
    m = load_manifest("k400", w/"c")
    feats = embed_files([r.path for r in m.rows], CONFIG)
    dims = StoreDims(2, 2, 256, 128)
    write_shard(w/"shard.h5", 0, m.rows, feats, dims, CONFIG.to_json())
    consolidate(w/"s.h5", [w/"shard.h5"], m, dims, embed_texts(m, CONFIG), CONFIG.to_json(), "zs")
    r = run_fuse_train(w/"s.h5", w/"run", TrainConfig(epochs=40, batch_size=16, lr=3e-3, device="cpu"),
                       {"d_model": 64, "heads": 2}, echo=lambda _: None, progress=False)
    print(f"fuse-train: best val top-1 {r.best['top1']:.1f} (epoch {r.best['epoch']})", flush=True)
    by_name = {c.name: c for c in class_table(classes)}
    table = [by_name[n] for n in m.classes]  # class ids are the sorted label names
    rows = [r for r in m.rows if r.split == "val" and r.label >= 0]
    vp = {p.key: p for p in VISUAL_PATTERNS}
    sp = {p.key: p for p in SOUND_PATTERNS}
    sets = {"class names": None}
    for j in (0, 1, 2):
        sets[f"synonyms #{j}"] = [f"{vp[c.visual].synonyms[j]} with {sp[c.sound].synonyms[j]}" for c in table]
    for name, labels in sets.items():
        pr = Predictor(w/"run"/"best.pt", "cpu", labels)
        preds = pr.predict([r.path for r in rows], k=1)
        names = labels or [c.name for c in table]
        ok = [p.top1 == names[r.label] for p, r in zip(preds, rows) if p.labels]
        print(f"{name}: top-1 {100 * np.mean(ok):.1f}% of {len(ok)} val videos; e.g. {names[:2]}", flush=True)


if __name__ == "__main__":
    main()
