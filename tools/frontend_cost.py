"""Time the audio front end of an audio backbone on one generated video (CPU, one thread): what a decode
process spends per video after decoding, e.g. AST's Kaldi fbank of each 10.24 s window.

    python tools/frontend_cost.py [--audio ast] [--seconds 10] [--repeats 5]

Random weights of the registered size (the front end does not depend on them), no network.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cavnet.extract.synth.avwrite import write_video
from cavnet.extract.media.decode import decode_video
from cavnet.extract.media.frontends import audio_examples
from cavnet.extract.backbones.pretrained import extract_config


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--audio", default="ast")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    config = extract_config("resnext3d-tiny", a.audio, None, None, "default", "{label}", 10, 10, random_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.mp4"
        frames, samples = int(a.seconds * 25), int(a.seconds * 44100)
        write_video(path, rng.integers(0, 256, (frames, 48, 64, 3)).astype(np.uint8), 25,
                    (0.3 * rng.standard_normal((1, samples))).astype(np.float32), 44100)
        d = decode_video(str(path), config.sampling, config.logmel, 10)
    audio_examples(d.audio, config, d.clip_times, d.duration)  # the extractor built and warm
    t0 = time.perf_counter()
    for _ in range(a.repeats):
        examples = audio_examples(d.audio, config, d.clip_times, d.duration)
    took = (time.perf_counter() - t0) / a.repeats
    print(f"{a.audio}: {len(examples)} segment(s) of {tuple(examples.shape[1:])} for a {a.seconds:g} s video, "
          f"{1000 * took:.1f} ms per video")


if __name__ == "__main__":
    main()
