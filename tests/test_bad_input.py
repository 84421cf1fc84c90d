"""Bad input through the real command line, one case per row of `CASES`.

Every case starts from a copy of a run that already holds a teacher and a transfer set, breaks one
input (a data file, the teacher checkpoint, the transfer set, the experiment or space file), runs
the xdray command a user would run, and checks the contract: exit code 2, one message naming the
file and line or the dotted key, what was found and what was expected, and not one byte of the
run directory changed (nothing half-written, earlier results untouched). `ACCEPTED` lists inputs
that look odd but are valid and must go through.
"""

from __future__ import annotations

import hashlib
import os
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq
import pytest
import yaml
from transformers import (AutoTokenizer, BertConfig, BertForTokenClassification, ViTConfig, ViTModel)

from conftest import labelled_of, tiny_raw
from xdray.cli import main
from xdray.config import dump_config, load_experiment
from xdray.data.schema import WIKIANN_LABELS
from xdray.core.rundir import save_run_config

LANGS = ("en", "de")
NAMES = {"en": ("London", "Paris", "Anna", "Acme"), "de": ("Berlin", "Köln", "Jürgen", "Siemens")}


def sentence(lang: str, i: int) -> str:
    place, city, person, org = NAMES[lang]
    words = [(person, "B-PER"), ("Smith", "I-PER"), ("visited", "O"), ((place, city)[i % 2], "B-LOC"),
             ("for", "O"), (org, "B-ORG"), ("Group", "I-ORG"), (str(i), "O")]
    return "".join(f"{w}\t{t}\n" for w, t in words) + "\n"


def write_corpus(corpus: Path) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for lang in LANGS:
        for split, n in (("train", 40), ("dev", 12)):
            (corpus / f"{split}-{lang}.tsv").write_text("".join(sentence(lang, i) for i in range(n)), encoding="utf-8")


def base_raw(**sections) -> dict:
    """The tiny experiment on corpus/; `sections` override as tiny_raw takes them (dotted with __)."""
    return tiny_raw(**{"data__labelled": {"source": "iob", "path": "corpus", "languages": list(LANGS)},
                       "teacher__finetune": {"epochs": 0}, **sections})


def resolved(path: Path):
    """The experiment as a run saves it in RUN/config.yaml: its label list read from the data."""
    from xdray.pipeline import labelled_data

    return labelled_data(load_experiment(path))[0]


def write_bytes(path: Path, content: str | bytes) -> None:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, ray_local) -> Path:
    """A directory with corpus/, exp.yaml and run/ holding the teacher and transfer set of an
    earlier, successful `xdray transfer`."""
    root = tmp_path_factory.mktemp("earlier")
    write_corpus(root / "corpus")
    (root / "exp.yaml").write_text(yaml.safe_dump(base_raw(), allow_unicode=True))
    assert main(["transfer", str(root / "exp.yaml"), "--out", str(root / "run")]) == 0
    assert (root / "run" / "teacher" / "model.safetensors").is_file()
    return root


def snapshot(run: Path) -> dict[str, str]:
    """Every file under the run directory (hidden ones too) with the sha256 of its bytes."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}


# --- how each case breaks its input --------------------------------------------------------------

def data_file(name: str, content: str | bytes, labels: tuple[str, ...] | None = None) -> Callable[[Path], list[str]]:
    def setup(case: Path) -> list[str]:
        write_bytes(case / "corpus" / name, content)
        if labels:
            (case / "exp.yaml").write_text(yaml.safe_dump(base_raw(data__labels=list(labels)), allow_unicode=True))
        return ["teacher", str(case / "exp.yaml")]
    return setup


def experiment(command: str = "train", **sections) -> Callable[[Path], list[str]]:
    """Rewrite exp.yaml with `sections` merged in (dotted with __, as tiny_raw takes them)."""
    def setup(case: Path) -> list[str]:
        (case / "exp.yaml").write_text(yaml.safe_dump(base_raw(**sections), allow_unicode=True))
        return [command, str(case / "exp.yaml")]
    return setup


def unlabelled_file(name: str, content: str | bytes) -> Callable[[Path], list[str]]:
    """A text file of unlabelled sentences added as a transfer-set source; `xdray train` reads it
    up front, before the teacher stage."""
    def setup(case: Path) -> list[str]:
        write_bytes(case / "corpus" / name, content)
        return experiment(data__unlabelled=[{"source": "labelled"}, {"source": "text", "path": f"corpus/{name}"}])(case)
    return setup


def experiment_text(text: str) -> Callable[[Path], list[str]]:
    def setup(case: Path) -> list[str]:
        (case / "exp.yaml").write_text(text)
        return ["train", str(case / "exp.yaml")]
    return setup


def override(*pairs: str) -> Callable[[Path], list[str]]:
    def setup(case: Path) -> list[str]:
        return ["train", str(case / "exp.yaml"), *[a for p in pairs for a in ("--set", p)]]
    return setup


def space_file(text: str) -> Callable[[Path], list[str]]:
    def setup(case: Path) -> list[str]:
        (case / "space.yaml").write_text(text)
        return ["tune", str(case / "exp.yaml"), "--space", str(case / "space.yaml")]
    return setup


def _tokenizer(case: Path):
    return AutoTokenizer.from_pretrained(case / "run" / "teacher")


def _bert(case: Path, labels, vocab_rows: int | None = None) -> BertForTokenClassification:
    return BertForTokenClassification(BertConfig(
        vocab_size=vocab_rows or len(_tokenizer(case)), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={t: i for i, t in enumerate(labels)}))


def teacher_dir(make: Callable[[Path], object], init: str = "finetuned") -> Callable[[Path], list[str]]:
    """Save the model `make(case)` returns, with the run's tokenizer, as the configured teacher."""
    def setup(case: Path) -> list[str]:
        ckpt = case / "ckpt"
        make(case).save_pretrained(ckpt)
        _tokenizer(case).save_pretrained(ckpt)
        return experiment("teacher", teacher={"init": init, "model": str(ckpt)})(case)
    return setup


