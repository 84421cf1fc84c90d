"""The report's TensorBoard view: `tensorboard --logdir RUN/report/tensorboard` (a study's:
RUN/studies/<name>/report/tensorboard) compares the grid.

Runs, each named as the frontier names it:
- `<trial>` (e.g. `E64-H32-0b7d31b6`): the student's training curves and its HParams session;
- `<trial>+int8`, `+onnx`, `+onnx-int8`: an HParams session for each deployable form of it;
- `teacher`: the teacher's fine-tuning curve and its dev F1 per language;
- `frontier`: the plots and the table (Images and Text tabs), and the HParams experiment, which
  declares the table's columns once so no other scalar becomes a column.

Steps mean the same thing in every trial: a sub-stage's curves (`<sub-stage>/train_loss`,
`heldout_loss`, `lr`) are per epoch of that sub-stage (1, 2, ...); `dev/*` is per sub-stage of
the plan (1 .. S), the forms' dev F1 at S; `frontier/*` (one point each, at S) holds the table's
other metrics, since HParams reads a session's metrics from its scalars. Everything is drawn from
the records (metrics.json of the teacher and the trials, the frontier rows), so a resumed or
remote trial draws the same as one that ran here, and the view is rebuilt whole on every report.
"""

from __future__ import annotations

import time
from pathlib import Path

from xdray.core.records import Form
from xdray.distill.board import write_history

BOARD_DIR, TEACHER_RUN, FRONTIER_RUN = "tensorboard", "teacher", "frontier"
FRONTIER_METRICS = ("params", "size_mb", "compression", "compression_ref", "retention", "pareto", "recommended",
                    "serve")


def serving_format(row: dict) -> str:
    """torch, torch-int8, onnx or onnx-int8: the HParams column that tells a trial's forms apart."""
    return Form.split(row["trial_id"])[1].value


def hparam_names(rows: list[dict], space_keys: list[str]) -> list[str]:
    from xdray.distill.space import short_name

    names = ["embedding_dim", "hidden_size", *(short_name(k) for k in space_keys)]
    return [n for n in dict.fromkeys(names) if any(n in r for r in rows)] + ["format"]


def metric_tags(rows: list[dict], batch_sizes: list[int]) -> list[str]:
    """The HParams table's metric columns, the ones a choice is made on first (TensorBoard shows
    the first few), then the rest of the frontier's."""
    tags = dict.fromkeys(t for r in rows for t in _row_metrics(r))
    b = max(batch_sizes)
    first = ["dev/f1_mean", "frontier/retention", "frontier/compression", f"frontier/speedup_b{b}",
             "frontier/recommended", "frontier/pareto", "frontier/serve", "frontier/params", "frontier/size_mb"]
    return [t for t in first if t in tags] + [t for t in tags if t not in first]


def _row_metrics(row: dict) -> dict[str, float]:
    """tag -> value of a frontier row (booleans as 0/1; unmeasured values left out)."""
    out = {}
    for key, value in row.items():
        if value is None or value == "" or key in ("trial_id", "runtime", "int8", "embedding_dim", "hidden_size"):
            continue
        if key.startswith("f1_"):
            out[f"dev/{key}"] = float(value)
        elif key == "test_f1_mean":
            out["test/f1_mean"] = float(value)
        elif key in FRONTIER_METRICS or key.startswith(("latency_ms_b", "speedup_b", "speedup_ref_b")):
            out[f"frontier/{key}"] = float(value)
    return out


def _plugin_summary(tag: str, data):
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata

    return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data))])


def _hparam_value(value):
    from google.protobuf import struct_pb2

    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, (int, float)):
        return struct_pb2.Value(number_value=float(value))
    return struct_pb2.Value(string_value=str(value))


def experiment_summary(rows: list[dict], hparams: list[str], metrics: list[str]):
    """The HParams experiment: these hparams and metrics are the table's columns, nothing else."""
    from google.protobuf import struct_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    infos = []
    for name in hparams:
        values = list(dict.fromkeys(_hparam_value(r[name]).SerializeToString() for r in rows if name in r))
        domain = struct_pb2.ListValue(values=[struct_pb2.Value.FromString(v) for v in values])
        kind = _hparam_value(next(r[name] for r in rows if name in r)).WhichOneof("kind")
        dtype = {"bool_value": "DATA_TYPE_BOOL", "number_value": "DATA_TYPE_FLOAT64"}.get(kind, "DATA_TYPE_STRING")
        infos.append(api_pb2.HParamInfo(name=name, type=api_pb2.DataType.Value(dtype), domain_discrete=domain))
    experiment = api_pb2.Experiment(hparam_infos=infos, time_created_secs=time.time(),
                                    metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t))
                                                  for t in metrics])
    return _plugin_summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment))


def session_summaries(name: str, hparams: dict):
    """A session's start (its hparams, grouped under the run's own name) and its end."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(group_name=name, start_time_secs=time.time())
    for key, value in hparams.items():
        start.hparams[key].CopyFrom(_hparam_value(value))
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value("STATUS_SUCCESS"), end_time_secs=time.time())
    return (_plugin_summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
            _plugin_summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)))


def write_teacher(directory: Path, teacher: dict) -> None:
    from torch.utils.tensorboard import SummaryWriter

    # A teacher from before histories were kept: its selected model only, at step 1.
    points = teacher.get("history") or [{"epoch": 1, "dev_f1_mean": teacher["dev"]["f1_mean"],
                                         "per_language": teacher["dev"]["per_language"]}]
    with SummaryWriter(str(directory / TEACHER_RUN)) as writer:
        for point in points:
            if "train_loss" in point:
                writer.add_scalar("teacher/train_loss", point["train_loss"], point["epoch"])
            writer.add_scalar("teacher/dev_f1_mean", point["dev_f1_mean"], point["epoch"])
            for lang, f1 in point["per_language"].items():
                writer.add_scalar(f"teacher/dev_f1_{lang}", f1, point["epoch"])


def write_board(rows: list[dict], histories: dict[str, list[dict]], teacher: dict, space_keys: list[str],
                batch_sizes: list[int], figures: dict, text: str, directory: Path) -> None:
    """The whole view into `directory` (the report's staging place, so it is rebuilt whole);
    `histories`: trial key -> its sub-stages' records."""
    from torch.utils.tensorboard import SummaryWriter

    hparams = hparam_names(rows, space_keys)
    for row in rows:
        key = Form.split(row["trial_id"])[0]
        with SummaryWriter(str(directory / row["trial_id"])) as writer:
            metrics = _row_metrics(row)
            if row["trial_id"] == key:  # the trained student: its curves carry its dev F1
                write_history(writer, histories[key])
                metrics = {k: v for k, v in metrics.items() if not k.startswith("dev/")}
            for tag, value in metrics.items():
                writer.add_scalar(tag, value, max(1, len(histories.get(key, ()))))
            for summary in session_summaries(row["trial_id"], {**{h: row[h] for h in hparams if h in row},
                                                               "format": serving_format(row)}):
                writer.file_writer.add_summary(summary)
    write_teacher(directory, teacher)
    with SummaryWriter(str(directory / FRONTIER_RUN)) as writer:
        if rows:
            writer.file_writer.add_summary(experiment_summary(
                [{**r, "format": serving_format(r)} for r in rows], hparams, metric_tags(rows, batch_sizes)))
        for name, figure in figures.items():
            writer.add_figure(f"frontier/{name}", figure, close=True)
        writer.add_text("frontier/table", text)
