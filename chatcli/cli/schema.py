"""--schema: ask for JSON that matches a JSON Schema, and check that the reply does.

The schema goes with the request as `response_format` (type `json_schema`),
which servers use to steer or constrain the model; the reply is checked here
anyway, because not every server enforces it and a reply can be cut short.
Checking is done by the `jsonschema` library, imported only when --schema is
used, so that every other start stays fast.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import referencing.exceptions
import referencing.jsonschema

from chatcli.base.errors import UsageError
from chatcli.base.text import strip_controls

MAX_SCHEMA_BYTES = 1 << 20  # a schema is a page or two; a bigger file is surely the wrong one
_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n(.*?)\n?[ \t]*```", re.DOTALL | re.IGNORECASE)

# Where subschemas live, so that the walks below never mistake a property's name for a keyword.
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
# Keywords OpenAI's strict mode refuses (it takes anyOf, $ref and $defs, but not these).
NOT_IN_STRICT = ("allOf", "not", "if", "then", "else", "patternProperties", "dependentRequired",
                 "dependentSchemas", "unevaluatedProperties", "unevaluatedItems", "oneOf")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains",
               "propertyNames", "unevaluatedItems", "unevaluatedProperties", "additionalItems")


@dataclass(frozen=True)
class Schema:
    """A checked schema file, and how to ask for it."""

    shown: str  # the path as the user gave it, for sentences
    body: dict[str, Any]
    name: str  # response_format's json_schema.name: the file stem, as the API allows it
    not_strict: str | None  # why strict mode is off, or None when the schema meets its rules

    @property
    def strict(self) -> bool:
        return self.not_strict is None

    def response_format(self) -> dict[str, Any]:
        return {"type": "json_schema",
                "json_schema": {"name": self.name, "schema": self.body, "strict": self.strict}}


@dataclass
class Verdict:
    """What checking a reply found: the parsed JSON, and each way it fails the schema."""

    schema: Schema
    parsed: Any = None
    is_json: bool = False
    errors: list[dict[str, str | None]] = field(default_factory=list)  # {"path", "message"}, the first the worst

    @property
    def valid(self) -> bool:
        return self.is_json and not self.errors

    def record(self) -> dict[str, Any]:
        """The `schema` field of --json's record."""
        return {"file": self.schema.shown, "valid": self.valid, "errors": self.errors,
                "parsed": self.parsed if self.is_json else None}

    def problem(self, finish_reason: str | None) -> str:
        """One sentence for stderr on why the reply does not pass (call only when it does not)."""
        name = self.schema.shown
        if finish_reason == "length":
            return (f"The reply reached the max_tokens limit before its JSON was finished, so it does not "
                    f"match {name}; raise --max-tokens and ask again.")
        if finish_reason == "content_filter":
            return f"The server's content filter stopped the reply, so it does not match {name}."
        first = self.errors[0]
        if not self.is_json:
            return f"The reply is not JSON, so it cannot match {name}: {first['message']}."
        more = len(self.errors) - 1
        also = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        return f"The reply does not match {name}: at {first['path']}, {first['message']}{also}."


def load_schema(path: str) -> Schema:
    """Read and check a schema file; UsageError, naming the file, when it cannot be used."""
    import jsonschema  # lazy: keeps jsonschema off the startup path

    shown = strip_controls(path)
    where = Path(path).expanduser()
    try:
        if not where.exists() or where.is_dir():
            raise UsageError(f"The schema file {shown} {'is a directory' if where.exists() else 'does not exist'}.")
        with where.open("rb") as f:  # a pipe too, as in --schema <(jq ...); read no further than a schema needs
            data = f.read(MAX_SCHEMA_BYTES + 1)
        if len(data) > MAX_SCHEMA_BYTES:
            raise UsageError(f"The schema file {shown} is over {MAX_SCHEMA_BYTES >> 20} MB, which no schema needs.")
        text = data.decode("utf-8")
    except OSError as exc:
        raise UsageError(f"Cannot read the schema file {shown}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise UsageError(f"The schema file {shown} is not UTF-8 text.") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"The schema file {shown} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno}.") from None
    except RecursionError:
        raise UsageError(f"The schema file {shown} is nested too deeply to read.") from None
    if not isinstance(body, dict):
        raise UsageError(f"The schema file {shown} must hold a JSON object, as in {{\"type\": \"object\", ...}}.")
    if not isinstance(body.get("$schema", ""), str):
        raise UsageError(f"The schema in {shown} is not valid JSON Schema: $schema must be a string, the URI of a draft.")
    try:
        validator = jsonschema.validators.validator_for(body)
        validator.check_schema(body)
        broken = _broken_ref(body, validator)
        not_strict = strict_problem(body)
    except jsonschema.SchemaError as exc:
        raise UsageError(f"The schema in {shown} is not valid JSON Schema: at {_path(exc.json_path)}, "
                         f"{_short(exc.message)}.") from None
    except RecursionError:
        raise UsageError(f"The schema in {shown} is nested too deeply to check.") from None
    if broken:
        raise UsageError(f"The schema in {shown} cannot be used: {broken}.")
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", where.stem)[:64].strip("_") or "schema"
    return Schema(shown=shown, body=body, name=name, not_strict=not_strict)


