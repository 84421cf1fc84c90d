"""Writes the made-up English NER sample in the layout of the original CoNLL-2003 release.

Four space-separated columns (`word POS chunk NER`), `-DOCSTART- -X- -X- O` between documents,
and IOB1 tags in the chunk and NER columns: a phrase begins with I- unless it directly follows
one of the same type, where B- marks the boundary. Entity types PER, ORG, LOC and MISC. Every
name is invented for this sample.

    python tests/data/own_data/make_sample.py              # eng.train, eng.testa, eng.testb here
    python tests/data/own_data/make_sample.py --out DIR --sentences 5000   # a larger train file
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

NAMES = {
    "PER": ["Lena Marsh", "Tomas Okafor", "Priya Raman", "Jonas Berg", "Ana Ruiz", "Kenji Sato", "Mara Vell",
            "Ilse Dorn", "Felix Amadi", "Sofia Lind", "Rui Tavares", "Noor Haddad"],
    "ORG": ["Northwind Bank", "Halden Motors", "Riverside United", "Aster Telecom", "Blue Harbor Airlines",
            "Kelmar Football Club", "Varo Institute", "Greyfield Mining"],
    "LOC": ["Porto Alba", "Kelmar", "New Varo", "Tamsin Bay", "Oster", "Lake Ruen", "Dalvik", "Serra Nova"],
    "MISC": ["Kelmari", "Varoan", "Osterian", "Alban Cup", "Harbor Open", "Dalvik Prize"],
}
# Templates: words with their POS and chunk types; {TYPE} slots are entity names (NNP, NP).
TEMPLATES = [
    "{PER}/_ visited/VBD/VP {LOC}/_ on/IN/PP Monday/NNP/NP ./././O",
    "{ORG}/_ shares/NNS/NP rose/VBD/VP 3/CD/NP percent/NN/NP in/IN/PP {LOC}/_ ./././O",
    "The/DT/NP {MISC}/_ team/NN/NP beat/VBD/VP {ORG}/_ 2-1/CD/NP ./././O",
    "{PER}/_ ,/,/O a/DT/NP spokesman/NN/NP for/IN/PP {ORG}/_ ,/,/O said/VBD/VP on/IN/PP Tuesday/NNP/NP ./././O",
    "{LOC}/_ {LOC}/_ talks/NNS/NP resume/VBP/VP ./././O",
    "{PER}/_ won/VBD/VP the/DT/NP {MISC}/_ in/IN/PP {LOC}/_ ./././O",
    "Police/NNS/NP in/IN/PP {LOC}/_ arrested/VBD/VP two/CD/NP {MISC}/_ men/NNS/NP ./././O",
    "{ORG}/_ signed/VBD/VP {PER}/_ for/IN/PP two/CD/NP seasons/NNS/NP ./././O",
    "Prices/NNS/NP fell/VBD/VP sharply/RB/ADVP on/IN/PP Friday/NNP/NP ./././O",
    "{PER}/_ and/CC/O {PER}/_ met/VBD/VP in/IN/PP {LOC}/_ ./././O",
    "The/DT/NP {MISC}/_ government/NN/NP denied/VBD/VP the/DT/NP report/NN/NP ./././O",
    "{ORG}/_ said/VBD/VP profits/NNS/NP doubled/VBD/VP ./././O",
]


def sentence(rng: random.Random) -> list[tuple[str, str, str, str]]:
    rows = []  # (word, pos, chunk type, entity type, phrase id): a template item is one phrase
    phrase = 0
    for item in rng.choice(TEMPLATES).split():
        word, pos, *rest = item.split("/") if not item.startswith("././") else [".", ".", "O"]
        phrase += 1
        if word.startswith("{"):
            kind = word.strip("{}")
            for name in rng.choice(NAMES[kind]).split():
                rows.append((name, "NNP", "NP", kind, phrase))
        else:
            chunk = rest[0] if rest else "O"
            rows.append((word, pos, chunk, "", phrase if chunk != "O" else -phrase))
    return with_iob1(rows)


def with_iob1(rows):
    """Tag the chunk and NER columns in IOB1: I- inside a phrase, B- only where a phrase directly
    follows another of the same type."""
    out = []
    for i, (word, pos, chunk, ner, phrase) in enumerate(rows):
        prev = rows[i - 1] if i else None
        def tag(kind, column):
            if not kind or kind == "O":
                return "O"
            same_before = prev is not None and prev[column] == kind and prev[4] != phrase
            return ("B-" if same_before else "I-") + kind
        out.append((word, pos, tag(chunk, 2), tag(ner, 3)))
    return out


def write(path: Path, count: int, rng: random.Random, per_document: int = 8) -> None:
    lines = []
    for i in range(count):
        if i % per_document == 0:
            lines += ["-DOCSTART- -X- -X- O", ""]
        lines += [" ".join(row) for row in sentence(rng)] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--sentences", type=int, default=0, help="write only eng.train with this many sentences")
    parser.add_argument("--seed", type=int, default=2003)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.sentences:
        write(args.out / "eng.train", args.sentences, rng)
        return
    for name, count in (("eng.train", 48), ("eng.testa", 16), ("eng.testb", 16)):
        write(args.out / name, count, rng)


if __name__ == "__main__":
    main()
