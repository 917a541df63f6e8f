"""AV-Synth: synthetic audio-visual corpora in the Kinetics-400 layout (see ``corpus.py``).

``patterns`` what the pictures and sounds are, ``tasks`` the class table and its accuracy caps, ``plan`` the
per-video plan, ``render`` the pictures and sounds of one video, ``captions`` the noisy texts, ``corpus``
the files on disk, ``avwrite`` one file written with PyAV.
"""

from .corpus import SynthSummary, synth
from .patterns import SOUND_PATTERNS, VISUAL_PATTERNS, SoundPattern, VisualPattern
from .plan import VideoSpec
from .render import render_audio, render_frames
from .tasks import MAX_CLASSES, SynthClass, class_table, modality_cap

__all__ = ["MAX_CLASSES", "SOUND_PATTERNS", "VISUAL_PATTERNS", "SoundPattern", "SynthClass", "SynthSummary",
           "VideoSpec", "VisualPattern", "class_table", "modality_cap", "render_audio", "render_frames", "synth"]
