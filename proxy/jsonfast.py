"""The JSON functions on the converter's hot path, in one place so the choice is made once. CORE.

Output rules (spec section 2, "the exact bytes"): compact separators, non-ASCII written as UTF-8.
A lone surrogate (legal in JSON text as an escape, impossible in UTF-8) is written back as its
``\\uXXXX`` escape, which is what ``backslashreplace`` produces for a BMP code point.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

import orjson

# allow_nan=False: NaN and Infinity are not JSON; a JavaScript client's JSON.parse throws on them
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_encode = _ENCODER.encode
_orjson_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):  # 1e400: valid JSON text, but no JSON writer can echo it
        raise ValueError(f"number out of range: {text[:32]}")
    return value


def loads(data: str | bytes) -> Any:
    """Parse JSON. orjson first (about 5x faster per event, measured in bench/converter.py);
    when it refuses, the standard library decides, so what is accepted is what ``json`` accepts
    (orjson rejects lone surrogate escapes and integers over 64 bits; json does not), less NaN
    and Infinity, which are not JSON. Raises ValueError for anything else, including nesting
    too deep for ``json``'s recursive parser (a 3 KB body of ``[`` would otherwise escape as
    RecursionError)."""
    try:
        return _orjson_loads(data)
    except _JSONDecodeError:
        try:
            return json.loads(data, parse_constant=_no_constant, parse_float=_finite)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes. Raises ValueError for what cannot be written as JSON
    (NaN, nesting too deep for the recursive encoder).

    The scalars every legacy event carries (null, a string) skip the encoder object: the same
    bytes JSONEncoder.encode gives them, about five times faster (issue 18)."""
    if value is None:
        return b"null"
    if type(value) is str:
        return _encode_str(value).encode("utf-8", "backslashreplace")
    try:
        return _encode(value).encode("utf-8", "backslashreplace")
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


_encode_str: Final = (
    json.encoder.encode_basestring
)  # the C escaper json uses for ensure_ascii=False; JSONEncoder.encode(str) is exactly this


def escape_str(text: str) -> bytes:
    """The inside of a JSON string literal for ``text``, as UTF-8 bytes (no quotes)."""
    return _encode_str(text)[1:-1].encode("utf-8", "backslashreplace")
