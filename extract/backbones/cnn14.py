"""PANNs CNN14 (Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks for Audio Pattern
Recognition", IEEE/ACM TASLP 2020) up to its 2048-d embedding, the output of ``fc1``.

    log-mel examples                       (B, 1, F, 64)     dB, the CNN14 front end (CNN14_LOGMEL), F >= 32
    bn0 over the 64 mel bands              (B, 1, F, 64)
    conv_block1..5: 2 x (3x3 conv, BN, ReLU), 2x2 average pool
                                           (B, 1024, F/32, 2)
    conv_block6: 2 x (3x3 conv, BN, ReLU)  (B, 2048, F/32, 2)
    mean over mel bands, then max + mean over time
                                           (B, 2048)
    fc1 + ReLU                             (B, 2048)          the embedding

Module names follow the release (``bn0``, ``conv_blockK.conv1/bn1/conv2/bn2``, ``fc1``), so the ``model``
entry of ``Cnn14_mAP=0.431.pth`` loads as is. Its ``fc_audioset`` classifier is dropped, and so are its frozen
front-end tensors (``spectrogram_extractor.stft.conv_real/conv_imag``, ``logmel_extractor.melW``): cavnet
computes the same spectrogram in :class:`~cavnet.extract.media.audio.LogMelFrontEnd` before cutting the
clip-aligned examples; the loader checks their shapes, so a checkpoint made for another front end
(16 kHz, 512-point window) is refused. Dropout is inactive at inference and is left out.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cavnet.extract.backbones import Release, register
from cavnet.extract.config import LogMel

# 32 kHz, 1024-sample window, 320-sample hop (10 ms), 64 Slaney bands 50-14000 Hz, power to dB, centred
# frames; 96-frame (0.96 s) examples, the same span as VGGish's.
CNN14_LOGMEL = LogMel(sample_rate=32000, win_seconds=0.032, hop_seconds=0.010, n_fft=1024, n_mels=64, f_min=50.0,
                      f_max=14000.0, example_frames=96, mel_scale="slaney", power=2.0, log="db", center=True)

CNN14_RELEASE = Release(
    name="PANNs Cnn14_mAP=0.431.pth (AudioSet)", file="Cnn14_mAP=0.431.pth",
    url="https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth", metrics=(("AudioSet mAP", 0.431),))


class ConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU, then average pooling: ``(B, C_in, F, M)`` -> ``(B, C_out, F/p, M/p)``."""

    def __init__(self, in_ch: int, out_ch: int, pool: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.avg_pool2d(x, self.pool) if self.pool > 1 else x


class Cnn14(nn.Module):
    """CNN14 embedding network: log-mel ``(B, 1, F, 64)`` -> ``(B, 2048)``, ``F >= 32``."""

    classifier_prefixes = ("fc_audioset.",)
    release_frontend = {"spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
                        "spectrogram_extractor.stft.conv_imag.weight": (513, 1, 1024),
                        "logmel_extractor.melW": (513, 64)}
    mels = 64
    min_frames = 32

    def __init__(self) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(self.mels)
        widths = (64, 128, 256, 512, 1024, 2048)
        for k, (c_in, c_out) in enumerate(zip((1,) + widths[:-1], widths), start=1):
            self.add_module(f"conv_block{k}", ConvBlock(c_in, c_out, pool=2 if k < 6 else 1))
        self.fc1 = nn.Linear(2048, 2048)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, F, 64)`` -> ``(B, 2048)``."""
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[3] != self.mels or x.shape[2] < self.min_frames:
            raise ValueError(f"cnn14 expects log-mel examples (B, 1, >={self.min_frames}, {self.mels}), "
                             f"got {tuple(x.shape)}")
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # normalise each mel band
        for k in range(1, 7):
            x = getattr(self, f"conv_block{k}")(x)
        x = x.mean(dim=3)  # (B, 2048, F/32)
        x = x.amax(dim=2) + x.mean(dim=2)
        return F.relu(self.fc1(x))


@register("cnn14", "audio", 2048, logmel=CNN14_LOGMEL, release=CNN14_RELEASE,
          description="PANNs CNN14 (AudioSet) 2048-d fc1 embedding on 32 kHz 64-band log-mel in dB")
def cnn14() -> Cnn14:
    return Cnn14()
