"""Audio backbones over log-mel examples ``(B, 1, frames, mels)`` -> ``(B, D)``.

- ``vggish``: the VGGish network (Hershey et al., ICASSP 2017) up to its 128-d embedding, strict 96 x 64
  input. Module names ``features`` / ``embeddings`` follow the torchvggish port, so its released
  state dict ``vggish-10086976.pth`` loads as is. The feature is the embedding layer's pre-activation
  output, as the TensorFlow release defines it (``vggish_slim.py``: the 128-d ``fc2`` has no activation;
  its README: "the embedding value is pre-activation"). torchvggish's port puts a ReLU there, which zeroes
  the negative half of the embedding (its issue #24); cavnet follows the release.
- ``vggish-pca``: the same network followed by the release's post-processing (PCA with whitening, clipped
  to [-2, 2], quantised to 0..255), i.e. the 8-bit embeddings AudioSet published; the PCA parameters come
  from ``vggish_pca_params-970ea276.pth`` beside the weights file.
- ``resnet50-audio``: torchvision's ResNet-50 with a one-channel stem and no classifier, the audio network of
  the CAV-Net paper's experiments, over 96 frames x 128 mel bands.
- ``audio-cnn-tiny``: four conv layers, about 100k parameters, for tests and the demo.

Each registration carries the :class:`~cavnet.extract.config.LogMel` front end its network expects.
"""

from __future__ import annotations

import torch
from torch import nn

from cavnet.extract.backbones import Release, register
from cavnet.extract.config import LogMel

VGGISH_LOGMEL = LogMel()  # 64 HTK bands 125-7500 Hz, 25 ms / 10 ms, 96 frames: the VGGish recipe

_TORCHVGGISH = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
VGGISH_RELEASE = Release(name="torchvggish vggish-10086976.pth (AudioSet VGGish)", file="vggish-10086976.pth",
                         url=_TORCHVGGISH + "vggish-10086976.pth", sha256_prefix="10086976")
VGGISH_PCA_RELEASE = Release(name="torchvggish vggish-10086976.pth + vggish_pca_params-970ea276.pth",
                             file="vggish-10086976.pth", url=_TORCHVGGISH + "vggish-10086976.pth",
                             sha256_prefix="10086976", companion="vggish_pca_params-970ea276.pth")

# ResNet-50 front end: the VGGish recipe with 128 bands instead of 64. A 512-point FFT (31.25 Hz bins) leaves
# the lowest of 128 HTK bands over 125-7500 Hz with no FFT bin at all, so the 25 ms (400-sample) window is
# zero-padded to a 1024-point FFT (15.6 Hz bins); every band then has support.
RESNET50_AUDIO_LOGMEL = LogMel(n_mels=128, n_fft=1024)

TINY_LOGMEL = LogMel()


def _check_examples(x: torch.Tensor, frames: int | None, mels: int | None, name: str) -> None:
    ok = x.dim() == 4 and x.shape[1] == 1
    ok = ok and (frames is None or x.shape[2] == frames) and (mels is None or x.shape[3] == mels)
    if not ok:
        want = f"(B, 1, {frames or 'frames'}, {mels or 'mels'})"
        raise ValueError(f"{name} expects log-mel examples {want}, got {tuple(x.shape)}")


