"""`xdray predict --ray --out DIR`: tag a large corpus on a Ray cluster. Ray Data reads the text
files (one input line per row, streamed a block at a time), a pool of actors each holding the
student in ONNX Runtime tags them in batches, and the rows are written as Parquet (entities as a
list of structs) or JSON lines, in input order, one file per block. Each output row is what
`xdray predict` prints for that line, with where it came from: {"path", "line" (from 1), "text",
"entities"}.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from xdray.core.errors import XdrayError
from xdray.core.runtime import RuntimeConfig, init_ray

log = logging.getLogger(__name__)

ENTITY = pa.struct([("text", pa.string()), ("label", pa.string()), ("start", pa.int32()), ("end", pa.int32()),
                    ("score", pa.float32())])
FORMATS = ("parquet", "json")
# Reading lines is I/O: a small CPU share lets the read tasks run beside the actor pool and other
# work such as a Serve replica; at 1 CPU each they could wait forever for a CPU the actors hold.
READ_CPUS = 0.1
READ_LINES = 10_000  # lines a block


def input_files(inputs: list[str]) -> list[Path]:
    """The files named, and every file under the directories named (hidden ones left out), sorted."""
    files = []
    for name in inputs:
        path = Path(name).expanduser().resolve()
        if not path.exists():
            raise XdrayError(f"{name}: no such file or directory")
        files += [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise XdrayError(f"{', '.join(inputs)}: no files to tag")
    return files


def read_lines(batch: dict) -> Iterator[pa.Table]:
    """The numbered lines of each file in the batch, a block of READ_LINES at a time; a line that
    is not UTF-8 is an error naming its file and line."""
    for path in batch["path"]:
        rows: dict[str, list] = {"path": [], "line": [], "text": []}
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as err:
                    raise XdrayError(f"{path}:{number}: not UTF-8 text (byte {err.start})") from None
                rows["path"].append(str(path))
                rows["line"].append(number)
                rows["text"].append(text.lstrip("\ufeff") if number == 1 else text)
                if len(rows["text"]) == READ_LINES:
                    yield pa.table(rows)
                    rows = {k: [] for k in rows}
        if rows["text"]:
            yield pa.table(rows)


class LineTagger:
    """A Ray Data actor: the student loaded once, tagging a batch of lines at a time."""

    def __init__(self, model_dir: str, runtime: str, threads: int):
        import torch

        from xdray.serve.tagger import Tagger

        torch.set_num_threads(threads)
        self.tagger = Tagger(Path(model_dir), runtime=runtime)

    def __call__(self, batch: pa.Table) -> pa.Table:
        records = self.tagger.entities(batch.column("text").to_pylist())
        return batch.append_column("entities", pa.array([r["entities"] for r in records], type=pa.list_(ENTITY)))


def _xdray_cause(err: BaseException) -> str | None:
    """The message of the XdrayError a Ray task raised. Ray Data hands it back as text inside its
    own exception (the task's traceback), so it is found there: `...errors.DataError: MESSAGE`."""
    found = re.search(r"xdray\.core\.errors\.\w+: (.+)", str(err))
    return found.group(1).strip() if found else None


def tag_corpus(model_dir: Path, inputs: list[str], out: Path, output_format: str = "parquet", actors: int = 0,
               runtime: str = "auto", batch_size: int = 512) -> int:
    """Tag every line of `inputs` (files or directories of text) into `out` (built aside, then
    moved into place); returns the number of lines. actors=0: one per CPU of the cluster but one
    (that one reads)."""
    import ray

    if output_format not in FORMATS:
        raise XdrayError(f"--format {output_format}: expected one of {', '.join(FORMATS)} with --ray")
    if out.exists():
        raise XdrayError(f"--out {out}: exists; choose a new directory (nothing is overwritten)")
    files = input_files(inputs)
    from xdray.serve.tagger import Tagger

    Tagger(model_dir, runtime=runtime)  # a bad model directory fails here, before the cluster works
    init_ray(RuntimeConfig())
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    cpus = int(ray.cluster_resources().get("CPU", 1))
    pool = actors or max(1, cpus - 1)
    if pool >= cpus:
        log.warning("--actors %d on a cluster of %d CPU(s): the read tasks need %.1f CPU the actors leave free; "
                    "this waits until the cluster grows", pool, cpus, READ_CPUS)
    ds = ray.data.from_items([{"path": str(p)} for p in files], override_num_blocks=len(files))
    ds = ds.map_batches(read_lines, batch_size=1, batch_format="numpy", num_cpus=READ_CPUS)
    ds = ds.map_batches(LineTagger, batch_format="pyarrow", batch_size=batch_size, num_cpus=1,
                        compute=ray.data.ActorPoolStrategy(size=pool),
                        fn_constructor_kwargs={"model_dir": str(model_dir.resolve()), "runtime": runtime,
                                               "threads": 1})
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        (ds.write_parquet if output_format == "parquet" else ds.write_json)(str(staging.resolve()))
    except Exception as err:  # a bad line surfaces wrapped by Ray Data: say it in one line, keep nothing
        shutil.rmtree(staging, ignore_errors=True)
        cause = _xdray_cause(err)
        if cause is None:
            raise
        raise XdrayError(cause) from None
    staging.rename(out)
    lines = sum(pq.read_metadata(p).num_rows for p in out.glob("*.parquet")) if output_format == "parquet" \
        else sum(1 for p in out.glob("*.json*") for _ in p.open(encoding="utf-8"))
    log.info("predict --ray: %d lines tagged by %d actor(s) into %s", lines, pool, out)
    return lines