def vit(case: Path) -> ViTModel:
    return ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                              image_size=32, patch_size=16))


def transfer_damage(damage: Callable[[Path, dict], None]) -> Callable[[Path], list[str]]:
    def setup(case: Path) -> list[str]:
        (transfer,) = (case / "run" / "transfer").iterdir()
        manifest = json.loads((transfer / "manifest.json").read_text())
        damage(transfer, manifest)
        return ["transfer", str(case / "exp.yaml")]
    return setup


def first_shard(transfer: Path, manifest: dict) -> Path:
    return transfer / manifest["files"][0]["file"]


def edit_manifest(**changes) -> Callable[[Path, dict], None]:
    def damage(transfer: Path, manifest: dict) -> None:
        (transfer / "manifest.json").write_text(json.dumps({**manifest, **changes}))
    return damage


def truncate(transfer: Path, manifest: dict) -> None:
    shard = first_shard(transfer, manifest)
    shard.write_bytes(shard.read_bytes()[:200])


def drop_hidden(transfer: Path, manifest: dict) -> None:
    shard = first_shard(transfer, manifest)
    pq.write_table(pq.read_table(shard).drop_columns(["hidden"]), shard)


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Path], list[str]]
    expect: tuple[str, ...]  # fragments of the message: where, what was found, what was expected


