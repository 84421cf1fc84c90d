"""One trial: one student config through the whole stage plan, as a checkpointed stage.

Each sub-stage (xdray.distill.loop) ends with a checkpoint, so a restarted trial continues after
the last finished sub-stage with the same result. Model selection uses dev only; test F1 is
computed once, at the end, when the student is saved and its deployable forms are built and
scored (xdray.distill.forms).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from xdray.core.faults import crash_point
from xdray.core.files import publish
from xdray.core.metrics import DEV_F1, count_parameters
from xdray.core.records import read_json, read_metrics, write_json, write_metrics
from xdray.core.runtime import LogThrottle, torch_threads
from xdray.core.stage import PARTIAL, Stage, Work
from xdray.data.encode import Encoded, encode_splits
from xdray.data.sources import LabelledData
from xdray.data.windows import evaluate_words
from xdray.distill.board import write_history, write_substage
from xdray.distill.forms import EVAL_BATCH, build_forms, eager_logits, score_forms
from xdray.distill.loop import TRANSFER_LOSSES, LoopSettings, device_of, train_substage
from xdray.distill.quantize import state_bytes
from xdray.distill.schedule import expand
from xdray.distill.schema import DistillConfig, StudentConfig
from xdray.distill.saved import save_student
from xdray.distill.student import BiLSTMStudent, StudentSpec
from xdray.distill.vocab import Vocabulary, init_embedding
from xdray.transfer.reader import TransferSet

log = logging.getLogger(__name__)

Report = Callable[[dict], None]


@dataclass(frozen=True)
class TrialSettings:
    """What a trial reads of the experiment: its student and plan, the seed, the labelled data's
    max length, and where it runs (the pipeline fills it in: xdray.pipeline.trial_settings)."""

    student: StudentConfig
    distill: DistillConfig
    seed: int
    max_length: int
    gpus: float = 0.0  # the trial's GPU share: CUDA where > 0 and one is visible
    threads: int = 1  # torch threads: the trial's CPU share

    @property
    def loop(self) -> LoopSettings:
        return LoopSettings(self.seed, self.distill.heldout_fraction, self.student.rep_projection == "linear")

    @property
    def device(self) -> torch.device:
        return torch.device("cuda" if self.gpus > 0 and torch.cuda.is_available() else "cpu")


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


def prepare(settings: TrialSettings, teacher_dir: Path, transfer_path: Path | None, data: LabelledData | None,
            labels: tuple[str, ...] | None = None) -> TrialData:
    """Encode the labelled splits (if any) with the teacher's tokenizer, open the transfer set, and
    restrict the vocabulary to the pieces seen in the labelled train split and the transfer set."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    encoded = encode_splits(tokenizer, data, settings.max_length) if data is not None else {}
    transfer = TransferSet(transfer_path) if transfer_path else None
    td = TrialData(data.labels if data is not None else tuple(labels), encoded, tokenizer.pad_token_id, tokenizer,
                   teacher_word_embeddings(teacher_dir), AutoConfig.from_pretrained(teacher_dir).hidden_size, transfer)
    sequences = list(encoded["train"].input_ids) if encoded else []
    if transfer is not None:
        sequences += [ids for _, _, ids, *_ in transfer.iter_rows("train", 0.0)]
    td.vocab = Vocabulary.from_data(sequences, tokenizer, settings.student.vocab_size)
    return td


def build_student(settings: TrialSettings, td: TrialData) -> BiLSTMStudent:
    s = settings.student
    spec = StudentSpec(vocab_size=len(td.vocab), embedding_dim=s.embedding_dim, hidden_size=s.hidden_size,
                       projection_dim=td.teacher_hidden, num_labels=len(td.labels), dropout=s.dropout)
    torch.manual_seed(settings.seed)
    student = BiLSTMStudent(spec)
    init_embedding(student, td.teacher_embeddings, td.vocab, s.init, settings.seed)
    return student


def evaluate_student(student: BiLSTMStudent, td: TrialData, split: str) -> dict:
    """Entity F1 per language on a labelled split, over every word (long sentences in windows)."""
    student.eval()
    device = device_of(student)
    enc = td.encoded[split]
    return evaluate_words(eager_logits(student, td.vocab),
                          enc.words, enc.langs, td.labels, EVAL_BATCH, device)


def _dev_scalars(dev: dict) -> dict:
    return {DEV_F1: dev["f1_mean"], "dev_f1_std": dev["f1_std"], "dev_f1_micro": dev["f1_micro"],
            **{f"dev_f1_{lang}": f1 for lang, f1 in dev["per_language"].items()}}


# ----------------------------------------------------------------------------- checkpoints


def _save_checkpoint(directory: Path, student: BiLSTMStudent, state: dict) -> None:
    from safetensors.torch import save_file

    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()},
              str(tmp / "student.safetensors"))
    write_json(tmp / "state.json", state)
    publish(tmp, directory)


def _load_checkpoint(directory: Path, student: BiLSTMStudent) -> dict | None:
    from safetensors.torch import load_file

    state = read_json(directory / "state.json", "delete the trial's .partial folder to start it again")
    if state is None:
        return None
    student.load_state_dict(load_file(str(directory / "student.safetensors")))
    return state


