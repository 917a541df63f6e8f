"""Decode one video in a single sequential PyAV pass: uniformly spaced RGB clips plus 16 kHz mono audio.

Nothing is seeked: the demuxer walks the file once, the video decoder runs with FFmpeg threads, and a frame
is converted to RGB (resized in FFmpeg's scaler, centre-cropped by a numpy slice) only when a clip needs it.
Between clips the decoder drops the frames nothing refers to (``skip_frame=NONREF``: the B-frames of a typical
H.264/HEVC file), so only the reference frames between clips are decoded at all.
Bad media never raises: every path returns a :class:`DecodedVideo` whose ``status`` says what happened.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import av
import numpy as np

from ...errors import error_message
from ..config import ClipSampling, LogMel
from ..status import DECODE_ERROR, EMPTY_FILE, MISSING_FILE, NO_AUDIO, NO_VIDEO, OK, SHORT_DECODE
from .clips import _ClipCollector, _GapSkipper
from .resample import AudioCollector, trim_padding
from .sampling import uniform_starts, valid_count
from .sandbox import Budget, BudgetExceeded, open_media, refused_message


SHORT_FRACTION = 0.8  # decoded frames / duration below this share of the container's figure: short_decode
MAX_PACKET_ERRORS = 16  # undecodable packets skipped before giving up on the file
_ATTACHED_PIC = av.stream.Disposition.attached_pic  # album art: a video stream that is not a video

if TYPE_CHECKING:
    import torch


@dataclass
class DecodedVideo:
    """What :func:`decode_video` got out of one file.

    ``clips`` ``(n, T, S, S, 3)`` uint8 RGB, ``clip_times`` ``(n,)`` clip centres in seconds, ``audio``
    ``(samples,)`` float32 mono at ``LogMel.sample_rate`` (None: no audio stream or nothing decoded),
    ``fps`` and ``duration`` as decoded, ``status`` one of ``cavnet.extract.status.DECODE_STATUSES``,
    ``error`` a one-line message. ``crops``: ``(n, K, T, S, S, 3)`` every spatial crop when ``K`` > 1 were
    asked for (``clips`` is then the centre one, ``crops[:, K // 2]``), else None.
    """

    clips: np.ndarray
    clip_times: np.ndarray
    audio: np.ndarray | None
    fps: float
    duration: float
    status: str
    error: str = ""
    crops: np.ndarray | None = None

    def all_crops(self) -> np.ndarray:
        """``(n, K, T, S, S, 3)``: ``crops``, or the clips as the one crop."""
        return self.crops if self.crops is not None else self.clips[:, None]


def _result(sampling: ClipSampling, status: str, error: str = "", audio: np.ndarray | None = None,
            fps: float = 0.0, duration: float = 0.0) -> DecodedVideo:
    """A result without clips."""
    clips = np.zeros((0, sampling.frames, sampling.size, sampling.size, 3), dtype=np.uint8)
    return DecodedVideo(clips, np.zeros(0, dtype=np.float64), audio, fps, duration, status, error)


def decode_video(path: str, sampling: ClipSampling, logmel: LogMel, segments: int,
                 threads: int = 0, crops: int = 1) -> DecodedVideo:
    """Decode ``path`` into up to ``sampling.clips`` clips and its mono audio at ``logmel.sample_rate``.

    ``segments`` <= 0 skips the audio stream (``audio`` is None and the status speaks for the video only).
    ``threads`` is FFmpeg's decoder thread count (0: automatic). ``crops``: 1 (the centre crop) or 3 (start,
    centre and end along the long side, in ``DecodedVideo.crops``). Never raises for bad media.
    """
    problem = file_problem(path)
    if problem is not None:
        return _result(sampling, *problem)
    try:
        with open_media(path) as container:
            return _decode_container(container, sampling, logmel, segments, threads, crops)
    except Exception as exc:  # av raises many types on open (InvalidDataError, OSError, ...): all are bad media
        return _result(sampling, DECODE_ERROR, refused_message(error_message(exc)))


def file_problem(path: str) -> tuple[str, str] | None:
    """``(status, message)`` of a file that cannot be opened at all (missing, unreadable, 0 bytes: a FIFO
    reads as 0 bytes and is never opened, so it cannot block), else None."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return MISSING_FILE, f"FileNotFoundError: {path}"
    except OSError as exc:
        return MISSING_FILE, error_message(exc)
    return (EMPTY_FILE, "file is 0 bytes") if size == 0 else None


def video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    """The first video stream that is a video (album art is an attached picture, not a video)."""
    return next((s for s in container.streams.video if not s.disposition & _ATTACHED_PIC), None)


def decode_threads() -> int:
    """FFmpeg decoder threads for one video: ``CAVNET_DECODE_THREADS``, else the worker's share of the
    cores (``CAVNET_TORCH_THREADS``, set for local CPU workers), else 0 (FFmpeg decides)."""
    for name in ("CAVNET_DECODE_THREADS", "CAVNET_TORCH_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def decode_with(decoder: str, path: str, sampling: ClipSampling, logmel: LogMel, segments: int,
                threads: int = 0, device: str = "cpu", crops: int = 1) -> DecodedVideo:
    """:func:`decode_video` with the ``decoder`` an :class:`~cavnet.extract.config.ExtractConfig` names:
    ``pyav`` (this module) or ``torchcodec`` (:mod:`.tcdecode`; ``device`` "cuda" lets it use NVDEC; the
    centre crop only)."""
    if decoder == "torchcodec":
        if crops != 1:
            raise ValueError("the torchcodec decoder cuts the centre crop only")
        from .tcdecode import decode_video_torchcodec

        return decode_video_torchcodec(path, sampling, logmel, segments, threads, device)
    return decode_video(path, sampling, logmel, segments, threads, crops)


def _decode_container(container: av.container.InputContainer, sampling: ClipSampling, logmel: LogMel,
                      segments: int, threads: int, crops: int = 1) -> DecodedVideo:
    vstream = video_stream(container)
    astream = container.streams.audio[0] if container.streams.audio and segments > 0 else None
    audio = AudioCollector(logmel.sample_rate) if astream is not None else None
    if vstream is None:
        errors, message = _demux(container, None, astream, None, audio)
        wave = trim_padding(audio.finish(), astream, logmel.sample_rate) if audio is not None else None
        duration = len(wave) / logmel.sample_rate if wave is not None else _container_seconds(container)
        return _result(sampling, NO_VIDEO, message or "no video stream", wave, 0.0, duration)

    vstream.thread_type = "AUTO"
    vstream.thread_count = threads
    fps = _frame_rate(vstream)
    expected = _stream_seconds(container, vstream)
    if expected is None:
        expected = _scan_seconds(container.name, fps)
    n_plan = valid_count(expected * fps, sampling.frames, sampling.clips)
    starts = uniform_starts(expected, sampling.frames / fps, n_plan)
    clips = _ClipCollector(starts, sampling, fps, crops)
    origin = float(vstream.start_time * vstream.time_base) if vstream.start_time is not None else None
    skipper = _GapSkipper(vstream, clips, origin) if origin is not None else None
    on_video = _video_handler(clips, origin, fps, skipper)
    errors, message = _demux(container, vstream, astream, on_video, audio, skipper)
    if skipper is not None:
        clips.seen += skipper.dropped()
    wave = trim_padding(audio.finish(), astream, logmel.sample_rate) if audio is not None else None
    if audio is not None and audio.errors:
        errors, message = errors + audio.errors, message or audio.error

    frames, times = clips.finish()
    decoded = clips.last_time + 1.0 / fps if clips.seen else 0.0
    if clips.seen == 0 or frames.shape[0] == 0:
        return _result(sampling, DECODE_ERROR, message or "no video frame decoded", wave, fps, 0.0)
    status, error = _status(clips.seen, decoded, expected, fps, vstream.frames, errors, message,
                            segments > 0 and wave is None)
    return DecodedVideo(frames[:, crops // 2], times, wave, fps, decoded, status, error,
                        frames if crops > 1 else None)


def _status(seen: int, decoded: float, expected: float, fps: float, container_frames: int, errors: int,
            message: str, audio_missing: bool) -> tuple[str, str]:
    """Status of a file that gave at least one clip."""
    short_count = container_frames > 0 and seen < SHORT_FRACTION * container_frames
    short_time = expected > 0 and decoded < SHORT_FRACTION * expected
    if errors or short_count or short_time:
        if not message:
            total = container_frames if container_frames > 0 else round(expected * fps)
            message = f"decoded {seen} of {total} frames ({decoded:.2f} of {expected:.2f} s)"
        return SHORT_DECODE, message
    if audio_missing:
        return NO_AUDIO, ""
    return OK, ""


def _video_handler(clips: "_ClipCollector", origin: float | None, fps: float,
                   skipper: "_GapSkipper | None" = None) -> Callable[[av.VideoFrame], None]:
    """Per-frame callback: timestamp relative to the stream start (frame count when pts is missing)."""
    state = {"origin": origin}

    def on_frame(frame: av.VideoFrame) -> None:
        if skipper is not None and skipper.pending:
            skipper.pending.discard(frame.pts)
        t = frame.time
        if t is None or not math.isfinite(t):  # no pts, or no time base (frames drained after a stopped demux)
            t = clips.last_time + 1.0 / fps if clips.seen else 0.0
        else:
            if state["origin"] is None:
                state["origin"] = t
            t -= state["origin"]
        clips.push(t, frame)

    return on_frame


def _demux(container: av.container.InputContainer, vstream: av.VideoStream | None,
           astream: av.AudioStream | None, on_video: Callable[[av.VideoFrame], None] | None,
           audio: "AudioCollector | None", skipper: "_GapSkipper | None" = None) -> tuple[int, str]:
    """Walk the file once; returns (errors, first error message). Undecodable packets are skipped."""
    streams = [s for s in (vstream, astream) if s is not None]
    errors, message = 0, ""
    if not streams:
        return errors, message
    budget = Budget()
    try:
        for packet in container.demux(streams):
            budget.spend()
            if skipper is not None and packet.stream is vstream:
                skipper.before(packet)
            try:
                frames = packet.decode()
            except Exception as exc:  # a damaged packet: skip it, remember why
                errors, message = errors + 1, message or error_message(exc)
                if errors > MAX_PACKET_ERRORS:
                    break
                continue
            for frame in frames:
                if packet.stream is vstream:
                    on_video(frame)
                else:
                    audio.push(frame)
    except BudgetExceeded as exc:  # what was decoded so far decides the status; the message says why it stopped
        errors, message = errors + 1, str(exc)
        _flush(streams, vstream, on_video, audio)
    except Exception as exc:  # the demuxer itself failed (truncated or damaged container)
        errors, message = errors + 1, message or error_message(exc)
        _flush(streams, vstream, on_video, audio)
    return errors, message


def _flush(streams: list, vstream: av.VideoStream | None, on_video: Callable | None,
           audio: "AudioCollector | None") -> None:
    """Drain frames the decoders still hold (frame threading delays output) after a failed demux."""
    for stream in streams:
        try:
            frames = stream.codec_context.decode(None)
        except Exception:
            continue
        for frame in frames:
            if stream is vstream:
                on_video(frame)
            else:
                audio.push(frame)


def _frame_rate(stream: av.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0 and math.isfinite(float(rate)):
            return float(rate)
    return 25.0


def _stream_seconds(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    """The video's duration from the container: the stream's own, its Matroska DURATION tag, the file's."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d*)?)", tag.strip())
        if match:
            hours, minutes, seconds = match.groups()
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return _container_seconds(container)


def _container_seconds(container: av.container.InputContainer) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _scan_seconds(path: str, fps: float) -> float:
    """Duration of a file whose header has none (raw H.264, some streams): one packet-only pass (no
    decoding) over the video; the pts span, or the packet count at ``fps`` when packets carry no pts."""
    times: list[float] = []
    count, budget = 0, Budget()
    try:
        with open_media(path) as container:
            for packet in container.demux(container.streams.video[0]):
                budget.spend()
                if packet.size == 0:
                    continue
                count += 1
                if packet.pts is not None:
                    times.append(float(packet.pts * packet.time_base))
    except Exception:  # whatever was read before the damage still counts
        pass
    span = max(times) - min(times) + 1.0 / fps if times else 0.0
    return max(span, count / fps)


def normalise_clips(clips: np.ndarray, sampling: ClipSampling) -> "torch.Tensor":
    """``(N, T, S, S, 3)`` uint8 -> ``(N, 3, T, S, S)`` float32 ``(x - mean) / std``.

    The result is laid out channels_last_3d (a permuted view of the uint8 memory), which is what the 3D
    CNN runs fastest on; call ``.contiguous()`` if a plain layout is needed.
    """
    import torch  # here, not at the top: re-encoding (cavnet prepare) and probing never need torch

    x = torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 4, 1, 2, 3).to(torch.float32)
    mean = torch.tensor(sampling.mean, dtype=torch.float32).view(1, 3, 1, 1, 1)
    std = torch.tensor(sampling.std, dtype=torch.float32).view(1, 3, 1, 1, 1)
    x.sub_(mean)
    if any(s != 1.0 for s in sampling.std):
        x.div_(std)
    return x
