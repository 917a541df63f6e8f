"""Re-encode one video to a smaller short side, for ``cavnet prepare``: one file in, one file out, a status back.

The output is MP4: H.264 by PyAV's libx264 at the source's frame rate (every frame's timestamp is kept, so a
variable rate stays variable) with a keyframe at least every ``keyframe_seconds`` (a seek decodes at most that
much), resized in FFmpeg's scaler (area averaging, never upscaled), the display rotation kept; the audio is
copied packet for packet when MP4 can hold its codec, else encoded to AAC at the source's rate.

The source is decoded in one pass, as :func:`cavnet.extract.media.decode.decode_video` decodes it, and judged
by the same rules: a file that is missing, empty, unreadable, without video or damaged (undecodable packets,
or under ``SHORT_FRACTION`` of the container's frames or duration) is not re-encoded: its status is returned
and nothing is written, so the caller references the original (re-encoding what decodes of a damaged file
would turn its ``short_decode`` into a clean, shorter video). The output is written to a tmp name, fsynced and
renamed: the final name is the commit, and an existing output is never redone.
"""

from __future__ import annotations

import errno
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from ...errors import error_message
from ..config import PrepareConfig
from ..store.writer import tmp_name
from ..status import DECODE_ERROR, ENCODE_ERROR, NO_VIDEO, PREPARED, SHORT_DECODE
from .decode import MAX_PACKET_ERRORS, _frame_rate, _status, _stream_seconds, file_problem, video_stream
from .sandbox import open_media, refused_message
MP4_AUDIO_COPY = ("aac", "mp3", "ac3", "eac3", "alac", "opus")  # codecs FFmpeg's MP4 muxer takes as they are
_FATAL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)  # the run stops: not this file's fault


@dataclass
class PrepareResult:
    """What became of one file. ``status`` is ``prepared`` (written) or why not: the source's status
    (``missing_file``, ``empty_file``, ``decode_error``, ``no_video``, ``short_decode``) or ``encode_error``.
    ``width``/``height`` are the source's stored frame size, ``out_*`` the output's; ``audio`` says what was
    done with the audio (``copy aac``, ``aac``, or empty: no audio stream); ``reused``: the output existed."""

    status: str
    error: str = ""
    src_bytes: int = 0
    bytes: int = 0
    width: int = 0
    height: int = 0
    out_width: int = 0
    out_height: int = 0
    fps: float = 0.0
    seconds: float = 0.0
    video_codec: str = ""
    audio: str = ""
    reused: bool = False


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """``(W, H)`` with the shorter side at ``short_side`` (never larger than the source), both even (yuv420p):
    rounded to the nearest even number when scaled down, else cut to the even number below."""
    scale = min(1.0, short_side / max(1, min(width, height)))
    if scale < 1.0:
        return max(2, 2 * round(width * scale / 2.0)), max(2, 2 * round(height * scale / 2.0))
    return max(2, width - width % 2), max(2, height - height % 2)


def prepare_file(src: str, dst: str | Path, config: PrepareConfig, threads: int = 0) -> PrepareResult:
    """Re-encode ``src`` to ``dst`` (MP4); an existing ``dst`` (a regular file) is reused, not redone.
    ``threads``: FFmpeg's decoder and x264's encoder threads (0: their choice). Raises only for failures
    that are not the file's (a full disk, a read-only or forbidden ``dst``); bad media gives a status."""
    dst = Path(dst)
    if dst.is_file() and not dst.is_symlink():
        reused = _reused(dst)
        if reused is not None:
            return reused
        dst.unlink()  # not a file this function committed (the rename is the commit): redone
    problem = file_problem(src)
    if problem is not None:
        return PrepareResult(*problem)
    src_bytes = os.path.getsize(src)
    try:
        container = open_media(src)
    except Exception as exc:  # av raises many types on open: all are bad media
        return PrepareResult(DECODE_ERROR, refused_message(error_message(exc)), src_bytes)
    with container:
        vstream = video_stream(container)
        if vstream is None:
            return PrepareResult(NO_VIDEO, "no video stream", src_bytes)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_name(dst)
        try:
            result = _Transcoder(container, vstream, tmp, config, threads).run()
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if not isinstance(exc, Exception) or (isinstance(exc, OSError) and exc.errno in _FATAL):
                raise
            return PrepareResult(ENCODE_ERROR, error_message(exc), src_bytes)
    result.src_bytes = src_bytes
    if result.status != PREPARED:
        tmp.unlink(missing_ok=True)
        return result
    _commit(tmp, dst)
    result.bytes = dst.stat().st_size
    return result


