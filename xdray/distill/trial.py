"""One trial: one student config through the whole stage plan.

Stages 1-2 stream the transfer set (RepLoss, LogitLoss), stage 3 the labelled data (CE); each
sub-stage runs Adam under an SGDR schedule with early stopping on a held-out loss (the held-out
transfer slice, or the dev set for CE) and ends with a checkpoint, so a restarted trial continues
after the last finished sub-stage with the same result. Model selection uses dev only; test F1 is
computed once, at the end.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler

from xdray.config import ExperimentConfig
from xdray.core.batching import bucketed_batches, pad_batch, sorted_batches
from xdray.core.faults import crash_point
from xdray.core.files import publish
from xdray.core.stage import PARTIAL, Stage, Work
from xdray.core.metrics import DEV_F1, IGNORE_INDEX, count_parameters
from xdray.core.runtime import LogThrottle, torch_threads
from xdray.data.encode import Encoded
from xdray.data.sources import LabelledData
from xdray.data.windows import evaluate_words
from xdray.distill.losses import ce_loss, logit_loss, rep_loss
from xdray.distill.quantize import quantize_int8, state_bytes
from xdray.distill.schedule import EarlyStopping, SubStage, expand, sgdr
from xdray.distill.saved import save_student
from xdray.distill.student import BiLSTMStudent, StudentSpec
from xdray.distill.vocab import Vocabulary, init_embedding
from xdray.teacher.stage import encode_splits
from xdray.transfer.reader import TransferSet

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"

Report = Callable[[dict], None]
TRANSFER_LOSSES = ("rep", "logit")


@dataclass
class Batch:
    ids: torch.Tensor  # (B, T) student ids
    lengths: torch.Tensor  # (B,)
    mask: torch.Tensor  # (B, T) bool
    tokens: int
    hidden: torch.Tensor | None = None  # (B, T, D or r)
    logits: torch.Tensor | None = None  # (B, T, C)
    labels: torch.Tensor | None = None  # (B, T), IGNORE_INDEX off first sub-tokens

    def to(self, device: torch.device) -> "Batch":
        """Tensors to `device`; lengths stay on the CPU, where pack_padded_sequence wants them."""
        if device.type == "cpu":
            return self
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.ids), self.lengths, move(self.mask), self.tokens, move(self.hidden),
                     move(self.logits), move(self.labels))


def device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def trial_device(cfg: ExperimentConfig) -> torch.device:
    """CUDA when the trial holds a GPU (search.gpus_per_trial > 0) and one is visible."""
    return torch.device("cuda" if cfg.search.gpus_per_trial > 0 and torch.cuda.is_available() else "cpu")


@dataclass
class TrialData:
    """Everything a trial reads: the encoded labelled splits, the transfer set, the vocabulary."""

    labels: tuple[str, ...]
    encoded: dict[str, Encoded]
    pad_id: int
    tokenizer: object
    teacher_embeddings: torch.Tensor  # (teacher vocab, D)
    teacher_hidden: int
    transfer: TransferSet | None
    vocab: Vocabulary = field(init=False)


def teacher_word_embeddings(teacher_dir: Path) -> torch.Tensor:
    """The teacher's fine-tuned word-embedding matrix (vocab, D), read from its safetensors."""
    from safetensors import safe_open

    with safe_open(str(teacher_dir / "model.safetensors"), "pt") as weights:
        key = next(k for k in weights.keys() if k.endswith("word_embeddings.weight"))
        return weights.get_tensor(key).float()


