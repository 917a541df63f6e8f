"""Wiring: the pieces of extract/ and fuse/ put together into the commands of the CLI."""
