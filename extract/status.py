"""The status every video of a corpus ends with (docs/store.md), and the groups of them, in one place.

Decode, probe, extraction workers, the store's writer, reader and validator, fine-tuning and predict all
import these names; no other module spells a status.
"""

from __future__ import annotations

OK = "ok"  # decoded whole, audio and video
NO_AUDIO = "no_audio"  # decoded whole; the file has no (decodable) audio track
SHORT_DECODE = "short_decode"  # fewer frames or seconds decoded than the container declares (kept, masked)
DECODE_ERROR = "decode_error"  # nothing usable decoded
MISSING_FILE = "missing_file"  # the manifest names a file that is not there
EMPTY_FILE = "empty_file"  # 0 bytes
NO_VIDEO = "no_video"  # a container without a video stream
WORKER_CRASH = "worker_crash"  # the process decoding the file died on it (isolated, recorded)

DECODE_STATUSES = (OK, NO_AUDIO, SHORT_DECODE, DECODE_ERROR, MISSING_FILE, EMPTY_FILE, NO_VIDEO)
"""What decoding a file in-process can end with."""
KNOWN = DECODE_STATUSES + (WORKER_CRASH,)
"""Every status a store row may hold."""
USABLE = (OK, NO_AUDIO, SHORT_DECODE)
"""Rows with features: trained on, scored, predicted; the others have none."""
CLEAN = (OK, NO_AUDIO)
"""Statuses that come without an error message; every other row says what went wrong."""

# ``cavnet prepare``'s table: a file is ``prepared`` (re-encoded), or keeps its source's decode status
# (the original is referenced), or failed to encode.
PREPARED = "prepared"
ENCODE_ERROR = "encode_error"
PREPARE_STATUSES = (PREPARED, ENCODE_ERROR) + DECODE_STATUSES
