"""Media opened for reading stays inside the one local file it names, and within a budget.

FFmpeg will open whatever a path or a container points it at: a path beginning ``http:`` is a URL to it, a
concat list or a playlist names further files and addresses, an image-sequence pattern expands. Every
reader of cavnet's (decode, probe, prepare, the torchcodec header) opens media through :func:`open_media`:

- the path is given to FFmpeg as ``file:`` + its absolute path, and only the ``file`` protocol is allowed,
  so a local file whose name looks like a URL is read as the file, and nothing reaches the network;
- only the demuxers of single-file containers are allowed (:data:`DEMUXERS`): no ``concat``, ``hls``,
  ``dash``, ``image2`` or other formats that open more than the file itself;
- :class:`Budget` bounds the packets read and the seconds spent on one file; past it, the file ends with
  the status its decoded part earns, and a message saying why decoding stopped.
"""

from __future__ import annotations

import os
import time

import av

# FFmpeg's names of the demuxers that read one self-contained file (a name matches any of a demuxer's
# aliases: "mov" is mov,mp4,m4a,3gp,3g2,mj2 and "matroska" is matroska,webm)
DEMUXERS = ("mov", "matroska", "avi", "flv", "mpegts", "mpeg", "ogg", "asf", "nut", "mxf", "dv", "rm", "ivf",
            "wav", "mp3", "aac", "flac", "m4v", "h264", "hevc", "mjpeg", "yuv4mpegpipe")
OPTIONS = {"protocol_whitelist": "file", "format_whitelist": ",".join(DEMUXERS)}


def local_url(path: str | os.PathLike) -> str:
    """``file:`` + the absolute path: what FFmpeg (PyAV's or torchcodec's) reads as this file and nothing else
    (a ``file:/...`` URL, e.g. the name of a container opened here, is returned as it is)."""
    path = os.fspath(path)
    return path if path.startswith("file:/") else "file:" + os.path.abspath(path)


def open_media(path: str | os.PathLike) -> av.container.InputContainer:
    """The container of the local file ``path``, read with the ``file`` protocol and single-file demuxers
    only; raises what ``av.open`` raises (a refused format reads as ``Invalid argument``)."""
    return av.open(local_url(path), metadata_errors="ignore", options=dict(OPTIONS))


def refused_message(message: str) -> str:
    """A clearer message for what the sandbox refused (FFmpeg says only "Invalid argument")."""
    if "Invalid argument" in message:
        return (message + " (not a single-file media container cavnet reads: playlists, concat lists, image "
                "sequences and network sources are refused)")
    return message


class BudgetExceeded(Exception):
    """Raised by :meth:`Budget.spend` once a file has had its packets or seconds."""


class Budget:
    """Packets and wall seconds one file may take: ``CAVNET_DECODE_PACKETS`` (default 5,000,000, some
    hours of video) and ``CAVNET_DECODE_SECONDS`` (default 900; checked every 256 packets)."""

    def __init__(self, packets: int | None = None, seconds: float | None = None) -> None:
        self.packets = packets if packets is not None else int(os.environ.get("CAVNET_DECODE_PACKETS", "5000000"))
        self.seconds = seconds if seconds is not None else float(os.environ.get("CAVNET_DECODE_SECONDS", "900"))
        self.used, self.t0 = 0, time.monotonic()

    def spend(self) -> None:
        """Count one packet; raise :class:`BudgetExceeded` when the file is over its budget."""
        self.used += 1
        if self.used > self.packets:
            raise BudgetExceeded(f"stopped after {self.packets} packets (the per-file decode budget, "
                                 "CAVNET_DECODE_PACKETS)")
        if self.used % 256 == 0 and time.monotonic() - self.t0 > self.seconds:
            raise BudgetExceeded(f"stopped after {self.seconds:g} s (the per-file decode budget, "
                                 "CAVNET_DECODE_SECONDS)")
