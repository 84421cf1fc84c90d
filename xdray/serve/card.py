"""The model card of an exported student: README.md with Hugging Face-style YAML metadata.

`xdray export` writes it from the run's records (`CardFacts`): teacher, training data and
languages, per-language F1 of the served form on dev (and test where the data has one), size and
compression, latency of each form, the command that made it, intended use and limits, and what
`score` means. The metadata carries the language list, a license field and a model-index with the
metrics, so the folder can be pushed to a model hub as it is. `read_card` reads it back
(`xdray.load(path).card`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xdray.core.errors import XdrayError
from xdray.core.records import Form

CARD_FILE = "README.md"
SCORE_MEANING = (
    "Each entity's `score` is the mean, over its words, of the probability the student gives the "
    "tag it chose for that word (softmax over the labels at the word's first piece). It is a "
    "confidence, not a calibrated probability that the entity is right; filter on it (e.g. keep "
    "score >= 0.8) after checking the trade-off on your own dev data.")


@dataclass(frozen=True)
class ModelCard:
    metadata: dict[str, Any]
    text: str


@dataclass
class CardFacts:
    """What the card states, gathered from the run directory by `xdray export`."""

    name: str  # <experiment>-<trial>
    trial: str
    teacher: str  # how the teacher was made, in words (teacher.stage.how_trained)
    teacher_model: str | None  # hub id or path of the starting model, where there was one
    labels: list[str]
    languages: list[str]
    data: str  # the labelled data, in words
    sentences: dict[str, int]  # per split
    served: str  # the runtime `xdray.load` and `xdray predict` use for this folder
    f1: dict[str, dict]  # split -> seqeval report of the served form
    teacher_f1: dict[str, dict]  # split -> the teacher's report
    params: int
    compression: dict[str, float]  # "teacher" (and "mBERT-base" where measured) -> x
    forms: list[dict] = field(default_factory=list)  # frontier rows of this trial: one per form
    batch_sizes: list[int] = field(default_factory=list)
    device: str = "cpu"
    command: str = ""
    experiment: str = ""
    seed: int = 0


def _metadata(f: CardFacts) -> dict[str, Any]:
    results = [{"task": {"type": "token-classification", "name": "Named entity recognition"},
                "dataset": {"name": f.data, "type": "custom", "split": "validation" if split == "dev" else split},
                "metrics": [{"type": "seqeval", "name": f"entity F1, mean over languages ({split})",
                             "value": round(report["f1_mean"], 4)},
                            {"type": "seqeval", "name": f"entity F1, micro ({split})", "value": round(report["f1_micro"], 4)}]}
               for split, report in f.f1.items()]
    meta = {"language": f.languages, "license": "other", "library_name": "xdray",
            "pipeline_tag": "token-classification", "tags": ["token-classification", "ner", "distillation", "bilstm"],
            "model-index": [{"name": f.name, "results": results}]}
    if f.teacher_model and _is_hub_id(f.teacher_model):  # a hub's base_model is a model id, not a path
        meta["base_model"] = f.teacher_model
    return meta


def _is_hub_id(ref: str) -> bool:
    """`owner/name` or `name`, not a local path or a `package:` reference."""
    return not ref.startswith((".", "/", "~", "package:")) and ref.count("/") <= 1 and not Path(ref).exists()


def _f1_table(f: CardFacts) -> list[str]:
    splits = list(f.f1)
    header = "| language | " + " | ".join(f"{s} F1 | teacher {s} F1 | retention" for s in splits) + " |"
    lines = [header, "|" + "---|" * (1 + 3 * len(splits))]
    for lang in f.f1[splits[0]]["per_language"]:
        cells = []
        for s in splits:
            mine = f.f1[s]["per_language"].get(lang)
            theirs = f.teacher_f1.get(s, {}).get("per_language", {}).get(lang)
            cells += [_num(mine), _num(theirs), _num(mine / theirs if mine is not None and theirs else None, 3)]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    cells = []
    for s in splits:
        mine, theirs = f.f1[s]["f1_mean"], f.teacher_f1.get(s, {}).get("f1_mean")
        cells += [f"**{mine:.4f}**", _num(theirs), _num(mine / theirs if theirs else None, 3)]
    lines.append("| mean | " + " | ".join(cells) + " |")
    return lines


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _forms_table(f: CardFacts) -> list[str]:
    if not f.forms:
        return ["Latency was not measured for this student."]
    lat = [f"latency_ms_b{b}" for b in f.batch_sizes]
    lines = ["| form | size (MB) | dev F1 | " + " | ".join(f"ms at batch {b}" for b in f.batch_sizes) + " |",
             "|" + "---|" * (3 + len(lat))]
    for row in f.forms:
        form = Form.split(row["trial_id"])[1].words
        cells = [form, str(row["size_mb"]), str(row["f1_mean"])] + [str(row.get(k) or "-") for k in lat]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + ["", f"Median latency after warm-up on {f.device}, over the dev set's sentences."]


def render_card(f: CardFacts) -> str:
    meta = yaml.safe_dump(_metadata(f), sort_keys=False, allow_unicode=True)
    comp = "".join(f"; compression {x:g}x against {who}" for who, x in f.compression.items())
    body = [
        f"# {f.name}", "",
        f"A BiLSTM named-entity tagger ({f.params:,} parameters{comp}) distilled with xdray, after "
        f"XtremeDistil (Mukherjee & Awadallah, ACL 2020). The teacher: {f.teacher}.", "",
        f"Labels: {', '.join(f.labels)} (IOB2). Languages: {', '.join(f.languages)}.", "",
        "## Use", "",
        "```python", "import xdray", "", "tagger = xdray.load(\"PATH/TO/THIS/FOLDER\")",
        "tagger(\"Some text to tag.\")  # -> [{\"text\", \"label\", \"start\", \"end\", \"score\"}, ...]",
        "for entities in tagger.pipe(lines, batch_size=64): ...",
        "tagger.tag_words([\"pre\", \"split\", \"words\"])  # one tag per word", "```", "",
        f"From the shell: `xdray predict --model DIR FILE` (JSON lines), or `xdray serve --model DIR` "
        f"(HTTP, Ray Serve). Both run {f.served}, as `xdray.load` does; `student.onnx` and "
        "`student.int8.onnx` also run in ONNX Runtime alone (inputs: teacher token ids and lengths).", "",
        SCORE_MEANING, "",
        "## Training data", "",
        f"{f.data}: " + ", ".join(f"{s} {n:,} sentences" for s, n in f.sentences.items()) + ".", "",
        f"## Results ({f.served}, the form that is served)", "",
        *_f1_table(f), "",
        "Entity F1 by seqeval over every word (first piece of each word), per language; retention is "
        "the student's F1 over the teacher's. Dev was used to choose this student; test, where "
        "given, was not.", "",
        "## Size and speed of each form", "",
        *_forms_table(f), "",
        "## Intended use and limits", "",
        "Tagging text like the training data, in its languages and label set. Accuracy drops on text "
        "unlike it (other domains, other scripts, words the student's vocabulary lacks, which it "
        "reads as unknown); measure on a labelled sample of your own text before relying on it. "
        "It inherits the teacher's and the data's biases. Set `license` in the metadata above to the "
        "terms of the teacher and the data it was trained on.", "",
        "## How it was made", "",
        f"`{f.command}` on the run of experiment `{f.experiment}` (seed {f.seed}); the run's resolved "
        "configuration is `experiment.yaml` in this folder.", ""]
    return f"---\n{meta}---\n\n" + "\n".join(body)


def write_card(path: Path, facts: CardFacts) -> None:
    path.write_text(render_card(facts), encoding="utf-8")


def read_card(path: Path) -> ModelCard:
    """The YAML metadata block and the Markdown text of a model card."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        return ModelCard({}, text)
    head, body = text[4:].split("\n---\n", 1)
    try:
        meta = yaml.safe_load(head) or {}
    except yaml.YAMLError as err:
        raise XdrayError(f"{path}: the card's metadata is not valid YAML: {err}") from None
    return ModelCard(meta if isinstance(meta, dict) else {}, body.lstrip("\n"))
