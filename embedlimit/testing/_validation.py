"""Parse and validate an embeddings request body the way OpenAI's `POST /v1/embeddings` does.

OpenAI's API reference for embeddings sets the rules. `input` is a string, an array of strings,
an array of token ids or an array of token arrays. A request has at most 2048 inputs of at most
8192 tokens each, and at most 300,000 tokens in all. `encoding_format` is `float` or `base64`,
and only the text-embedding-3 models accept `dimensions`. The messages follow those observed
from the live API:

- an empty string: 400 `'$.input' is invalid. Please check the API reference: ...`, param and
  code null (openai-python issue reports, 2023 to 2025);
- too many tokens in one request: `Requested 375703 tokens, max 300000 tokens per request`,
  code `max_tokens_per_request`;
- an unknown model: 404 `The model `x` does not exist or you do not have access to it.`, code
  `model_not_found`.

OpenAI's messages do not say which input was bad. Here every problem with one input has
`param` "input" and a message that starts with `'$.input' is invalid: input[N]`, where N is the
0-based index of the first bad input, so a client can isolate it with the regular expression
`INPUT_INDEX_PATTERN`. For an input over the token limit the message then quotes OpenAI's own
sentence ("This model's maximum context length is 8192 tokens, however you requested ...").
Unknown body keys (`user`, and the extra keys APOC sends) are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from embedlimit._tokens import count_tokens, get_encoding
from embedlimit.testing._models import EmbeddingModel

__all__ = [
    "INPUT_INDEX_PATTERN",
    "ApiError",
    "EmbeddingRequest",
    "RequestRules",
    "parse_embedding_request",
]

INPUT_INDEX_PATTERN = re.compile(r"'\$\.input' is invalid: input\[(\d+)\]")
"""Matches a per-input error message; group 1 is the index of the bad input."""

API_REFERENCE = "https://platform.openai.com/docs/api-reference"

EncodingFormat = Literal["float", "base64"]


class ApiError(Exception):
    """An error response in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}
        return {"error": error}


@dataclass(frozen=True)
class RequestRules:
    """The per-request limits, each configurable because OpenAI has changed them over time."""

    max_inputs: int = 2048
    max_input_tokens: int = 8192
    max_request_tokens: int = 300_000


@dataclass(frozen=True)
class EmbeddingRequest:
    """A valid request: the text of each input (token arrays decoded) and its token count."""

    model: EmbeddingModel
    texts: list[str]
    token_counts: list[int]
    encoding_format: EncodingFormat
    dimensions: int | None

    @property
    def total_tokens(self) -> int:
        return sum(self.token_counts)

    @property
    def output_dimension(self) -> int:
        return self.dimensions if self.dimensions is not None else self.model.dimension


def parse_embedding_request(
    raw_body: bytes,
    models: Mapping[str, EmbeddingModel],
    rules: RequestRules,
    *,
    model_override: str | None = None,
) -> EmbeddingRequest:
    """Parse a request body; raise ApiError with OpenAI's status and body for anything invalid.

    `model_override` is the model an Azure deployment maps to; the body's `model` is then ignored.
    """
    body = _load_json_object(raw_body)
    model = _parse_model(model_override if model_override is not None else body.get("model"), models)
    encoding_format = _parse_encoding_format(body.get("encoding_format"))
    dimensions = _parse_dimensions(body.get("dimensions"), model)
    texts, token_counts = _parse_inputs(body.get("input"), rules)
    return EmbeddingRequest(model, texts, token_counts, encoding_format, dimensions)


def _load_json_object(raw_body: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw_body)
    except orjson.JSONDecodeError:
        message = (
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload; "
            "send the body as JSON with the header Content-Type: application/json."
        )
        raise ApiError(400, message) from None
    if not isinstance(body, dict):
        raise ApiError(400, f"The request body must be a JSON object, got {type(body).__name__}.")
    return body


def _parse_model(value: Any, models: Mapping[str, EmbeddingModel]) -> EmbeddingModel:
    if value is None:
        raise ApiError(400, "you must provide a model parameter", param="model")
    if not isinstance(value, str):
        raise ApiError(400, f"Invalid type for 'model': expected a string, got {type(value).__name__}.")
    model = models.get(value)
    if model is None:
        message = f"The model `{value}` does not exist or you do not have access to it."
        raise ApiError(404, message, code="model_not_found")
    return model


def _parse_encoding_format(value: Any) -> EncodingFormat:
    if value is None or value == "float":
        return "float"
    if value == "base64":
        return "base64"
    message = f"Invalid value for 'encoding_format': {value!r}. Supported values are: 'float' and 'base64'."
    raise ApiError(400, message, param="encoding_format")


