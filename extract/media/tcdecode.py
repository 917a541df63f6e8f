"""Decode one video with torchcodec (``--decoder torchcodec``): the clips, audio and status of
:func:`cavnet.extract.media.decode.decode_video`, the pixels from torchcodec, on the CPU or on NVDEC.

What the file holds (its streams, codec, frame size, the container's duration and frame count) is read from
its header with PyAV, and the clip plan, the statuses and the short-decode rule are :mod:`.decode`'s, so both
decoders judge a file alike: missing, empty, unreadable, no video, no audio (``no_audio``), undecodable
frames or under ``SHORT_FRACTION`` of the container's frames or duration (``short_decode``). torchcodec scans
the packets (``seek_mode="exact"``: the frame count and span of what is really there), then decodes each
clip's frames by index (frame ``ceil((start - eps) * fps)`` on: the frame the PyAV decoder starts a clip with
when the rate is constant; a variable-rate file is indexed at its average rate) and the audio, resampled to
mono at the front end's rate by swresample, as PyAV's resampler does.

Not bit-exact: on the CPU torchcodec resizes with swscale's bilinear filter (anti-aliased), the PyAV path with
area averaging; the clips of a video differ by at most :data:`CLIP_TOLERANCE` grey levels on average
(``tests/test_torchcodec.py`` holds both decoders to it on the test media).

torchcodec turns frames upright itself (the display rotation), before its resize. On a CUDA worker
(``device="cuda"``) H.264 and HEVC files of at least :data:`NVDEC_MIN_PIXELS` are decoded by the GPU's NVDEC
(torchcodec's "beta" CUDA backend, which has no resize), then resized (bilinear, anti-aliased) and cropped on
the GPU; smaller files and other codecs, where NVDEC is no faster than the CPU, stay on the CPU, and a file
NVDEC fails on is decoded on the CPU.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ...errors import error_message
from ..config import ClipSampling, LogMel
from . import tcsetup
from .clips import quarter_turns, resized_size
from .decode import (DECODE_ERROR, NO_VIDEO, DecodedVideo, _frame_rate, _result, _scan_seconds, _status,
                     _stream_seconds, file_problem, video_stream)
from .resample import trim_padding
from .sampling import uniform_starts, valid_count
from .sandbox import local_url, open_media

NVDEC_CODECS = ("h264", "hevc")
NVDEC_MIN_PIXELS = 1280 * 720  # 720p and up: below it the CPU decodes as fast (and NVDEC sessions are few)
CLIP_TOLERANCE = 4.0  # mean absolute difference (0-255) between this decoder's clips and the PyAV decoder's
_SOURCE = re.compile(r"(?<=: )\w+, \S+\.(?:cpp|h):\d+, ")  # torchcodec's "function, file.cpp:line, " prefix


@dataclass(frozen=True)
class _Header:
    """What the container says (read with PyAV)."""

    video: int
    audio: int | None
    codec: str
    width: int
    height: int
    fps: float
    expected: float
    frames: int
    origin: float | None  # the stream's start time (clip times count from it)
    audio_stream: Any  # duration and time base, for trimming encoder padding


def nvdec_wanted(codec: str, width: int, height: int, device: str) -> bool:
    """Whether a file goes to NVDEC: a CUDA worker, H.264 or HEVC, at least ``NVDEC_MIN_PIXELS``."""
    return device.startswith("cuda") and codec in NVDEC_CODECS and width * height >= NVDEC_MIN_PIXELS


def _message(exc: BaseException) -> str:
    """One line, without the C++ source location torchcodec puts in front of its messages."""
    return _SOURCE.sub("", error_message(exc), count=1)


def _header(path: str, segments: int) -> _Header | None:
    """The file's streams and the container's figures; None when it has no video stream."""
    with open_media(path) as container:
        v = video_stream(container)
        if v is None:
            return None
        a = container.streams.audio[0] if container.streams.audio and segments > 0 else None
        fps = _frame_rate(v)
        expected = _stream_seconds(container, v)
        expected = _scan_seconds(container.name, fps) if expected is None else expected
        audio = SimpleNamespace(duration=a.duration, time_base=a.time_base) if a is not None else None
        origin = float(v.start_time * v.time_base) if v.start_time is not None and v.time_base else None
        return _Header(v.index, a.index if a is not None else None, v.codec_context.name, v.codec_context.width,
                       v.codec_context.height, fps, expected, int(v.frames or 0), origin, audio)


def decode_video_torchcodec(path: str, sampling: ClipSampling, logmel: LogMel, segments: int, threads: int = 0,
                            device: str = "cpu", fallback: bool = True) -> DecodedVideo:
    """:func:`~cavnet.extract.media.decode.decode_video` through torchcodec. ``device`` "cuda": NVDEC where
    :func:`nvdec_wanted`; ``fallback`` False: a file NVDEC fails on raises instead of going to the CPU (the
    bench, so that an NVDEC figure is NVDEC's). Never raises for bad media otherwise; raises
    :class:`~.tcsetup.TorchcodecUnavailable` when torchcodec cannot be loaded (an install problem)."""
    problem = file_problem(path)
    if problem is not None:
        return _result(sampling, *problem)
    tcsetup.load()
    try:
        head = _header(path, segments)
    except Exception as exc:  # av raises many types on open: all are bad media
        return _result(sampling, DECODE_ERROR, error_message(exc))
    if head is None:
        return _result(sampling, NO_VIDEO, "no video stream")
    audio = _audio(path, head, logmel.sample_rate) if head.audio is not None else (None, 0, "")
    if nvdec_wanted(head.codec, head.width, head.height, device):
        try:
            return _video(path, head, sampling, threads, device, audio, segments, on_device=True)
        except Exception:  # noqa: BLE001 - NVDEC could not take this file (session limit, profile): the CPU can
            if not fallback:
                raise
    return _video(path, head, sampling, threads, "cpu", audio, segments)


def _audio(path: str, head: _Header, rate: int) -> tuple[np.ndarray | None, int, str]:
    """``(samples,)`` float32 mono at ``rate`` (None: nothing decoded), errors, the first error message."""
    from torchcodec.decoders import AudioDecoder

    try:
        samples = AudioDecoder(local_url(path), stream_index=head.audio, sample_rate=rate,
                               num_channels=1).get_all_samples()
    except Exception as exc:  # noqa: BLE001 - bad audio never stops the video
        text = _message(exc)
        if "No audio frames were decoded" in text:  # a stream with nothing decodable: no audio, as with PyAV
            return None, 0, ""
        return None, 1, f"audio: {text}"
    wave = samples.data.reshape(-1).numpy().astype(np.float32, copy=False)
    return (trim_padding(wave, head.audio_stream, rate) if wave.size else None), 0, ""


def _clip_indices(head: _Header, sampling: ClipSampling, count: int) -> list[np.ndarray]:
    """Frame indices of each clip that opens (its first frame exists), short clips repeating their last."""
    n_plan = valid_count(head.expected * head.fps, sampling.frames, sampling.clips)
    starts = uniform_starts(head.expected, sampling.frames / head.fps, n_plan)
    eps = 0.25 / head.fps
    firsts = [int(math.ceil(round((s - eps) * head.fps, 6))) for s in starts]
    return [np.minimum(np.arange(k, k + sampling.frames), count - 1) for k in firsts if k < count]


def _video(path: str, head: _Header, sampling: ClipSampling, threads: int, device: str,
           audio: tuple[np.ndarray | None, int, str], segments: int, on_device: bool = False) -> DecodedVideo:
    """The clips and the status. ``on_device``: the NVDEC path (torchcodec's beta CUDA backend on ``device``,
    full frames resized and cropped where they are, by :func:`resize_crop`; any failure raises, for the caller
    to fall back to the CPU); else torchcodec's CPU decoder with its own resize."""
    from torchcodec.decoders import VideoDecoder, set_cuda_backend

    wave, audio_errors, audio_message = audio
    side = max(sampling.short_side, sampling.size)
    try:
        if on_device:  # the beta backend is CUDA's; the CPU stands in for a device in the tests
            with set_cuda_backend("beta") if device.startswith("cuda") else contextlib.nullcontext():
                decoder = VideoDecoder(local_url(path), stream_index=head.video, seek_mode="exact",
                                       dimension_order="NHWC", device=device)
        else:
            decoder = _cpu_decoder(VideoDecoder, path, head, sampling, side, threads)
    except Exception as exc:  # noqa: BLE001 - nothing decodable (the scan failed)
        if on_device:
            raise
        return _result(sampling, DECODE_ERROR, _message(exc), wave, head.fps, 0.0)
    meta = decoder.metadata
    count = int(meta.num_frames_from_content or len(decoder))
    clips, times, errors, message = [], [], audio_errors, audio_message
    begin, end = meta.begin_stream_seconds_from_content or 0.0, meta.end_stream_seconds_from_content or 0.0
    origin = begin if head.origin is None else head.origin
    for index in _clip_indices(head, sampling, count):
        try:
            batch = decoder.get_frames_at(index.tolist())
        except Exception as exc:  # noqa: BLE001 - a clip that does not decode: the rest still may
            if on_device:
                raise
            errors, message = errors + 1, message or _message(exc)
            continue
        frames, pts = batch.data, batch.pts_seconds
        clips.append(resize_crop(frames, sampling, side) if on_device else _crop(frames.numpy(), sampling.size))
        times.append((float(pts[0]) + float(pts[-1]) + 1.0 / head.fps) / 2.0 - origin)  # the PyAV decoder's centre
    decoded = max(0.0, end - begin)
    if not clips:
        return _result(sampling, DECODE_ERROR, message or "no video frame decoded", wave, head.fps, 0.0)
    status, error = _status(count, decoded, head.expected, head.fps, head.frames, errors, message,
                            segments > 0 and wave is None)
    return DecodedVideo(np.stack(clips), np.asarray(times, np.float64), wave, head.fps, decoded, status, error)


def _cpu_decoder(video_decoder: Any, path: str, head: _Header, sampling: ClipSampling, side: int, threads: int) -> Any:
    """torchcodec's CPU decoder, resizing in FFmpeg to what the PyAV path resizes to. It rotates frames as
    displayed before its resize, so a quarter-turned file needs the displayed size: its decoder is made again
    once the rotation is known (its metadata)."""
    from torchcodec.transforms import Resize

    decoder = None
    for turns in (0, 1):
        w, h = (head.height, head.width) if turns else (head.width, head.height)
        nw, nh = resized_size(w, h, 0, side, sampling.resize)
        decoder = video_decoder(local_url(path), stream_index=head.video, seek_mode="exact", dimension_order="NHWC",
                                num_ffmpeg_threads=threads, transforms=[Resize((nh, nw))])
        if quarter_turns(decoder.metadata.rotation) % 2 == turns:
            break
    return decoder


def _crop(frames: np.ndarray, size: int) -> np.ndarray:
    """``(T, H, W, 3)`` resized frames -> ``(T, S, S, 3)`` centre crop."""
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return frames[:, top:top + size, left:left + size]


def resize_crop(frames: torch.Tensor, sampling: ClipSampling, side: int) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames, as displayed, on any device -> ``(T, S, S, 3)`` uint8 on the host: the
    short side (or the whole frame, to ``sampling.resize``) resized where the frames are (bilinear,
    anti-aliased), then centre-cropped. The NVDEC path's resize (its frames stay on the GPU until here)."""
    h, w = frames.shape[1:3]
    nw, nh = resized_size(w, h, 0, side, sampling.resize)
    x = frames.permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left, s = (nh - sampling.size) // 2, (nw - sampling.size) // 2, sampling.size
    x = x[:, :, top:top + s, left:left + s].round_().clamp_(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()
