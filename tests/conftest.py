import os
import sys
from pathlib import Path

# Test helpers (store_factory, media) are imported by name from this folder.
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test that takes tens of seconds on a 2-core CPU "
                                       "(heavy torchvision video models); deselect with -m 'not slow'")