# ----------------------------------------------------------------------------- the trial


def _finish(settings: TrialSettings, trial_dir: Path, td: TrialData, student: BiLSTMStudent, final: dict) -> dict:
    """The dev-selected student saved, its test F1 taken once, its forms built and scored."""
    if "test" in td.encoded:
        final["test"] = evaluate_student(student, td, "test")
    student.cpu()  # saved, quantised and served from the CPU copy
    s = settings.student
    save_student(trial_dir / "student", student, td.vocab, td.labels, td.tokenizer,
                 extra={"max_length": settings.max_length,
                        "student_config": {"embedding_dim": s.embedding_dim, "hidden_size": s.hidden_size,
                                           "init": s.init}})
    build_forms(student, td.vocab, trial_dir / "student")
    splits = {split: (td.encoded[split].words, td.encoded[split].langs) for split in ("dev", "test")
              if split in td.encoded}
    final.update(size_bytes=state_bytes(student), sentences={k: len(v) for k, v in td.encoded.items()},
                 forms=score_forms(trial_dir / "student", splits, td.labels, settings.threads))
    write_metrics(trial_dir, final)
    return final


def train_student(settings: TrialSettings, trial_dir: Path, td: TrialData, report: Report | None = None,
                  tensorboard: bool = True, keep_tensorboard: bool = False) -> dict:
    """The whole plan for one student; resumes after the last finished sub-stage in trial_dir.
    Live TensorBoard events go to trial_dir/tensorboard while it trains; at the end they are
    dropped (a Tune trial: the report draws it), or with keep_tensorboard redrawn from the history
    (`xdray train`: the student's own run, without a resumed sub-stage's repeated points)."""
    from torch.utils.tensorboard import SummaryWriter

    started = time.time()
    plan = expand(settings.distill.stages)
    if any(s.stage.loss in TRANSFER_LOSSES for s in plan) and td.transfer is None:
        raise ValueError("the stage plan needs a transfer set")
    student = build_student(settings, td)
    state = _load_checkpoint(trial_dir / "checkpoint", student) or {"done": 0, "history": []}
    student.to(settings.device)
    name = trial_dir.name.removesuffix(PARTIAL)
    if state["done"]:
        log.info("trial %s: resuming after sub-stage %d of %d", name, state["done"], len(plan))
    writer = SummaryWriter(str(trial_dir / "tensorboard")) if tensorboard else None
    throttle = LogThrottle()  # a sub-stage's line when a minute has passed; every one with -v
    for index in range(state["done"], len(plan)):
        sub = plan[index]
        metrics = train_substage(student, td, settings.loop, sub, index, name)
        dev = evaluate_student(student, td, "dev")
        metrics.update(_dev_scalars(dev))
        if writer is not None:
            write_substage(writer, metrics, index + 1)
            writer.flush()  # show it now, and keep it if the trial dies
        head = any(p.stage.loss != "rep" for p in plan[:index + 1])  # RepLoss alone trains no label head
        log.log(throttle.level(), "trial %s: %s (%d epochs) held-out loss %.4f, %s", name, sub.name, metrics["epochs"],
                 metrics["heldout_loss"], f"dev F1 {dev['f1_mean']:.4f}" if head else
                 "no dev F1 yet (representation loss only: the label head trains from the logit stage on)")
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
    return _finish(settings, trial_dir, td, student, final)


def read_trial(trial_dir: Path) -> dict | None:
    """A finished trial's metrics; None where it has none, or a record from before its forms were
    scored (the trial then finishes again from its last checkpoint, which trains nothing)."""
    metrics = read_metrics(trial_dir, "delete the trial's folder to train it again")
    if metrics is not None and "forms" not in metrics:
        log.warning("%s: written before trials scored their ONNX and int8 forms; finishing it again from "
                    "its checkpoint", trial_dir)
        return None
    return metrics


def trial_stage(settings: TrialSettings, output: str, data: Callable[[], TrialData],
                report: Report | None = None, keep_tensorboard: bool = False) -> Stage[dict]:
    """One student as a stage: resumable from its last sub-stage checkpoint, which is pushed to
    storage after every sub-stage (so a retry on another node continues), then published whole.
    `data` builds the trial's inputs, only when there is something to train."""
    def build(work: Work) -> None:
        def save_and_report(metrics: dict) -> None:
            work.save()
            if report is not None:
                report(metrics)

        finished = work.run_dir / output / "checkpoint"
        if finished.is_dir() and not (work.staging / "checkpoint").exists():  # a trial to finish again
            shutil.copytree(finished, work.staging / "checkpoint")
        # The trial's CPU share as torch threads, in a Tune trial and in `xdray train` alike: the
        # same seed then gives the same weights whichever process trains it.
        with torch_threads(settings.threads):
            train_student(settings, work.staging, data(), save_and_report, keep_tensorboard=keep_tensorboard)

    return Stage(name=f"trial {Path(output).name}", output=output, load=read_trial, build=build, resumable=True)