def _commit(tmp: Path, dst: Path) -> None:
    """fsync the tmp file, rename it to ``dst`` (the commit), fsync the folder."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dst)
    fd = os.open(dst.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reused(dst: Path) -> PrepareResult | None:
    """The record of an output written by an earlier run (its header read back); None when it does not read."""
    result = PrepareResult(PREPARED, bytes=dst.stat().st_size, reused=True)
    try:
        with av.open(str(dst)) as container:
            v = container.streams.video[0]
            result.out_width, result.out_height, result.video_codec = v.width, v.height, v.codec_context.name
            result.fps = _frame_rate(v)
            result.seconds = float(_stream_seconds(container, v) or 0.0)
            if container.streams.audio:
                result.audio = container.streams.audio[0].codec_context.name
    except Exception:  # noqa: BLE001 - an output that does not read back is not a prepared file
        return None
    return result


class _Transcoder:
    """One pass over the source: video decoded, resized and encoded; audio copied or re-encoded."""

    def __init__(self, container: av.container.InputContainer, vstream: av.VideoStream, tmp: Path,
                 config: PrepareConfig, threads: int) -> None:
        self.container, self.vstream, self.tmp, self.config = container, vstream, tmp, config
        vstream.thread_type, vstream.thread_count = "AUTO", threads
        self.fps = _frame_rate(vstream)
        self.time_base = vstream.time_base or Fraction(1, 90000)
        self.astream = container.streams.audio[0] if container.streams.audio else None
        self.threads = threads
        w, h = vstream.codec_context.width, vstream.codec_context.height
        self.size = output_size(w, h, config.short_side)
        self.result = PrepareResult(PREPARED, width=w, height=h, out_width=self.size[0], out_height=self.size[1],
                                    fps=self.fps, video_codec=vstream.codec_context.name)
        self.out: av.container.OutputContainer | None = None
        self.vout: av.VideoStream | None = None
        self.aout: av.AudioStream | None = None
        self.resampler: _Resampler | None = None
        self.audio_pts: int | None = None
        self.held: list[av.Packet] | None = []  # audio muxed before the first video packet (the header)
        self.seen = self.errors = 0
        self.message = ""
        self.origin: float | None = None
        self.last_time = 0.0
        self.last_pts: int | None = None
        self.drained = False  # the demuxer's empty packet at the end drained the video decoder

    def _video_stream(self) -> av.VideoStream:
        rate = self.vstream.average_rate or Fraction(self.fps).limit_denominator(1001)
        vout = self.out.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = self.size[0], self.size[1], "yuv420p"
        vout.codec_context.time_base = self.time_base
        vout.codec_context.gop_size = max(1, int(math.floor(self.config.keyframe_seconds * self.fps)))
        vout.codec_context.thread_count = self.threads
        vout.options = {"crf": str(self.config.crf), "preset": self.config.preset}
        return vout

    def _audio_stream(self) -> tuple[av.AudioStream | None, _Resampler | None]:
        a = self.astream
        if a is None:
            return None, None
        name = a.codec_context.name
        if name in MP4_AUDIO_COPY:
            self.result.audio = f"copy {name}"
            return self.out.add_stream_from_template(a), None
        layout = "mono" if (a.codec_context.channels or 1) == 1 else "stereo"
        aout = self.out.add_stream("aac", rate=a.rate)
        aout.layout, aout.bit_rate = layout, self.config.audio_bitrate
        self.result.audio = "aac"
        return aout, _Resampler(layout, a.rate)

    def run(self) -> PrepareResult:
        """Write the tmp file (the streams are all added before the first packet writes the header)."""
        with av.open(str(self.tmp), "w", format="mp4", options={"movflags": "+faststart"}) as self.out:
            self.vout = self._video_stream()
            self.aout, self.resampler = self._audio_stream()
            self._demux()
            self._flush()
        expected = _stream_seconds(self.container, self.vstream) or 0.0
        decoded = self.last_time + 1.0 / self.fps if self.seen else 0.0
        self.result.seconds = decoded
        if self.seen == 0:
            self.result.status, self.result.error = DECODE_ERROR, self.message or "no video frame decoded"
            return self.result
        status, error = _status(self.seen, decoded, expected, self.fps, self.vstream.frames, self.errors,
                                self.message, False)
        if status == SHORT_DECODE:
            self.result.status, self.result.error = status, error
        return self.result

    def _demux(self) -> None:
        """Walk the source once; undecodable video packets are counted (and skipped), as extract counts them.
        Only reading and decoding are guarded: an encoder or muxer failure (a full disk) propagates."""
        streams = [s for s in (self.vstream, self.astream) if s is not None]
        packets = iter(self.container.demux(streams))
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except Exception as exc:  # the demuxer failed (a truncated or damaged container)
                self.errors, self.message = self.errors + 1, self.message or error_message(exc)
                return
            if packet.stream is not self.vstream:
                if packet.size:
                    self._audio(packet)
                continue
            try:
                frames = packet.decode()
            except Exception as exc:  # a damaged packet: skip it, remember why
                self.errors, self.message = self.errors + 1, self.message or error_message(exc)
                if self.errors > MAX_PACKET_ERRORS:
                    return
                continue
            self.drained = self.drained or not packet.size
            for frame in frames:
                self._video(frame)

    def _video(self, frame: av.VideoFrame) -> None:
        self.seen += 1
        t = frame.time
        if t is None:
            t = self.last_time + 1.0 / self.fps if self.seen > 1 else 0.0
            pts = int(round(t / self.time_base))
        else:
            self.origin = t if self.origin is None else self.origin
            t -= self.origin
            pts = frame.pts
        self.last_time = t
        if self.last_pts is not None and pts <= self.last_pts:
            return  # a repeated timestamp: MP4 cannot hold it (the frame still counts as decoded)
        self.last_pts = pts
        if self.held is not None and frame.rotation:
            self.vout.set_display_rotation(frame.rotation)
        image = frame.reformat(width=self.size[0], height=self.size[1], format="yuv420p", interpolation="AREA")
        image.pts, image.time_base = pts, self.time_base
        if frame.duration:  # the last frame's duration makes the stream's (and so its average rate)
            image.duration = frame.duration
        self._mux_video(self.vout.encode(image))

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self.out.mux(packet)
            if self.held is not None:  # the header is written: the audio held back can follow
                held, self.held = self.held, None
                for p in held:
                    self.out.mux(p)

    def _mux_audio(self, packet: av.Packet) -> None:
        if self.held is not None:
            self.held.append(packet)
        else:
            self.out.mux(packet)

    def _audio(self, packet: av.Packet) -> None:
        if self.resampler is None:  # stream copy
            if packet.dts is None:
                return
            packet.stream = self.aout
            self._mux_audio(packet)
            return
        try:
            frames = packet.decode()
        except Exception:  # a damaged audio packet: dropped (extract judges the audio of the prepared file)
            return
        for frame in frames:
            self._encode_audio(frame)

    def _encode_audio(self, frame: av.AudioFrame | None) -> None:
        if frame is not None and self.audio_pts is None:
            start = frame.time if frame.time is not None else 0.0
            self.audio_pts = max(0, int(round((start - (self.origin or 0.0)) * self.resampler.rate)))
        for out in self.resampler.resample(frame):
            out.pts, out.time_base = self.audio_pts or 0, Fraction(1, self.resampler.rate)
            self.audio_pts = (self.audio_pts or 0) + out.samples
            for packet in self.aout.encode(out):
                self._mux_audio(packet)

    def _flush(self) -> None:
        frames: list[av.VideoFrame] = []
        if not self.drained:  # the demux stopped early: frame threads may still hold decoded frames
            try:
                frames = self.vstream.codec_context.decode(None)
            except Exception as exc:
                self.errors, self.message = self.errors + 1, self.message or error_message(exc)
        for frame in frames:
            self._video(frame)
        self._mux_video(self.vout.encode(None))
        if self.resampler is not None:
            self._encode_audio(None)
            for packet in self.aout.encode(None):
                self._mux_audio(packet)
        if self.held:  # no video packet at all: nothing to keep, but the muxer must not be left half-open
            for p in self.held:
                self.out.mux(p)
            self.held = None


class _Resampler:
    """Decoded audio -> AAC-ready 1024-sample ``fltp`` frames at one ``rate`` and ``layout``; a new FFmpeg
    resampler whenever the input's format, layout or rate changes (one is fixed to its first frame)."""

    def __init__(self, layout: str, rate: int) -> None:
        self.layout, self.rate = layout, rate
        self.inner: av.AudioResampler | None = None
        self.key: tuple | None = None

    def resample(self, frame: av.AudioFrame | None) -> list[av.AudioFrame]:
        out: list[av.AudioFrame] = []
        if frame is not None:
            key = (frame.format.name, frame.layout.name, frame.sample_rate)
            if key != self.key:
                out += self.inner.resample(None) if self.inner is not None else []
                self.inner = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate, frame_size=1024)
                self.key = key
        if self.inner is not None:
            out += self.inner.resample(frame)
        return out


BITS_PER_PIXEL = 0.12  # x264 veryfast at crf 23: 0.08-0.12 measured on the bench's AV-Synth corpus at 128p


def estimate_bytes(src: str, config: PrepareConfig) -> int | None:
    """About how many bytes ``prepare_file`` writes for ``src`` (from its header: the output frame size,
    rate and duration at :data:`BITS_PER_PIXEL`, plus the audio copied or at ``audio_bitrate``); None when
    the header does not read."""
    try:
        with open_media(src) as container:
            v = video_stream(container)
            if v is None:
                return None
            seconds = _stream_seconds(container, v) or 0.0
            w, h = output_size(v.codec_context.width, v.codec_context.height, config.short_side)
            bits = seconds * w * h * _frame_rate(v) * BITS_PER_PIXEL
            if container.streams.audio:
                a = container.streams.audio[0]
                copied = a.codec_context.name in MP4_AUDIO_COPY and a.bit_rate
                bits += seconds * (a.bit_rate if copied else config.audio_bitrate)
            return int(bits / 8)
    except Exception:  # noqa: BLE001 - an unreadable header: no estimate
        return None