class VGGish(nn.Module):
    """VGGish embedding network: ``(B, 1, 96, 64)`` log-mel -> ``(B, 128)``, the release's definition: four
    blocks of 3x3 convolutions (64; 128; 256 x 2; 512 x 2), each + ReLU, a 2x2 max-pool after each block,
    the map flattened channels-last, fc 4096 -> ReLU -> 4096 -> ReLU -> 128 (no activation).

    Strict about its input size: the first fully connected layer was trained on the 512 x 6 x 4 map of a
    96 x 64 example, so other sizes raise ``ValueError`` instead of being pooled to fit.
    """

    frames = 96
    mels = 64

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        # Per conv block: output channels, then whether a 2x2 max-pool follows.
        for out_ch, pool in ((64, True), (128, True), (256, False), (256, True), (512, False), (512, True)):
            layers += [nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 128),  # the embedding: pre-activation, as in the release
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 96, 64)`` -> ``(B, 128)``."""
        _check_examples(x, self.frames, self.mels, "vggish")
        x = self.features(x)  # (B, 512, 6, 4)
        # The original (TensorFlow) model flattens channels-last; keep that order so released weights fit.
        x = x.permute(0, 2, 3, 1).flatten(1)  # (B, 6*4*512)
        return self.embeddings(x)


class VGGishPCA(VGGish):
    """VGGish + the AudioSet release's post-processing: ``(B, 1, 96, 64)`` -> ``(B, 128)`` values in 0..255.

    ``embedding -> pca_eigen_vectors @ (embedding - pca_means) -> clip to [-2, 2] -> round((x + 2) * 255 / 4)``
    (torchvggish's ``Postprocessor``). The two buffers are filled from the release's PCA file.
    """

    companion_file = "vggish_pca_params-970ea276.pth"
    companion_keys = ("pca_eigen_vectors", "pca_means")
    clip = 2.0

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("pca_eigen_vectors", torch.eye(128))
        self.register_buffer("pca_means", torch.zeros(128))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 96, 64)`` -> ``(B, 128)``."""
        pca = (super().forward(x) - self.pca_means) @ self.pca_eigen_vectors.T
        clipped = pca.clamp(-self.clip, self.clip)
        return torch.round((clipped + self.clip) * (255.0 / (2 * self.clip)))


class ResNet50Audio(nn.Module):
    """torchvision ResNet-50 on one-channel log-mel: ``(B, 1, frames, mels)`` -> ``(B, 2048)``.

    Registered with 96 frames x 128 mel bands; global pooling is adaptive, so other sizes also run.
    State dict keys are torchvision's (``conv1``, ``bn1``, ``layer1..4``), under no extra prefix.
    """

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50  # heavy import: only when the model is built

        net = resnet50(weights=None)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.fc = nn.Identity()
        # Adopt torchvision's children so the state dict keys carry no wrapper prefix.
        for name, child in net.named_children():
            self.add_module(name, child)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, frames, mels)`` -> ``(B, 2048)``."""
        _check_examples(x, None, None, "resnet50-audio")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TinyAudioCNN(nn.Module):
    """Four 3x3 conv + BN + ReLU layers (16-32-64-128 channels, 2x2 max-pool after the first three),
    global average pooling: ``(B, 1, frames, mels)`` -> ``(B, 128)``, about 100k parameters."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for i, out_ch in enumerate(channels):
            layers += [nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
                       nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, frames, mels)`` -> ``(B, 128)``."""
        _check_examples(x, None, None, "audio-cnn-tiny")
        return torch.flatten(self.pool(self.features(x)), 1)


@register("vggish", "audio", 128, logmel=VGGISH_LOGMEL, release=VGGISH_RELEASE,
          description="VGGish (Hershey et al. 2017) 128-d embedding, strict 96x64 log-mel input")
def vggish() -> VGGish:
    return VGGish()


@register("vggish-pca", "audio", 128, logmel=VGGISH_LOGMEL, release=VGGISH_PCA_RELEASE,
          description="VGGish + the AudioSet release's PCA whitening and 8-bit quantisation (values 0..255)")
def vggish_pca() -> VGGishPCA:
    return VGGishPCA()


@register("resnet50-audio", "audio", 2048, logmel=RESNET50_AUDIO_LOGMEL,
          description="ResNet-50 on 96x128 log-mel (1 input channel, no fc), the paper's audio network")
def resnet50_audio() -> ResNet50Audio:
    return ResNet50Audio()


@register("audio-cnn-tiny", "audio", 128, logmel=TINY_LOGMEL,
          description="tiny 4-layer CNN (~100k params) on 96x64 log-mel for tests and the demo")
def audio_cnn_tiny() -> TinyAudioCNN:
    return TinyAudioCNN()
