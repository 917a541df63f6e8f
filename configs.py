"""One config style for every frozen dataclass config of cavnet (store, fusion, training, fine-tuning).

``Config`` gives a frozen dataclass ``to_dict`` (plain JSON types, nested configs included) and
``from_dict``, which rebuilds nested configs and tuples and refuses keys the class does not have with a
``CavnetError`` naming them: a config written by another version is never half-read in silence. Missing
keys take the field's default, so a config written before a field was added still loads.

Validation helpers raise ``CavnetError`` too, so a bad value from the command line or from a file ends as
one line and exit code 2.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any, TypeVar

from cavnet.errors import CavnetError

C = TypeVar("C", bound="Config")

# The one rule for numeric options: every count has a ceiling (MAX_INT unless a field says less), every
# real number is finite, seeds are what numpy and torch both accept, devices are named one way.
MAX_INT = 2**31 - 1
MAX_SEED = 2**32 - 1
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
MAX_WORKERS = 1024  # processes of one kind on one machine (Dask workers, decode processes, parallel runs)
MAX_BATCH = 1 << 20  # videos per batch
MAX_EPOCHS = 100_000


class Config:
    """Mixin for ``@dataclass(frozen=True)`` configs: ``to_dict`` / ``from_dict`` / ``to_json`` / ``from_json``."""

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON types (tuples become lists, nested configs dicts)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str = "") -> C:
        """Inverse of ``to_dict``; unknown keys are refused naming them (``source`` says where they came from)."""
        if not isinstance(data, dict):
            raise CavnetError(f"{source or cls.__name__}: expected a mapping of {cls.__name__} fields, "
                              f"got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise CavnetError(f"{source or cls.__name__}: unknown field(s) {', '.join(unknown)} of "
                              f"{cls.__name__} (written by another cavnet version?)")
        hints = typing.get_type_hints(cls)
        values = {name: _coerce(hints[name], value, f"{source or cls.__name__}.{name}")
                  for name, value in data.items()}
        return cls(**values)

    @classmethod
    def from_json(cls: type[C], text: str, source: str = "") -> C:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise CavnetError(f"{source or cls.__name__}: not a JSON config ({exc})") from None
        return cls.from_dict(data, source)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Nested configs from dicts, tuples from lists; everything else as it is (the class validates it)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or len(options) != 1:
            return value
        hint = options[0]
    if isinstance(hint, type) and issubclass(hint, Config) and isinstance(value, dict):
        return hint.from_dict(value, where)
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        return tuple(value)
    return value


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise CavnetError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    """An integer (not a bool) in ``[minimum, maximum]`` (``maximum`` None: ``MAX_INT``)."""
    top = MAX_INT if maximum is None else maximum
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= top:
        raise CavnetError(f"{name} must be an integer >= {minimum} and <= {top}, not {value!r}")


def check_number(name: str, value: Any, minimum: float, positive: bool = False, below: float | None = None,
                 maximum: float | None = None) -> None:
    """A finite number (never inf or NaN) >= ``minimum`` (> 0 with ``positive``), < ``below``, <= ``maximum``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and value >= minimum and (not positive or value > 0) and (below is None or value < below)
    ok = ok and (maximum is None or value <= maximum)
    if not ok:
        bounds = f"> {minimum}" if positive else f">= {minimum}"
        bounds += f" and < {below}" if below is not None else ""
        bounds += f" and <= {maximum}" if maximum is not None else ""
        raise CavnetError(f"{name} must be a number {bounds}, finite, not {value!r}")


def check_seed(name: str, value: Any) -> None:
    """A seed numpy and torch both take: an integer from 0 to 2**32 - 1."""
    check_int(name, value, 0, MAX_SEED)


def check_device(name: str, value: Any, allowed: tuple[str, ...] = DEVICES) -> None:
    """A device name of ``allowed`` (``cuda:N``: any CUDA index): the syntax only, so a config read on another
    machine still loads; ``extract.device.resolve_device`` checks that it exists here."""
    text = value if isinstance(value, str) else ""
    kind, _, index = text.partition(":")
    ok = text in allowed and text != "cuda:N" or (kind == "cuda" and "cuda:N" in allowed and index.isdigit()
                                                  and index.isascii() and int(index) < 1024)
    if not ok:
        names = ", ".join(allowed)
        shown = value if isinstance(value, str) else repr(value)
        raise CavnetError(f"{name} {shown}: not a device cavnet runs on ({names})")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise CavnetError(f"{name} must be true or false, not {value!r}")