TAGS = "expected one of O, B-PER"
CASES = [
    # data files
    Case("data-three-columns", data_file("train-en.tsv", "Anna\tB-PER\textra\n"),
         ("train-en.tsv:1:", "'extra' in the tag column (token<TAB>?<TAB>TAG) is not a tag", "tag_column")),
    Case("data-one-column", data_file("dev-de.tsv", "Anna\tB-PER\n\nBerlin\n"), ("dev-de.tsv:3:", "expected 2 columns")),
    Case("data-tag-underscore", data_file("train-de.tsv", "Anna\tB-PER\nSmith\tI-PER\n\nBerlin\tB_LOC\n"),
         ("train-de.tsv:4:", "'B_LOC' in the tag column", "is not a tag")),
    # without data.labels any entity type is read from the data; with it, a type outside it is refused
    Case("data-tag-misspelt", data_file("train-en.tsv", "Anna\tB-PERSON\n", labels=WIKIANN_LABELS),
         ("train-en.tsv:1:", "unknown tag 'B-PERSON'", TAGS)),
    Case("data-bad-utf8", data_file("dev-en.tsv", b"ok\tO\n\nbad\xff\xfe\tO\n"), ("dev-en.tsv:3:", "invalid UTF-8")),
    Case("data-empty-file", data_file("dev-en.tsv", ""), ("dev-en.tsv", "no sentences")),
    Case("data-only-docstart", data_file("train-de.tsv", "-DOCSTART- O\n\n-DOCSTART- O\n\n"),
         ("train-de.tsv", "no sentences", "only -DOCSTART-")),
    Case("data-language-without-file", experiment("teacher", data__labelled={"source": "iob", "path": "corpus",
                                                                             "languages": ["en", "de", "fr"]}),
         ("missing file", "train-fr.tsv")),
    Case("data-unlabelled-empty", unlabelled_file("extra-fr.txt", "\n\n"), ("extra-fr.txt", "holds no sentences")),
    Case("data-unlabelled-bad-utf8", unlabelled_file("extra-fr.txt", b"bonjour Paris\n\xff\n"),
         ("extra-fr.txt:2:", "invalid UTF-8")),
    # teacher
    Case("teacher-missing-directory", experiment("teacher", teacher={"init": "finetuned", "model": "./nowhere/teacher"}),
         ("teacher.model", "nowhere/teacher", "does not exist")),
    Case("teacher-unreachable-hub-id", experiment("teacher", teacher={"init": "finetuned", "model": "nowhere/teacher"}),
         ("teacher.model", "'nowhere/teacher'", "read as a Hugging Face hub id")),
    Case("teacher-label-map", teacher_dir(lambda case: _bert(case, ["O", "B-PER", "I-PER"])),
         ("teacher.model", "the checkpoint predicts ['O', 'B-PER', 'I-PER']",
          "the data has ['LOC', 'ORG'], which the teacher lacks")),
    Case("teacher-labels-not-iob2", teacher_dir(lambda case: _bert(case, ["O", "S-PER", "E-PER"])),
         ("teacher.model", "its labels ['O', 'S-PER', 'E-PER'] are not IOB2")),
    Case("teacher-vocabulary", teacher_dir(lambda case: _bert(case, WIKIANN_LABELS, vocab_rows=20), init="pretrained"),
         ("teacher.model", "model's embedding has only 20 rows", "do not belong together")),
    Case("teacher-not-token-classifier", teacher_dir(vit, init="pretrained"),
         ("teacher.model", "cannot load", "as a token classifier", "ViTConfig")),
    # transfer set
    Case("transfer-missing-shard", transfer_damage(lambda t, m: first_shard(t, m).unlink()), ("shard-", "is missing", "rebuild")),
    Case("transfer-truncated-shard", transfer_damage(truncate), ("shard-", "is unreadable (truncated?)", "rebuild")),
    Case("transfer-other-teacher", transfer_damage(edit_manifest(teacher_fingerprint="0123456789abcdef")),
         ("was built for something else", "teacher_fingerprint is '0123456789abcdef', expected")),
    Case("transfer-other-layer", transfer_damage(edit_manifest(layer=7)), ("built for something else", "layer is 7, expected 1")),
    Case("transfer-schema-changed", transfer_damage(drop_hidden), ("has schema", "expected", "hidden")),
    Case("transfer-schema-version", transfer_damage(edit_manifest(schema_version=99)), ("schema version 99", "rebuild")),
    # experiment files
    Case("config-unknown-key", experiment(studnet={"hidden_size": 8}), ("exp.yaml", "studnet: unknown key (did you mean 'student'?)")),
    Case("config-unknown-nested-key", experiment(student={"hiden_size": 8}),
         ("exp.yaml", "student.hiden_size: unknown key (did you mean 'student.hidden_size'?)")),
    Case("config-wrong-type", experiment(student={"hidden_size": "big"}), ("student.hidden_size: expected an integer, got 'big'",)),
    Case("config-zero-dimension", experiment(student={"embedding_dim": 0}), ("student.embedding_dim: must be > 0",)),
    Case("config-negative-dimension", experiment(student={"hidden_size": -8}), ("student.hidden_size: must be > 0",)),
    Case("config-negative-teacher-dim", experiment(teacher__build__hidden_size=-32), ("teacher.build.hidden_size: must be > 0",)),
    Case("config-unparsable-yaml", experiment_text("name: tiny\nstudent: {hidden_size: 8\n"), ("exp.yaml", "invalid YAML")),
    Case("config-empty-file", experiment_text(""), ("exp.yaml", "file is empty")),
    Case("config-override-unknown-key", override("student.hiden_size=8"), ("student.hiden_size: unknown key",)),
    Case("config-override-wrong-type", override("student.hidden_size=big"), ("student.hidden_size: expected an integer",)),
    # search-space files
    Case("space-empty-grid", space_file("student.hidden_size: {grid_search: []}\n"),
         ("space.yaml", "student.hidden_size", "grid_search needs a non-empty list")),
    Case("space-key-not-in-config", space_file("student.hiden_size: {grid_search: [8, 16]}\n"),
         ("space.yaml", "student.hiden_size: value 8 is not valid")),
    Case("space-wrong-type", space_file("student.hidden_size: {grid_search: [8, big]}\n"),
         ("space.yaml", "student.hidden_size: value 'big' is not valid", "expected an integer")),
    Case("space-zero-dimension", space_file("student.embedding_dim: {grid_search: [16, 0]}\n"),
         ("space.yaml", "student.embedding_dim: value 0 is not valid", "must be > 0")),
    Case("space-data-key", space_file("data.max_length: {grid_search: [16, 24]}\n"), ("space.yaml", "data.max_length")),
    Case("space-unparsable-yaml", space_file("student.hidden_size: {grid_search: [8, 16]\n"), ("space.yaml", "invalid YAML")),
    Case("space-empty-file", space_file(""), ("space.yaml", "expected a non-empty mapping")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_cleanly(case: Case, earlier: Path, tmp_path: Path, capsys):
    work = tmp_path / "case"
    shutil.copytree(earlier, work)
    save_run_config(work / "run", dump_config(resolved(work / "exp.yaml")))  # as if the run had been made here
    argv = case.setup(work)
    before = snapshot(work / "run")
    capsys.readouterr()
    code = main([*argv, "--out", str(work / "run")])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("xdray: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in case.expect:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert snapshot(work / "run") == before


def test_the_table_covers_every_kind_of_input():
    kinds = {case.id.split("-")[0] for case in CASES}
    assert kinds == {"data", "teacher", "transfer", "config", "space"}
    assert len({case.id for case in CASES}) == len(CASES)


ACCEPTED = {
    "bom": "\ufeff" + sentence("en", 0) + sentence("en", 1),
    "crlf": (sentence("en", 0) + sentence("en", 1)).replace("\n", "\r\n"),
    "bom-crlf": "\ufeff" + (sentence("en", 0) + sentence("en", 1)).replace("\n", "\r\n"),
}


@pytest.mark.parametrize("variant", sorted(ACCEPTED))
def test_bom_and_crlf_files_read_as_the_plain_file(variant, tmp_path, write_experiment):
    from xdray.config import load_experiment

    def load(text: str):
        corpus = tmp_path / variant / "corpus"
        write_corpus(corpus)
        (corpus / "train-en.tsv").write_bytes(text.encode("utf-8"))
        raw = base_raw()
        raw["data"]["labelled"]["path"] = str(corpus)
        return labelled_of(load_experiment(write_experiment(raw)))

    plain = load(sentence("en", 0) + sentence("en", 1))
    odd = load(ACCEPTED[variant])
    assert odd.fingerprint == plain.fingerprint
    assert odd.splits["train"][0]["tokens"][0] == "Anna"


def test_sentence_far_longer_than_max_length_is_kept_and_counted(earlier, tmp_path, capsys):
    work = tmp_path / "case"
    shutil.copytree(earlier, work, ignore=shutil.ignore_patterns("run"))
    long_sentence = "".join(f"word{i}\tO\n" for i in range(300)) + "Anna\tB-PER\n\n"
    with open(work / "corpus" / "dev-en.tsv", "a", encoding="utf-8") as handle:
        handle.write(long_sentence)
    assert main(["teacher", str(work / "exp.yaml"), "--out", str(work / "run")]) == 0
    encoding = json.loads((work / "run" / "teacher" / "metrics.json").read_text())["encoding"]["dev"]
    assert encoding["sentences"] == 2 * 12 + 1  # kept, not dropped
    assert encoding["truncated_sentences"] >= 1 and encoding["truncated_words"] >= 300 - 24


# --- an unwritable output directory --------------------------------------------------------------

def block_with_file(path: Path) -> Callable[[], None]:
    """Put a file where a directory should go (refused even to root); returns the undo."""
    if path.is_dir():
        shutil.rmtree(path)
    path.write_text("in the way\n")
    return path.unlink


def make_read_only(path: Path) -> Callable[[], None]:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o555)
    return lambda: path.chmod(0o755)


AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.mark.parametrize("command, blocked, block", [
    ("teacher", "run", block_with_file),
    ("transfer", "run/transfer", block_with_file),
    ("train", "run/train", block_with_file),
    pytest.param("transfer", "run/transfer", make_read_only,
                 marks=pytest.mark.skipif(AS_ROOT, reason="root writes into read-only directories")),
], ids=["run-dir-file", "transfer-file", "student-file", "transfer-read-only"])
def test_unwritable_output_fails_cleanly_then_a_rerun_finishes(command, blocked, block, earlier, tmp_path, capsys):
    work = tmp_path / "case"
    shutil.copytree(earlier, work)
    save_run_config(work / "run", dump_config(resolved(work / "exp.yaml")))
    argv = [command, str(work / "exp.yaml"), "--out", str(work / "run")]
    undo = block(work / blocked)
    before = snapshot(work / "run") if (work / "run").is_dir() else {}
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "cannot write" in err and blocked.split("/")[-1] in err, err
    assert (snapshot(work / "run") if (work / "run").is_dir() else {}) == before
    undo()
    assert main(argv) == 0, capsys.readouterr().err
    after = snapshot(work / "run")
    kept = {k: v for k, v in before.items() if k.startswith(("teacher/", "transfer/"))}
    assert {k: after[k] for k in kept} == kept  # finished stages were kept, not redone
    if command == "transfer":
        (transfer,) = (work / "run" / "transfer").iterdir()
        assert json.loads((transfer / "manifest.json").read_text())["rows"] == 80
    if command == "train":
        (student,) = (work / "run" / "train").iterdir()
        assert json.loads((student / "metrics.json").read_text())["dev"]["f1_mean"] >= 0
