"""Data sources: labelled NER sets and unlabelled text, all as `datasets.Dataset`s.

Labelled splits have the columns lang (str), tokens (list[str]) and ner_tags (list[int], indices
into the experiment's one shared label list). Unlabelled sets have lang and tokens.
Sources: `conll` (column files: CoNLL-2003, PAN-X, Universal NER), `datasets` (save_to_disk
folders, JSON lines, Parquet), `wikiann` (Hugging Face, or a local copy), `synthetic`. Every
source is read as sentences with IOB2 string tags first; the label list is then resolved
(`resolve_labels`) and the tags indexed, so any label set works and none is built in.

The public entry points, by concern: `xdray.data.parts` reads each source, `xdray.data.labels`
resolves the label list, `xdray.data.labelled` indexes and fingerprints the labelled splits and
`xdray.data.unlabelled` reads the unlabelled text.
"""

from xdray.data.labelled import LABELLED_FEATURES, LabelledData, dataset_fingerprint, load_labelled, sample_indices
from xdray.data.labels import resolve_labels, source_labels
from xdray.data.parts import SPLITS, load_wikiann_language, read_labelled_parts
from xdray.data.unlabelled import UNLABELLED_FEATURES, check_unlabelled, load_unlabelled, read_text_file

__all__ = ["LABELLED_FEATURES", "SPLITS", "UNLABELLED_FEATURES", "LabelledData", "check_unlabelled",
           "dataset_fingerprint", "load_labelled", "load_unlabelled", "load_wikiann_language",
           "read_labelled_parts", "read_text_file", "resolve_labels", "sample_indices", "source_labels"]
