"""Foundation encoders from Hugging Face folders: CLIP's image tower, VideoMAE, AST and CLAP's audio tower
as registered backbones, and CLIP's and CLAP's text towers as text models.

- ``family.py``: what a registered name stands for (family, size, Hub release) and how a folder's size is
  named, importing no transformers (the registry loads these files at start-up).
- ``clip.py``, ``videomae.py``, ``ast.py``, ``clap.py``: one family each, its cavnet module (no I/O) and its
  registered sizes; ``text.py``: the two text towers.
- ``folder.py``: the I/O: a folder's ``config.json``, ``model.safetensors`` (loaded with transformers' own
  ``from_pretrained``, missing keys refused), processor and tokenizer, the Hugging Face cache, hashes.
- ``fields.py``: what a store config records for these encoders (preprocessing, widths, architecture).
"""
