"""`response_format` to a llama.cpp GBNF grammar, so structured output always parses."""

from __future__ import annotations

import json
from typing import Any

from app.core.server.errors import bad_param


def grammar_for(response_format: Any) -> str | None:
    """The GBNF for an OpenAI `response_format`, or None for plain text.

    Raises:
        ApiError: 400 naming `response_format` when it is malformed or the schema cannot
            be turned into a grammar.
    """
    from llama_cpp import llama_grammar  # here, not at import: the app's GUI starts without it

    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise bad_param("response_format", "response_format must be an object")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return str(llama_grammar.JSON_GBNF)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise bad_param(
                "response_format",
                "response_format.json_schema must be an object with a 'schema' object",
            )
        schema = spec.get("schema") or {}
        try:
            return str(llama_grammar.json_schema_to_gbnf(json.dumps(schema)))
        except Exception as exc:  # the converter raises assorted errors for odd schemas
            raise bad_param(
                "response_format",
                f"this JSON schema cannot be enforced ({exc}); simplify it",
            ) from exc
    raise bad_param(
        "response_format",
        f"response_format.type must be 'text', 'json_object' or 'json_schema' (got {kind!r})",
    )
