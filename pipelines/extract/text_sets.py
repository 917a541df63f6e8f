"""``cavnet text``, wired: list a store's label-text sets, or add sets to it without re-extracting a video.

A set is made from its source (a built-in name, one template, a file of templates, or a CSV of per-class
descriptions), embedded by the store's own sentence encoder, and written into the store under its lock
(``extract.store.text_sets.add_text_sets``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

from cavnet.errors import CavnetError
from cavnet.extract.store.reader import FeatureStore
from cavnet.extract.store.text_sets import TextSet, add_text_sets, check_name
from cavnet.extract.text_tables import (BUILTIN_TEXT_SETS, embed_class_texts, read_descriptions, read_templates,
                                        template_texts)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def set_source(name: str, classes: list[str], template: str | None = None, templates: Path | None = None,
               descriptions: Path | None = None) -> tuple[str, list[list[str]], dict]:
    """(kind, per-class texts, source record) of the set ``name`` from at most one source option; a
    built-in name (``BUILTIN_TEXT_SETS``) needs none."""
    given = [o for o, v in (("--template", template), ("--templates", templates), ("--descriptions", descriptions))
             if v is not None]
    if len(given) > 1:
        raise CavnetError(f"give one of {', '.join(given)} for a text set")
    if template is not None:
        return "template", template_texts(classes, [template]), {"templates": [template]}
    if templates is not None:
        lines = read_templates(templates)
        return "ensemble", template_texts(classes, lines), {"templates": lines, "file": str(Path(templates).resolve()),
                                                              "sha256": _sha256(templates)}
    if descriptions is not None:
        return "descriptions", read_descriptions(descriptions, classes), {
            "file": str(Path(descriptions).resolve()), "sha256": _sha256(descriptions)}
    if name not in BUILTIN_TEXT_SETS:
        raise CavnetError(f"text set {name!r} is not built in ({', '.join(BUILTIN_TEXT_SETS)}): give its "
                          "--template, --templates FILE or --descriptions CSV")
    kind, lines = BUILTIN_TEXT_SETS[name]
    return kind, template_texts(classes, lines), {"templates": list(lines)}


def add_sets(store: Path, names: Sequence[str], template: str | None = None, templates: Path | None = None,
             descriptions: Path | None = None, replace: bool = False, device: str = "cpu",
             echo: Callable[[str], None] = print) -> list[TextSet]:
    """Embed the sets ``names`` with the store's sentence encoder and write them into ``store``. A source
    option makes one set; several names must all be built in."""
    from cavnet.extract.text import TextEncoder, TextModelError

    if not names:
        raise CavnetError("name the text set to add: --add-set NAME")
    if len(names) > 1 and (template or templates or descriptions):
        raise CavnetError("a --template, --templates or --descriptions source makes one set: give one --add-set")
    for name in names:
        check_name(name)
    with FeatureStore(store) as s:
        classes, model, fingerprint, have = list(s.class_names), s.config.text_model, s.text_model, s.text_sets()
    taken = [n for n in names if n in have]
    if taken and not replace:
        raise CavnetError(f"{store}: it has the text set {taken[0]!r} already (--replace to write it anew)")
    sources = [set_source(n, classes, template, templates, descriptions) for n in names]
    try:
        encoder = TextEncoder(model, device="cpu" if device == "auto" else device)
    except TextModelError as exc:
        raise CavnetError(f"{store}: its sentence encoder cannot be loaded: {exc}") from None
    if encoder.fingerprint() != fingerprint:
        raise CavnetError(f"{store} was embedded by {fingerprint}; {model!r} loads {encoder.fingerprint()} now: "
                          "sets from another encoder would live in another space")
    sets = [TextSet(n, kind, texts, embed_class_texts(encoder, texts), source, fingerprint)
            for n, (kind, texts, source) in zip(names, sources)]
    add_text_sets(store, sets, replace)
    for t in sets:
        echo(f"{store}: text set {t.name!r} ({t.kind}, {sum(map(len, t.texts))} texts for {len(classes)} classes), "
             f"e.g. {t.texts[0][0]!r}")
    return sets


def list_sets(store: Path) -> list[str]:
    """One line per text set of ``store``: its name, kind, and its first class's first text."""
    with FeatureStore(store) as s:
        lines = []
        for name in s.text_sets():
            t = s.text_set(name)
            lines.append(f"{name}\t{t.kind}\t{len(t.texts[0]) if t.texts else 0} per class\t"
                         f"{t.texts[0][0] if t.texts else ''!r}")
        return lines
