"""The one exception type the CLI turns into a one-line message and exit code 2."""


class CavnetError(ValueError):
    """Bad input from the user: a missing path, a malformed file, a store that does not match."""
