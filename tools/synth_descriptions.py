"""Write per-class descriptions of an AV-Synth corpus as the CSV ``cavnet text --descriptions`` reads.

    python tools/synth_descriptions.py CORPUS OUT.csv

Each class gets three descriptions, one per synonym of its patterns (``extract/synth/patterns.py``), in
words other than its name: "a crimson block on screen while a deep drone sounds". Used for the text-set
rows of docs/results.md.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from cavnet.extract.synth import SOUND_PATTERNS, VISUAL_PATTERNS

VISUAL = {p.key: p for p in VISUAL_PATTERNS}
SOUND = {p.key: p for p in SOUND_PATTERNS}


def descriptions(row: dict[str, str]) -> list[str]:
    """Three descriptions of one row of the corpus's classes.csv (easy: visual, sound; hard: kind, visuals)."""
    if "visuals" not in row:  # easy: a pattern and a sound, all the time
        v, s = VISUAL[row["visual"]].synonyms, SOUND[row["sound"]].synonyms
        return [f"{v[k]} on screen while {s[k]} sounds" for k in range(3)]
    shown = [VISUAL[key].synonyms for key in row["visuals"].split()]
    s = SOUND[row["sound"]].synonyms
    if row["kind"] == "sync":
        return [f"{shown[0][k]} appears exactly while {s[k]} plays" for k in range(3)]
    return [f"first {shown[0][k]} then {shown[1][k]}, each while {s[k]} plays" for k in range(3)]


def main(corpus: Path, out: Path) -> None:
    with open(corpus / "classes.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["class", "description"])
        for row in rows:
            w.writerows([row["name"], d] for d in descriptions(row))
    print(f"{out}: {3 * len(rows)} descriptions of {len(rows)} classes")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
