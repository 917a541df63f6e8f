"""Media in and out: PyAV decode of clips and audio (with statuses), the log-mel front end, clip timing,
and the PyAV writer the generated corpora and tests use."""
