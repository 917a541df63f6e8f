"""Per-frame video side of :func:`cavnet.extract.media.decode.decode_video`: which frames the decoder may drop
between clips, and how decoded frames become clips (resized in swscale, cropped, rotated): the centre crop,
or with ``crops`` 3 the start, centre and end crops along the long side (PySlowFast's and mmaction2's
ThreeCrop), all cut from one conversion of the frame.
"""

from __future__ import annotations

import math

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from ..config import ClipSampling


def quarter_turns(rotation: float | None) -> int:
    """Counter-clockwise quarter turns (0-3) of a display rotation in degrees (None: none)."""
    return int(round(rotation / 90.0)) % 4 if rotation else 0


def crop_offsets(nw: int, nh: int, size: int, crops: int, turns: int = 0) -> list[tuple[int, int]]:
    """``(top, left)`` of each ``size`` crop of a stored ``nw`` x ``nh`` resized frame: the centre one, or
    for ``crops`` 3 the start, centre and end crops along the long side (the short side centred), in
    the order of the displayed frame once ``turns`` counter-clockwise quarter turns are applied (left to
    right, or top to bottom)."""
    top, left = (nh - size) // 2, (nw - size) // 2
    if crops == 1:
        return [(top, left)]
    if nw >= nh:
        boxes = [(top, 0), (top, left), (top, nw - size)]
        reverse = turns in (1, 2)  # a turn that runs the stored width backwards in the displayed frame
    else:
        boxes = [(0, left), (top, left), (nh - size, left)]
        reverse = turns in (2, 3)
    return boxes[::-1] if reverse else boxes


def resized_size(width: int, height: int, turns: int, side: int, resize: tuple[int, int] | None) -> tuple[int, int]:
    """``(W, H)`` a stored ``width`` x ``height`` frame is scaled to before the centre crop: the short side to
    ``side``, or to exactly ``resize`` = (H, W) as displayed (a quarter turn swaps them in the stored frame)."""
    if resize is not None:
        nh, nw = (resize[1], resize[0]) if turns % 2 else resize
        return nw, nh
    scale = side / min(width, height)
    return max(side, round(width * scale)), max(side, round(height * scale))


class _GapSkipper:
    """Sets ``skip_frame=NONREF`` on the video decoder for the packets that fall between clips.

    A packet is decoded in skip mode only when no opened clip is still filling and its time is more than two
    frames away from every clip window and before the last clip, so clip frames and the decoded duration are
    never affected (reference frames are always decoded; the decoder drops only frames nothing refers to).
    Frame threads take the setting with each packet they are handed. The pts of every packet sent in skip
    mode is remembered until its frame comes out; what never comes out was dropped, and still counts as seen.
    """

    def __init__(self, stream: av.VideoStream, clips: "_ClipCollector", origin: float) -> None:
        self.context = stream.codec_context
        self.time_base = float(stream.time_base) if stream.time_base else 0.0
        self.origin = origin
        self.clips = clips
        self.margin = 2.0 * clips.step
        self.span = clips.length * clips.step + self.margin  # a window reaches this far past its start
        self.last = float(clips.starts[-1]) - self.margin if len(clips.starts) else -math.inf
        self.skipping = False
        self.pending: set[int] = set()
        self.sent = 0

    def before(self, packet: av.Packet) -> None:
        """Choose the decoder's skip mode for ``packet`` (a video packet about to be decoded)."""
        pts = packet.pts
        skip = pts is not None and self.time_base > 0 and self.clips.idle() and self._in_gap(
            pts * self.time_base - self.origin)
        if skip:
            self.pending.add(pts)
            self.sent += 1
        if skip != self.skipping:
            self.context.skip_frame = "NONREF" if skip else "DEFAULT"
            self.skipping = skip

    def _in_gap(self, t: float) -> bool:
        if t >= self.last:
            return False
        starts = self.clips.starts
        i = int(np.searchsorted(starts, t + self.margin, side="right")) - 1
        return i < 0 or t > starts[i] + self.span

    def dropped(self) -> int:
        """Frames the decoder dropped (sent in skip mode, never output)."""
        return len(self.pending)


