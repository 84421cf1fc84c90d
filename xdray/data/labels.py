"""The experiment's label list: a fine-tuned checkpoint's, data.labels, the source's own order, or
one built from the tags seen."""

from __future__ import annotations

from typing import Sequence

from xdray.core.errors import DataError
from xdray.data.iob import IobFile
from xdray.data.tags import entity_types, is_iob2_list, labels_from_tags


def source_labels(parts: dict[str, list[IobFile]]) -> tuple[str, ...] | None:
    """The label order the source gives its tags (a ClassLabel's names, synthetic's list) where
    it is IOB2 with O first; None when the order is to come from the tags themselves."""
    order = next((p.label_order for files in parts.values() for p in files if p.label_order), None)
    return order if order and is_iob2_list(order) else None


def resolve_labels(declared: Sequence[str], required: Sequence[str] | None, required_from: str,
                   seen: set[str], preferred: Sequence[str] | None) -> tuple[str, ...]:
    """The experiment's label list. `required` (a fine-tuned checkpoint's labels, in its order)
    wins and must cover the same entity types as the data and data.labels; then data.labels as
    given; then the source's own order where it covers the data; else O and B-/I- of each type
    seen, alphabetically."""
    if required is not None:
        if declared and list(declared) != list(required):  # ids named by data.labels would be renamed
            raise DataError(f"{required_from}: the checkpoint's labels {list(required)} and data.labels "
                            f"{list(declared)} differ; with init: finetuned the checkpoint's id2label is the label "
                            "list: leave data.labels out, or give it in the checkpoint's order")
        theirs = entity_types(required)
        for name, tags in (("the data", seen), ("data.labels", declared)):
            ours = entity_types(tags)
            if tags and ours != theirs:
                raise DataError(f"{required_from}: the checkpoint predicts {list(required)} (types "
                                f"{sorted(theirs)}) but {name} has types {sorted(ours)}: "
                                + "; ".join(part for part in (
                                    f"{name} has {sorted(ours - theirs)}, which the teacher lacks" if ours - theirs else "",
                                    f"the teacher has {sorted(theirs - ours)}, which {name} lacks" if theirs - ours else "")
                                    if part)
                                + " (use init: pretrained to train a new head on these labels)")
        return tuple(required)
    if declared:
        return tuple(declared)
    if preferred and seen <= set(preferred):
        return tuple(preferred)
    return labels_from_tags(seen)
