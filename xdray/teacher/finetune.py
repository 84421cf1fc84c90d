"""Teacher fine-tuning on Ray Train's TorchTrainer (`teacher.finetune`): AdamW with linear warmup,
dynamic padding and length bucketing; rank 0 evaluates dev every epoch and keeps the best weights
(model selection on dev only), then reports them, with their metrics, as the final checkpoint."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Sequence

import torch

from xdray.core.batching import bucketed_batches, pad_batch
from xdray.core.metrics import DEV_F1, IGNORE_INDEX
from xdray.core.records import write_metrics
from xdray.core.runtime import LogThrottle, RuntimeConfig, configure_logging, init_ray, largest_node_cpus
from xdray.data.encode import Encoded
from xdray.teacher.load import evaluate_teacher
from xdray.teacher.schema import FinetuneConfig

log = logging.getLogger(__name__)


def _train_loop(config: dict) -> None:
    """Ray Train worker: AdamW, linear warmup, dynamic padding, length bucketing; rank 0 evaluates
    dev each epoch, keeps the best weights, and reports them as the final checkpoint."""
    import tempfile

    import ray
    import ray.train
    import ray.train.torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, get_linear_schedule_with_warmup

    configure_logging()  # xdray's lines, at the driver's level; a line a minute reaches the driver
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
    best_f1, best_state, best_dev, step, epoch, history = -1.0, None, None, 0, 0, []
    started, throttle = time.time(), LogThrottle()
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
            elif rank == 0 and ((level := throttle.level()) == logging.INFO or step % config["log_every"] == 0):
                log.log(level, "teacher: step %d of %d, loss %.4f (%.0fs)", step, total_steps, running / seen,
                        time.time() - started)
        epoch += 1
        metrics = {"epoch": epoch, "step": step, "train_loss": running / max(seen, 1)}
        if rank == 0:
            report = evaluate_teacher(core, dev, config["labels"], config["eval_batch_size"], device)
            metrics[DEV_F1] = report["f1_mean"]
            history.append({**metrics, "per_language": report["per_language"]})  # TensorBoard's teacher run
            log.log(throttle.level() if bar is None else logging.DEBUG,
                    "teacher: epoch %d, train loss %.4f, dev F1 %.4f (%.0fs)", epoch, metrics["train_loss"],
                    report["f1_mean"], time.time() - started)
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
    final = {"dev": best_dev, "history": history}
    if config.get("test") is not None:
        final["test"] = evaluate_teacher(core, ray.get(config["test"]), config["labels"],
                                         config["eval_batch_size"], device)
    with tempfile.TemporaryDirectory() as tmp:
        core.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_metrics(Path(tmp), final)
        ray.train.report({**metrics, DEV_F1: best_f1}, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def finetune(ft: FinetuneConfig, runtime: RuntimeConfig, seed: int, init_dir: Path, encoded: dict[str, Encoded],
             labels: Sequence[str], work_dir: Path, out_dir: Path, progress: bool = False) -> None:
    """Fine-tune the model in `init_dir` with TorchTrainer; write the best one (by dev F1), its
    tokenizer and metrics.json into `out_dir`."""
    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    init_ray(runtime)
    # Workers spread over nodes; on one node they share it. Either way no worker outgrows a node.
    node_cpus = int(largest_node_cpus({"GPU": 1} if ft.use_gpu else {}))
    cpus = ft.cpus_per_worker or max(1, min(node_cpus, int(ray.cluster_resources().get("CPU", 1)) // ft.num_workers))
    steps = -(-len(encoded["train"]) // (ft.batch_size * ft.num_workers))
    loop_config = {
        "init_dir": str(init_dir), "seed": seed, "threads": cpus, "labels": list(labels),
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