class _ClipCollector:
    """Fills clip ``i`` with ``T`` consecutive frames from the first frame at or after ``starts[i]``.

    Clips open in order, so the opened clips are always a prefix and the unfinished ones a contiguous range.
    ``crops``: spatial crops per frame (:func:`crop_offsets`), kept on a crop axis of the output.
    """

    def __init__(self, starts: np.ndarray, sampling: ClipSampling, fps: float, crops: int = 1) -> None:
        self.starts = starts
        self.length = sampling.frames
        self.size = sampling.size
        self.side = max(sampling.short_side, sampling.size)
        self.resize = sampling.resize  # (H, W) of the displayed frame, or None: short side to `side`
        self.scaler = VideoReformatter()  # one swscale context for the whole file, not one per frame
        self.format = "gbrp"
        self.step = 1.0 / fps
        self.eps = 0.25 / fps  # time-base rounding must not push a clip one frame late
        n = len(starts)
        self.crops = crops
        self.out = np.empty((n, crops, self.length, self.size, self.size, 3), dtype=np.uint8)
        self.fill = np.zeros(n, dtype=np.int64)
        self.first = np.zeros(n, dtype=np.float64)
        self.last = np.zeros(n, dtype=np.float64)
        self.lo = 0  # first unfinished clip
        self.next = 0  # next clip to open
        self.seen = 0
        self.last_time = 0.0

    def idle(self) -> bool:
        """No opened clip is waiting for frames."""
        return self.lo == self.next

    def push(self, t: float, frame: av.VideoFrame) -> None:
        self.seen += 1
        self.last_time = t
        while self.next < len(self.starts) and t >= self.starts[self.next] - self.eps:
            self.first[self.next] = t
            self.next += 1
        if self.lo == self.next:
            return  # no clip needs this frame: it is never converted
        image = self._convert(frame)
        for i in range(self.lo, self.next):
            self.out[i, :, self.fill[i]] = image
            self.fill[i] += 1
            self.last[i] = t
        while self.lo < self.next and self.fill[self.lo] == self.length:
            self.lo += 1

    def _convert(self, frame: av.VideoFrame) -> np.ndarray:
        """``(K, S, S, 3)`` uint8: short side (or the whole frame, to ``resize``) resized in swscale (area
        averaging: anti-aliased downscale, and faster than its bilinear here), the ``K`` crops sliced, display
        rotation applied.

        swscale writes planar RGB (``gbrp``), which PyAV interleaves as RGB: the same pixels as ``rgb24``
        output, in about 60% of the time (swscale's packed-RGB writer is its slow general path)."""
        turns = quarter_turns(frame.rotation)
        nw, nh = resized_size(frame.width, frame.height, turns, self.side, self.resize)
        try:
            rgb = self.scaler.reformat(frame, width=nw, height=nh, format=self.format, interpolation="AREA",
                                       threads=1).to_ndarray()
        except ValueError:  # a PyAV that cannot return planar RGB as an array
            self.format = "rgb24"
            return self._convert(frame)
        crops = [rgb[top:top + self.size, left:left + self.size]
                 for top, left in crop_offsets(nw, nh, self.size, self.crops, turns)]
        if turns:
            crops = [np.rot90(c, turns) for c in crops]
        return crops[0][None] if len(crops) == 1 else np.stack(crops)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """``(n, K, T, S, S, 3)`` clips that got at least one frame (short ones repeat their last frame) and
        ``(n,)`` centre times in seconds."""
        n = self.next
        for i in range(self.lo, n):
            got = int(self.fill[i])
            self.out[i, :, got:] = self.out[i, :, got - 1:got]
        times = (self.first[:n] + self.last[:n] + self.step) / 2.0
        return self.out[:n], times