def prepare(cfg: ExperimentConfig, teacher_dir: Path, transfer_path: Path | None, data: LabelledData | None,
            labels: tuple[str, ...] | None = None) -> TrialData:
    """Encode the labelled splits (if any) with the teacher's tokenizer, open the transfer set, and
    restrict the vocabulary to the pieces seen in the labelled train split and the transfer set."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    encoded = encode_splits(tokenizer, data, cfg.data.max_length) if data is not None else {}
    transfer = TransferSet(transfer_path) if transfer_path else None
    td = TrialData(data.labels if data is not None else tuple(labels), encoded, tokenizer.pad_token_id, tokenizer,
                   teacher_word_embeddings(teacher_dir), AutoConfig.from_pretrained(teacher_dir).hidden_size, transfer)
    sequences = list(encoded["train"].input_ids) if encoded else []
    if transfer is not None:
        sequences += [ids for _, _, ids, *_ in transfer.iter_rows("train", 0.0)]
    td.vocab = Vocabulary.from_data(sequences, tokenizer, cfg.student.vocab_size)
    return td


def build_student(cfg: ExperimentConfig, td: TrialData) -> BiLSTMStudent:
    s = cfg.student
    spec = StudentSpec(vocab_size=len(td.vocab), embedding_dim=s.embedding_dim, hidden_size=s.hidden_size,
                       projection_dim=td.teacher_hidden, num_labels=len(td.labels), dropout=s.dropout)
    torch.manual_seed(cfg.seed)
    student = BiLSTMStudent(spec)
    init_embedding(student, td.teacher_embeddings, td.vocab, s.init, cfg.seed)
    return student


# ----------------------------------------------------------------------------- batches


def _labelled_batches(td: TrialData, split: str, batch_size: int, seed: int | None) -> Iterator[Batch]:
    enc = td.encoded[split]
    lengths = [len(x) for x in enc.input_ids]
    # evaluation: a fixed order, by length; training: shuffled length buckets
    batches = sorted_batches(lengths, batch_size) if seed is None else bucketed_batches(lengths, batch_size, seed)
    for idx in batches:
        ids = pad_batch([enc.input_ids[i] for i in idx], td.pad_id)
        mask = ids != td.pad_id
        yield Batch(td.vocab.map(ids), mask.sum(1), mask, int(mask.sum()),
                    labels=pad_batch([enc.labels[i] for i in idx], IGNORE_INDEX))


def _transfer_batches(td: TrialData, cfg: ExperimentConfig, split: str, batch_size: int, epoch: int) -> Iterator[Batch]:
    for b in td.transfer.batches(batch_size, split=split, heldout_fraction=cfg.distill.heldout_fraction,
                                 epoch=epoch, seed=cfg.seed, pad_id=td.pad_id):
        yield Batch(td.vocab.map(b.input_ids), b.mask.sum(1), b.mask, b.tokens, hidden=b.hidden, logits=b.logits)


def batches(td: TrialData, cfg: ExperimentConfig, sub: SubStage, split: str, epoch: int) -> Iterator[Batch]:
    """split: "train" or "heldout" (the transfer slice for stages 1-2, dev for CE)."""
    size = sub.stage.batch_size
    if sub.stage.loss in TRANSFER_LOSSES:
        return _transfer_batches(td, cfg, split, size, epoch)
    if split == "train":
        return _labelled_batches(td, "train", size, cfg.seed * 1000 + epoch)
    return _labelled_batches(td, "dev", size, None)


def steps_per_epoch(td: TrialData, cfg: ExperimentConfig, sub: SubStage) -> int:
    """Batches in one training epoch (for the transfer set, the expected count of a stream)."""
    rows = (td.transfer.rows * (1 - cfg.distill.heldout_fraction) if sub.stage.loss in TRANSFER_LOSSES
            else len(td.encoded["train"]))
    return max(1, int(np.ceil(rows / sub.stage.batch_size)))


def loss_of(student: BiLSTMStudent, batch: Batch, cfg: ExperimentConfig, sub: SubStage, pca) -> torch.Tensor:
    batch = batch.to(device_of(student))
    projection, logits = student(batch.ids, batch.lengths)
    if sub.stage.loss == "rep":
        return rep_loss(projection, batch.hidden, batch.mask, pca, cfg.student.rep_projection == "linear")
    if sub.stage.loss == "logit":
        return logit_loss(logits, batch.logits, batch.mask, sub.stage.temperature or None)
    return ce_loss(logits, batch.labels)


# ----------------------------------------------------------------------------- evaluation


def evaluate_student(student: BiLSTMStudent, td: TrialData, split: str, batch_size: int = 256) -> dict:
    """Entity F1 per language on a labelled split, over every word (long sentences in windows)."""
    student.eval()
    device = device_of(student)
    enc = td.encoded[split]
    return evaluate_words(lambda ids, mask: student(td.vocab.map(ids.cpu()).to(device), mask.sum(1))[1],
                          enc.words, enc.langs, td.labels, batch_size, device)


@torch.inference_mode()
def heldout_loss(student: BiLSTMStudent, td: TrialData, cfg: ExperimentConfig, sub: SubStage, pca) -> float:
    student.eval()
    total, weight = 0.0, 0
    for batch in batches(td, cfg, sub, "heldout", 0):
        total += loss_of(student, batch, cfg, sub, pca).item() * batch.tokens
        weight += batch.tokens
    return total / max(weight, 1)


# ----------------------------------------------------------------------------- one sub-stage


def train_epoch(student: BiLSTMStudent, optimizer: torch.optim.Optimizer, stream: Iterator[Batch],
                loss_fn: Callable[[Batch], torch.Tensor], schedule: LRScheduler | None = None,
                name: str = "") -> tuple[float, float]:
    """One pass over `stream`, the schedule stepped after every batch; returns (token-weighted mean
    loss, the learning rate of the last step). Logs a progress line a minute, for nohup logs."""
    student.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total, weight, lr = 0.0, 0, optimizer.param_groups[0]["lr"]
    throttle = LogThrottle()
    for step, batch in enumerate(stream, 1):
        if throttle.due():
            log.info("%s: step %d, loss %.4f", name, step, total / max(weight, 1))
        lr = optimizer.param_groups[0]["lr"]
        loss = loss_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        total, weight = total + loss.item() * batch.tokens, weight + batch.tokens
    return total / max(weight, 1), lr


def train_substage(student: BiLSTMStudent, td: TrialData, cfg: ExperimentConfig, sub: SubStage, index: int,
                   trial: str = "") -> dict:
    """Adam + SGDR over the trainable groups, early stopping on the held-out loss, best weights
    restored. Returns the sub-stage's metrics."""
    torch.manual_seed(cfg.seed * 100 + index)  # each sub-stage seeds itself: resume == uninterrupted
    student.set_trainable(sub.trainable)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=sub.stage.lr_high)
    pca = None
    if sub.stage.loss == "rep" and td.transfer.pca is not None:
        device = device_of(student)
        pca = (torch.tensor(td.transfer.pca["mean"], device=device),
               torch.tensor(td.transfer.pca["components"], device=device))
    stopper = EarlyStopping(sub.stage.patience)
    schedule = sgdr(optimizer, sub.stage, steps_per_epoch(td, cfg, sub))
    train_loss, lr, epochs, curve = 0.0, sub.stage.lr_high, 0, []
    for epoch in range(sub.stage.max_epochs):
        train_loss, lr = train_epoch(student, optimizer, batches(td, cfg, sub, "train", epoch),
                                     lambda b: loss_of(student, b, cfg, sub, pca), schedule,
                                     f"trial {trial} {sub.name} epoch {epoch + 1}")
        held = heldout_loss(student, td, cfg, sub, pca)
        epochs = epoch + 1
        curve.append({"train_loss": train_loss, "heldout_loss": held, "lr": lr})
        if stopper.update(held, student, epoch):
            break
    stopper.restore(student)
    return {"stage": sub.stage.name, "substage": sub.name, "loss": sub.stage.loss, "epochs": epochs,
            "best_epoch": stopper.best_epoch + 1, "train_loss": train_loss, "heldout_loss": stopper.best_loss,
            "lr": lr, "trainable": list(sub.trainable), "curve": curve}


