"""What a media file holds, found without a full decode: container, codecs, duration, frame rate,
resolution, size, audio, and the status extraction would give it as far as opening the file and decoding
one video frame tell (``cavnet probe``). Damage that only a full decode reveals (``short_decode``, a file
truncated after its first frame) shows up in extraction only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cavnet.extract.manifest import ManifestRow
from cavnet.extract.media.sandbox import open_media, refused_message
from cavnet.extract.status import DECODE_ERROR, EMPTY_FILE, MISSING_FILE, NO_AUDIO, NO_VIDEO, OK

MAX_PACKETS = 64  # video packets read while looking for the first decodable frame


@dataclass
class ProbeRecord:
    """What probing found in one file; numbers are 0 and strings empty where unknown."""

    video_id: str
    split: str
    label: int
    path: str
    status: str
    error: str = ""
    bytes: int = 0
    container: str = ""
    video_codec: str = ""
    width: int = 0
    height: int = 0
    fps: float = 0.0
    duration: float = 0.0
    frames: int = 0
    audio_codec: str = ""
    sample_rate: int = 0
    channels: int = 0


def _streams(container, record: ProbeRecord):
    """Fill the container, video and audio fields; returns the video stream (None: there is none)."""
    from av.stream import Disposition

    record.container = container.format.name
    video = next((s for s in container.streams.video if not s.disposition & Disposition.attached_pic), None)
    audio = container.streams.audio[0] if container.streams.audio else None
    if container.duration:
        record.duration = container.duration / 1_000_000
    if video is not None:
        rate = video.average_rate or video.guessed_rate
        record.video_codec, record.width, record.height = video.codec_context.name, video.width, video.height
        record.fps, record.frames = float(rate) if rate else 0.0, int(video.frames or 0)
        if video.duration and video.time_base:
            record.duration = float(video.duration * video.time_base)
    if audio is not None:
        record.audio_codec, record.sample_rate = audio.codec_context.name, int(audio.rate or 0)
        record.channels = int(audio.codec_context.channels or 0)
    return video


def _first_frame(container, stream) -> str:
    """'' when a frame of ``stream`` decodes from its first packets, else why not."""
    from cavnet.errors import error_message

    last = "no video frame decoded"
    try:
        for i, packet in enumerate(container.demux(stream)):
            if i >= MAX_PACKETS:
                break
            try:
                if packet.decode():
                    return ""
            except Exception as exc:  # a damaged packet: try the next one
                last = error_message(exc)
        for _ in stream.codec_context.decode(None):  # frame threading may hold the first frame back
            return ""
    except Exception as exc:  # the demuxer failed
        last = error_message(exc)
    return last


def probe_media(row: ManifestRow, armed: dict[str, str] | None = None) -> ProbeRecord:
    """Probe one file; never raises for bad media (the same status rules as extract's decode).
    ``armed``: the tests' faults, as set in the process that handed the row over (None: this one's)."""

    from cavnet.extract import faults
    from cavnet.errors import error_message

    record = ProbeRecord(row.video_id, row.split, row.label, row.path, OK)
    faults.before_open(row.path, armed)
    try:
        record.bytes = os.path.getsize(row.path)
    except OSError as exc:
        record.status, record.error = MISSING_FILE, error_message(exc)
        return record
    if record.bytes == 0:
        record.status, record.error = EMPTY_FILE, "file is 0 bytes"
        return record
    try:
        with open_media(row.path) as container:
            video = _streams(container, record)
            if video is None:
                record.status, record.error = NO_VIDEO, "no video stream"
            elif (why := _first_frame(container, video)):
                record.status, record.error = DECODE_ERROR, why
            elif not record.audio_codec:
                record.status = NO_AUDIO
    except Exception as exc:  # av raises many types on open: all are bad media
        record.status, record.error = DECODE_ERROR, refused_message(error_message(exc))
    return record
