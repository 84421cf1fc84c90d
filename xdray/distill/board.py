"""A trial's TensorBoard scalars, drawn from its history records: the live view while it trains,
the report's view (xdray.frontier.board) and `xdray train`'s own run all draw them this way."""

from __future__ import annotations


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