# ----------------------------------------------------------------------------- the trial


def write_substage(writer, record: dict, number: int) -> None:
    """A finished sub-stage's scalars, from its history record: its curves at step = epoch of the
    sub-stage (1, 2, ...), its dev F1 (mean, std, micro, per language) at step = its number in
    the plan. The same steps in every trial, whichever epochs early stopping cut."""
    for epoch, point in enumerate(record.get("curve", []), start=1):
        for key, value in point.items():
            writer.add_scalar(f"{record['substage']}/{key}", value, epoch)
    for key in (k for k in record if k.startswith("dev_f1_")):
        writer.add_scalar(f"dev/{key.removeprefix('dev_')}", record[key], number)


def write_history(writer, history: list[dict]) -> None:
    """Every finished sub-stage of a trial's history, numbered as in the plan."""
    for number, record in enumerate(history, start=1):
        write_substage(writer, record, number)


def _save_checkpoint(directory: Path, student: BiLSTMStudent, state: dict) -> None:
    from safetensors.torch import save_file

    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()},
              str(tmp / "student.safetensors"))
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    publish(tmp, directory)


def _load_checkpoint(directory: Path, student: BiLSTMStudent) -> dict | None:
    from safetensors.torch import load_file

    if not (directory / "state.json").exists():
        return None
    student.load_state_dict(load_file(str(directory / "student.safetensors")))
    return json.loads((directory / "state.json").read_text())


def int8_metrics(student: BiLSTMStudent, td: TrialData) -> dict:
    """F1 and size of the student after dynamic int8 quantisation: a frontier point of its own."""
    quantized = quantize_int8(student)
    out = {"dev": evaluate_student(quantized, td, "dev"), "size_bytes": state_bytes(quantized)}
    if "test" in td.encoded:
        out["test"] = evaluate_student(quantized, td, "test")
    return out


