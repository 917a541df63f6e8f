"""Random initialisation made unmistakable: the one line, and where commands print it."""

from __future__ import annotations

from cavnet.extract.config import ExtractConfig
from cavnet.extract.provenance import random_backbones, random_weights_note, weights_sources
from cavnet.pipelines.demo.config import DemoConfig
from cavnet.pipelines.demo.report import render_report
from cavnet.pipelines.evaluate import echo_metrics

PRETRAINED = ExtractConfig(visual="r2plus1d_18", audio="vggish", visual_weights="/w/r2plus1d_18-91a641e6.pth",
                           visual_weights_sha256="91a641e6" + "0" * 56,
                           visual_weights_name="torchvision R2Plus1D_18_Weights.KINETICS400_V1",
                           audio_weights="/w/vggish-10086976.pth", audio_weights_sha256="ab" * 32)


def test_note_names_exactly_the_random_backbones() -> None:
    assert random_weights_note(PRETRAINED) is None and random_backbones(PRETRAINED) == []
    half = ExtractConfig(visual="resnext3d-101", audio="vggish", audio_weights="/w/v.pth",
                         audio_weights_sha256="cd" * 32)
    note = random_weights_note(half.to_json())  # also from the JSON a store keeps
    assert note is not None and "\n" not in note
    assert "randomly initialised visual resnext3d-101 (" in note and "vggish" not in note
    both = random_weights_note({"visual": "resnext3d-tiny", "audio": "audio-cnn-tiny"})
    assert "visual resnext3d-tiny and audio audio-cnn-tiny" in both


def test_sources_say_what_the_files_are() -> None:
    s = weights_sources(PRETRAINED)
    assert s["visual"] == "r2plus1d_18: torchvision R2Plus1D_18_Weights.KINETICS400_V1 (sha256 91a641e60000)"
    assert s["audio"] == "vggish: file /w/vggish-10086976.pth (sha256 abababababab)"  # an old store: no name
    assert weights_sources(ExtractConfig())["audio"] == "resnet50-audio: random initialisation"


def test_demo_report_and_evaluate_print_the_line() -> None:
    note = random_weights_note(ExtractConfig(visual="resnext3d-tiny", audio="audio-cnn-tiny"))
    report = render_report(DemoConfig(), {"ok": 24}, [], 1.0, 2.0, note)
    assert f"**{note}**" in report
    assert "random weights" not in render_report(DemoConfig(), {"ok": 24}, [], 1.0, 2.0, None)
    lines: list[str] = []
    metrics = {"count": 4, "top1": 50.0, "top5": 100.0, "mean_class": 50.0}
    echo_metrics({"split": "val", **metrics, "audio_present": metrics, "random_weights": note}, lines.append)
    assert lines[-1] == note