def _parse_dimensions(value: Any, model: EmbeddingModel) -> int | None:
    if value is None:
        return None
    if not model.supports_dimensions:
        raise ApiError(400, f"This model ({model.name}) does not support specifying dimensions.", param="dimensions")
    if isinstance(value, bool) or not isinstance(value, int):
        message = f"Invalid type for 'dimensions': expected an integer, got {type(value).__name__}."
        raise ApiError(400, message, param="dimensions")
    if not 1 <= value <= model.dimension:
        message = (
            f"Invalid value for 'dimensions' = {value}. "
            f"Must be between 1 and {model.dimension} for {model.name}."
        )
        raise ApiError(400, message, param="dimensions")
    return value


def _input_error(index: int, problem: str) -> ApiError:
    return ApiError(400, f"'$.input' is invalid: input[{index}] {problem}", param="input")


def _parse_inputs(value: Any, rules: RequestRules) -> tuple[list[str], list[int]]:
    items = _split_inputs(value)
    if len(items) > rules.max_inputs:
        message = (
            f"'$.input' is invalid: {len(items)} inputs in one request, over the maximum of "
            f"{rules.max_inputs}. Split the inputs over several requests."
        )
        raise ApiError(400, message, param="input")

    texts, token_counts = _texts_and_counts(items)
    _check_token_counts(token_counts, rules)
    return texts, token_counts


def _split_inputs(value: Any) -> list[str | list[int]]:
    """Turn `input` into a list of inputs, each a string or a list of token ids."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        message = (
            f"'$.input' is invalid: expected a string or an array, got {type(value).__name__}. "
            f"Please check the API reference: {API_REFERENCE}."
        )
        raise ApiError(400, message, param="input")
    if not value:
        message = f"'$.input' is invalid: the input array is empty. Send at least one input. See {API_REFERENCE}."
        raise ApiError(400, message, param="input")
    if all(_is_token_id(item) for item in value):
        return [value]
    items: list[str | list[int]] = []
    for index, item in enumerate(value):
        if not isinstance(item, (str, list)):
            raise _input_error(index, f"is a {type(item).__name__}; expected a string or an array of token ids.")
        items.append(item)
    return items


def _is_token_id(item: Any) -> bool:
    return isinstance(item, int) and not isinstance(item, bool)


def _texts_and_counts(items: Sequence[str | list[int]]) -> tuple[list[str], list[int]]:
    for index, item in enumerate(items):
        if len(item) == 0:
            kind = "is an empty string" if isinstance(item, str) else "is an empty token array"
            raise _input_error(index, f"{kind}. Remove it or replace it with non-empty text.")

    # count_tokens per text, not count_tokens_batch: for 2048 texts of about 15 tokens the
    # batch call's thread pool took 29 ms against 11 ms for the loop, and long texts tie.
    texts: list[str] = []
    counts: list[int] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            texts.append(item)
            counts.append(count_tokens(item))
        else:
            texts.append(_decode_token_array(index, item))
            counts.append(len(item))
    return texts, counts


def _decode_token_array(index: int, tokens: list[Any]) -> str:
    """Decode a token array to its text, so it gets the same vector as the text itself."""
    for token in tokens:
        if not _is_token_id(token) or token < 0:
            raise _input_error(index, f"contains {token!r}; a token array must contain non-negative integers.")
    encoding = get_encoding()
    if encoding is None:
        # NOTE: without an offline cl100k_base encoding a token array cannot be decoded. Its vector
        # is then derived from the ids, so it differs from the vector of the same text.
        return "tokens:" + ",".join(str(token) for token in tokens)
    try:
        return encoding.decode(tokens)
    except (KeyError, ValueError, OverflowError):
        raise _input_error(index, f"contains a token id that {encoding.name} does not define.") from None


def _check_token_counts(token_counts: Sequence[int], rules: RequestRules) -> None:
    for index, count in enumerate(token_counts):
        if count > rules.max_input_tokens:
            problem = (
                f"has {count} tokens, over the maximum of {rules.max_input_tokens} per input. "
                f"This model's maximum context length is {rules.max_input_tokens} tokens, however you "
                f"requested {count} tokens ({count} in your prompt; 0 for the completion). "
                "Please reduce your prompt; or completion length."
            )
            raise _input_error(index, problem)

    total = sum(token_counts)
    if total > rules.max_request_tokens:
        message = f"Requested {total} tokens, max {rules.max_request_tokens} tokens per request"
        raise ApiError(400, message, param="input", code="max_tokens_per_request")
