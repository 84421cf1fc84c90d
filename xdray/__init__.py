"""xdray: distil massive multilingual transformers into tiny BiLSTM students on Ray."""

__version__ = "0.1.0"
