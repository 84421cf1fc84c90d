"""Data sources, IOB reading, the synthetic generator and encoding."""
