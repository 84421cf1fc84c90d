"""xdray: distil massive multilingual transformers into tiny BiLSTM students on Ray."""

__version__ = "0.1.0"


def load(path, batch_size: int = 64, runtime: str = "auto", threads: int | None = None):
    """A student ready to tag: `xdray.load("runs/NAME/export/TRIAL")` (an export folder) or
    `xdray.load("runs/NAME")` (a run directory: its recommended student). See xdray.serve.tagger.

        tagger = xdray.load("runs/quickstart")
        tagger("Angela Merkel visited Paris.")   # [{"text", "label", "start", "end", "score"}, ...]
    """
    from xdray.serve.tagger import Tagger

    return Tagger(path, batch_size=batch_size, runtime=runtime, threads=threads)