def train_student(cfg: ExperimentConfig, trial_dir: Path, td: TrialData, report: Report | None = None,
                  tensorboard: bool = True, keep_tensorboard: bool = False) -> dict:
    """The whole plan for one student; resumes after the last finished sub-stage in trial_dir.
    Live TensorBoard events go to trial_dir/tensorboard while it trains; at the end they are
    dropped (a Tune trial: the report draws it), or with keep_tensorboard redrawn from the history
    (`xdray train`: the student's own run, without a resumed sub-stage's repeated points)."""
    from torch.utils.tensorboard import SummaryWriter

    started = time.time()
    plan = expand(cfg.distill.stages)
    if any(s.stage.loss in TRANSFER_LOSSES for s in plan) and td.transfer is None:
        raise ValueError("the stage plan needs a transfer set")
    student = build_student(cfg, td)
    state = _load_checkpoint(trial_dir / "checkpoint", student) or {"done": 0, "history": []}
    student.to(trial_device(cfg))
    name = trial_dir.name.removesuffix(PARTIAL)
    if state["done"]:
        log.info("trial %s: resuming after sub-stage %d of %d", name, state["done"], len(plan))
    writer = SummaryWriter(str(trial_dir / "tensorboard")) if tensorboard else None
    for index in range(state["done"], len(plan)):
        sub = plan[index]
        metrics = train_substage(student, td, cfg, sub, index, name)
        dev = evaluate_student(student, td, "dev")
        metrics.update({DEV_F1: dev["f1_mean"], "dev_f1_std": dev["f1_std"], "dev_f1_micro": dev["f1_micro"],
                        **{f"dev_f1_{lang}": f1 for lang, f1 in dev["per_language"].items()}})
        if writer is not None:
            write_substage(writer, metrics, index + 1)
            writer.flush()  # show it now, and keep it if the trial dies
        log.info("trial %s: %s (%d epochs) held-out loss %.4f, dev F1 %.4f", name, sub.name,
                 metrics["epochs"], metrics["heldout_loss"], dev["f1_mean"])
        state = {"done": index + 1, "history": state["history"] + [metrics]}
        _save_checkpoint(trial_dir / "checkpoint", student, state)
        if report is not None:
            report({**metrics, "substage_index": index + 1, "substages": len(plan)})
        crash_point(trial_dir, f"substage-{index + 1}")
    if writer is not None:
        writer.close()
        shutil.rmtree(trial_dir / "tensorboard", ignore_errors=True)
        if keep_tensorboard:
            with SummaryWriter(str(trial_dir / "tensorboard")) as clean:
                write_history(clean, state["history"])
    final = {"dev": evaluate_student(student, td, "dev"), "params": count_parameters(student),
             "history": state["history"], "wall_time_s": round(time.time() - started, 1),
             "device": str(device_of(student))}
    if "test" in td.encoded:
        final["test"] = evaluate_student(student, td, "test")  # once, for the dev-selected model
    student.cpu()  # saved, quantised and served from the CPU copy
    final.update(size_bytes=state_bytes(student), int8=int8_metrics(student, td))
    save_student(trial_dir / "student", student, td.vocab, td.labels, td.tokenizer,
                 extra={"max_length": cfg.data.max_length,
                        "student_config": {"embedding_dim": cfg.student.embedding_dim,
                                           "hidden_size": cfg.student.hidden_size, "init": cfg.student.init}})
    (trial_dir / METRICS_FILE).write_text(json.dumps(final, indent=2, sort_keys=True))
    return final


def read_trial(trial_dir: Path) -> dict | None:
    """A finished trial's metrics, or None."""
    try:
        return json.loads((trial_dir / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None


def trial_stage(cfg: ExperimentConfig, output: str, data: Callable[[], TrialData],
                report: Report | None = None, keep_tensorboard: bool = False) -> Stage[dict]:
    """One student as a stage: resumable from its last sub-stage checkpoint, which is pushed to
    storage after every sub-stage (so a retry on another node continues), then published whole.
    `data` builds the trial's inputs, only when there is something to train."""
    def build(work: Work) -> None:
        def save_and_report(metrics: dict) -> None:
            work.save()
            if report is not None:
                report(metrics)

        # The trial's CPU share as torch threads, in a Tune trial and in `xdray train` alike: the
        # same seed then gives the same weights whichever process trains it.
        with torch_threads(max(1, int(cfg.search.cpus_per_trial))):
            train_student(cfg, work.staging, data(), save_and_report, keep_tensorboard=keep_tensorboard)

    return Stage(name=f"trial {Path(output).name}", output=output, load=read_trial, build=build, resumable=True)
