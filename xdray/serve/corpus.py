"""`xdray predict --ray --out DIR`: tag a large corpus on a Ray cluster. Ray Data reads the text
files (one input line per row), a pool of actors each holding the student in ONNX Runtime tags
them in batches, and the rows are written as Parquet (entities as a list of structs) or JSON
lines, in input order, one file per block. Each output row is what `xdray predict` prints for
that line.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

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


class LineTagger:
    """A Ray Data actor: the student loaded once, tagging a batch of lines at a time."""

    def __init__(self, model_dir: str, runtime: str, threads: int):
        import torch

        from xdray.serve.tagger import Tagger

        torch.set_num_threads(threads)
        self.tagger = Tagger(Path(model_dir), runtime=runtime)

    def __call__(self, batch: pa.Table) -> pa.Table:
        lines = [line.rstrip("\r") for line in batch.column("text").to_pylist()]
        records = self.tagger.entities(lines)
        return pa.table({"text": lines, "entities": pa.array([r["entities"] for r in records],
                                                             type=pa.list_(ENTITY))})


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
    missing = [p for p in inputs if not Path(p).exists()]
    if missing:
        raise XdrayError(f"{missing[0]}: no such file or directory")
    from xdray.serve.tagger import Tagger

    Tagger(model_dir, runtime=runtime)  # a bad model directory fails here, before the cluster works
    init_ray(RuntimeConfig())
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    cpus = int(ray.cluster_resources().get("CPU", 1))
    pool = actors or max(1, cpus - 1)
    if pool >= cpus:
        log.warning("--actors %d on a cluster of %d CPU(s): the read tasks need %.1f CPU the actors leave free; "
                    "this waits until the cluster grows", pool, cpus, READ_CPUS)
    ds = ray.data.read_text([str(Path(p).resolve()) for p in inputs], drop_empty_lines=False,
                            ray_remote_args={"num_cpus": READ_CPUS})
    ds = ds.map_batches(LineTagger, batch_format="pyarrow", batch_size=batch_size, num_cpus=1,
                        compute=ray.data.ActorPoolStrategy(size=pool),
                        fn_constructor_kwargs={"model_dir": str(model_dir.resolve()), "runtime": runtime,
                                               "threads": 1})
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (ds.write_parquet if output_format == "parquet" else ds.write_json)(str(staging.resolve()))
    staging.rename(out)
    lines = sum(pq.read_metadata(p).num_rows for p in out.glob("*.parquet")) if output_format == "parquet" \
        else sum(1 for p in out.glob("*.json*") for _ in p.open(encoding="utf-8"))
    log.info("predict --ray: %d lines tagged by %d actor(s) into %s", lines, pool, out)
    return lines