def strict_problem(schema: dict[str, Any]) -> str | None:
    """Why the schema breaks OpenAI's strict-mode rules, or None when it keeps them.

    Strict mode wants an object at the root, and every object to list all its
    properties in `required` and to set `additionalProperties: false`. OpenAI
    refuses a strict request whose schema breaks them (HTTP 400), so such a
    schema is sent with strict false: the model is steered but not bound, and
    the check of the reply says whether it kept to the schema.
    """
    if schema.get("type") != "object":
        return "the root is not \"type\": \"object\""
    for where, node in _walk(schema, "$"):
        if not isinstance(node, dict):
            return f"at {where}, a schema is true or false"
        beyond = next((key for key in NOT_IN_STRICT if key in node), None)
        if beyond is not None:
            return f"at {where}, strict mode does not take {beyond}"
        types = node.get("type")
        if types == "object" or (isinstance(types, list) and "object" in types) or "properties" in node:
            properties = node.get("properties", {})
            if node.get("additionalProperties") is not False:
                return f"at {where}, additionalProperties is not false"
            if not isinstance(properties, dict) or set(node.get("required", [])) != set(properties):
                return f"at {where}, not every property is required"
    return None


def check_reply(reply: str, schema: Schema) -> Verdict:
    """Parse the reply as JSON (inside a ```json fence too, as some local servers send it) and validate it."""
    verdict = Verdict(schema)
    fenced = _FENCE.fullmatch(reply.strip())
    try:
        verdict.parsed = _parse(fenced[1] if fenced else reply)
    except ValueError as exc:  # JSONDecodeError, NaN / Infinity (or 1e400), which JSON does not have
        inside = _FENCE.findall(reply) if not fenced else []
        if len(inside) == 1:  # "Here it is: ```json {...}``` Hope it helps", as local models write
            try:
                verdict.parsed = _parse(inside[0])
            except (ValueError, RecursionError):
                pass
            else:
                return _validate(verdict, schema)
        message = (f"{exc.msg} at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError)
                   else str(exc))
        verdict.errors.append({"path": None, "message": strip_controls(message)})
        return verdict
    except RecursionError:
        verdict.errors.append({"path": None, "message": "it is nested too deeply to read"})
        return verdict
    return _validate(verdict, schema)


def _parse(text: str) -> Any:
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite)


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large for a JSON number")
    return value


def _validate(verdict: Verdict, schema: Schema) -> Verdict:
    import jsonschema  # lazy: keeps jsonschema off the startup path

    verdict.is_json = True
    validator = jsonschema.validators.validator_for(schema.body)(schema.body)
    try:
        errors = list(validator.iter_errors(verdict.parsed))
    except referencing.exceptions.Unresolvable as exc:  # a $ref load_schema could not foresee
        verdict.errors.append({"path": "$", "message": f"the schema could not be followed: {_short(str(exc))}"})
        return verdict
    except RecursionError:
        verdict.errors.append({"path": "$", "message": "it is nested too deeply to check"})
        verdict.parsed, verdict.is_json = None, False  # nor could it be written out again
        return verdict
    if errors:
        worst = jsonschema.exceptions.best_match(errors)
        errors.sort(key=lambda e: e is not worst)  # the worst first, then in the order found
        verdict.errors = [{"path": _path(e.json_path), "message": _short(e.message)} for e in errors]
    return verdict


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _walk(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every schema in a schema, with its path, by the keywords that hold subschemas."""
    yield where, node
    if not isinstance(node, dict):
        return
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            for name, sub in node[key].items():
                yield from _walk(sub, f"{where}.{key}.{name}")
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            for i, sub in enumerate(node[key]):
                yield from _walk(sub, f"{where}.{key}[{i}]")
    for key in _SCHEMA_ONE:
        sub = node.get(key)
        if isinstance(sub, dict):
            yield from _walk(sub, f"{where}.{key}")
        elif key == "items" and isinstance(sub, list):  # draft 4 to 7 tuples
            for i, item in enumerate(sub):
                yield from _walk(item, f"{where}.items[{i}]")


def _broken_ref(body: dict[str, Any], validator: Any) -> str | None:
    """A $ref that leads nowhere, or out of the file (chatcli fetches nothing), said as a clause."""

    spec = referencing.jsonschema.specification_with(validator.META_SCHEMA.get("$schema", ""),
                                                     default=referencing.jsonschema.DRAFT202012)
    resolver = referencing.Registry().resolver_with_root(spec.create_resource(body))
    for where, node in _walk(body, "$"):
        ref = node.get("$ref") if isinstance(node, dict) else None
        if not isinstance(ref, str):
            continue
        if not ref.startswith("#"):
            return f"at {_path(where)}, $ref {_short(repr(ref))} points outside the file, and chatcli fetches nothing"
        try:
            resolver.lookup(ref)
        except referencing.exceptions.Unresolvable:
            return f"at {_path(where)}, $ref {_short(repr(ref))} points to nothing in the file"
    return None


def _path(path: str) -> str:
    return _short(strip_controls(path))


def _short(text: str, limit: int = 160) -> str:
    """A message fit for one sentence: jsonschema's can quote a whole reply back."""
    text = strip_controls(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"
