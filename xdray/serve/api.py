"""The HTTP API of `xdray serve`, as data: request and response models and the checks on a
/predict body. FastAPI turns the models into the OpenAPI page (`/docs`, `/openapi.json`).

One contract with `xdray predict`: a text gets exactly the entities predict prints for that line,
a blank text included (no entities). Limits are per request: at most `max_texts` texts of at most
`max_chars` characters each (`xdray serve --max-texts/--max-chars`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

DEFAULT_MAX_TEXTS = 256
DEFAULT_MAX_CHARS = 20000


class Entity(BaseModel):
    text: str = Field(description="the entity as it is in the text: text[start:end]")
    label: str = Field(description="entity type, e.g. PER, LOC, ORG")
    start: int = Field(description="offset of its first character in the text (Python string index)")
    end: int = Field(description="offset just past its last character")
    score: float = Field(description="mean over its words of the probability of each word's predicted tag")


class Tagged(BaseModel):
    text: str
    entities: list[Entity]


class Error(BaseModel):
    error: str = Field(description="what was wrong with the request")


class Health(BaseModel):
    status: str = "ok"
    model: str = Field(description="the student folder this replica serves")


PREDICT_BODY = {  # the request body, written out: the handler reads the raw bytes to check them itself
    "required": True,
    "content": {"application/json": {
        "schema": {"oneOf": [
            {"type": "object", "title": "One text", "required": ["text"],
             "properties": {"text": {"type": "string", "description": "one line of raw text"}}},
            {"type": "object", "title": "Several texts", "required": ["texts"],
             "properties": {"texts": {"type": "array", "items": {"type": "string"},
                                      "description": "lines of raw text, answered as a list in order"}}},
        ]},
        "examples": {"one": {"value": {"text": "Angela Merkel visited Paris."}},
                     "several": {"value": {"texts": ["Angela Merkel visited Paris.", "北京是中国的首都。"]}}},
    }},
}
PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "not JSON, not an object with text or texts, or not strings"},
    413: {"model": Error, "description": "more texts, or a longer text, than the server's limits"},
}


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_request(body: bytes, max_texts: int, max_chars: int) -> tuple[list[str], bool]:
    """(texts, whether the answer is a list) from a /predict body, or BadRequest."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise BadRequest(400, f"body is not JSON: {str(err)[:200]}") from None
    if not isinstance(data, dict) or len({"text", "texts"} & set(data)) != 1:
        raise BadRequest(400, 'expected an object with "text": "..." or "texts": ["...", ...]')
    many = "texts" in data
    texts = data["texts"] if many else [data["text"]]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise BadRequest(400, '"texts" must be a list of strings' if many else '"text" must be a string')
    if len(texts) > max_texts:
        raise BadRequest(413, f"{len(texts)} texts in one request; at most {max_texts}")
    if texts and max(len(t) for t in texts) > max_chars:
        raise BadRequest(413, f"a text of {max(len(t) for t in texts)} characters; at most {max_chars}")
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            where = f"texts[{i}]" if many else "text"
            raise BadRequest(400, f"{where} holds a lone surrogate (an unpaired \\ud800-\\udfff escape): "
                             "not text") from None
    return texts, many
