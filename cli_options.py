"""Click options derived from config dataclass fields: each default is declared once, on the field.

``option(Config, "field", help=...)`` makes ``--field-name`` with the field's default and type (a bool
field becomes ``--x/--no-x``); ``choices=`` turns it into a choice. The command then builds its config
with ``build(Config, params)``, which takes the fields it knows from the command's parameters and lets the
config validate them (``CavnetError``: one line, exit code 2). Imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Callable, Sequence

import click

_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING}


def _default(cls: type, name: str) -> Any:
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _base_type(hint: Any) -> Any:
    """``int | None`` -> int; anything else as it is."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def option(cls: type, name: str, *decls: str, help: str | None = None, choices: Sequence[str] | None = None,
           flag: bool = False, **extra: Any) -> Callable:
    """A click option for field ``name`` of dataclass ``cls``: its default and type come from the field.
    ``flag``: a bool field that is off by default becomes a plain ``--x`` switch."""
    default = _default(cls, name)
    hint = _base_type(typing.get_type_hints(cls)[name])
    long = "--" + name.replace("_", "-")
    kw: dict[str, Any] = {"default": default, "show_default": default is not None and not flag, "help": help}
    if hint is bool:
        decls = decls or ((long,) if flag else (f"{long}/--no-{long[2:]}",))
        kw["is_flag"] = True
    elif choices is not None:
        kw["type"] = click.Choice(list(choices))
    else:
        kw["type"] = _TYPES.get(hint, click.STRING)
    kw.update(extra)
    return click.option(*(decls or (long,)), name, **kw)


def options(cls: type, names: dict[str, str | None], **per_field: dict[str, Any]) -> Callable:
    """Options for several fields of ``cls`` (``{field: help}``), in order; ``per_field`` passes extra
    keywords for one field (``choices``, ``flag``, declarations as ``decls``)."""
    def wrap(f: Callable) -> Callable:
        for name, text in reversed(list(names.items())):
            extra = dict(per_field.get(name, {}))
            decls = extra.pop("decls", ())
            f = option(cls, name, *decls, help=text, **extra)(f)
        return f
    return wrap


def build(cls: type, params: dict[str, Any], **fixed: Any) -> Any:
    """``cls`` from the command's parameters that name its fields (and ``fixed`` values)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in params.items() if k in names}, **fixed)
