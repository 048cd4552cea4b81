"""Schema-constrained output: every response parses and validates against its schema."""

import concurrent.futures
import json

import jsonschema
import openai
import pytest


def obj(properties, required=None):
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def text(n):
    return {"type": "string", "maxLength": n}


SCHEMAS = {
    "person": obj({"name": text(20), "age": {"type": "integer", "minimum": 0, "maximum": 120}}),
    "color_enum": obj({"color": {"enum": ["red", "green", "blue"]}}),
    "int_array": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 100},
                  "minItems": 1, "maxItems": 5},
    "nested": obj({"user": obj({"id": {"type": "integer", "minimum": 1}, "email": text(30)}),
                   "active": {"type": "boolean"}}),
    "optional_fields": obj({"title": text(30), "subtitle": text(30),
                            "year": {"type": "integer", "minimum": 1900, "maximum": 2100}},
                           required=["title"]),
    "bounded_number": obj({"temperature": {"type": "number", "minimum": -50, "maximum": 60}}),
    "objects_in_array": obj({"items": {"type": "array", "maxItems": 3, "items": obj(
        {"name": text(15), "price": {"type": "number", "minimum": 0, "maximum": 1000}})}}),
    "boolean": obj({"ok": {"type": "boolean"}}),
    "top_level_enum": {"type": "string", "enum": ["yes", "no", "maybe"]},
    "const": obj({"kind": {"const": "point"}, "x": {"type": "integer", "minimum": -9, "maximum": 9},
                  "y": {"type": "integer", "minimum": -9, "maximum": 9}}),
    "any_of": obj({"value": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 99}, text(10)]}}),
    "nullable": obj({"middle_name": {"type": ["string", "null"], "maxLength": 10}}),
    "tuple": {"type": "array", "prefixItems": [text(10), {"type": "integer", "minimum": 0, "maximum": 99}],
              "items": False, "minItems": 2},
    "pattern": obj({"zip": {"type": "string", "pattern": "^[0-9]{5}$"}}),
    "matrix": obj({"matrix": {"type": "array", "maxItems": 3, "items": {
        "type": "array", "maxItems": 3, "items": {"type": "integer", "minimum": 0, "maximum": 9}}}}),
    "refs": {"$defs": {"pt": obj({"x": {"type": "integer", "minimum": 0, "maximum": 9},
                                  "y": {"type": "integer", "minimum": 0, "maximum": 9}})},
             **obj({"a": {"$ref": "#/$defs/pt"}, "b": {"$ref": "#/$defs/pt"}})},
    "exclusive_bounds": obj({"score": {"type": "number", "exclusiveMinimum": 0, "maximum": 10}}),
    "product": obj({"id": {"type": "integer", "minimum": 1, "maximum": 9999}, "name": text(15),
                    "tags": {"type": "array", "maxItems": 3, "items": text(10)},
                    "price": {"type": "number", "minimum": 0, "maximum": 500}}),
    "exact_pair": {"type": "array", "items": text(8), "minItems": 2, "maxItems": 2},
    "deep": obj({"a": obj({"b": obj({"c": obj({"d": {"type": "integer", "minimum": 0, "maximum": 9}})})})}),
    "int_enum": obj({"level": {"enum": [1, 2, 3]}}),
    "mixed_optional": obj({"city": text(20), "population": {"type": "integer", "minimum": 0, "maximum": 10**7},
                           "capital": {"type": "boolean"}}, required=["city"]),
}
PROMPTS = [
    "Answer in JSON.",
    "Give a realistic example as JSON.",
    "Reply with JSON for a small web shop database.",
]


def test_outputs_parse_and_validate(client):
    jobs = [(name, prompt, seed) for name in SCHEMAS for seed, prompt in enumerate(PROMPTS)]

    def run(job):
        name, prompt, seed = job
        out = client.chat.completions.create(
            model="SmolLM2-135M-Instruct.Q4_1",
            messages=[{"role": "user", "content": prompt}],
            temperature=0.8, seed=seed, max_tokens=200,
            response_format={"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name]}},
        )
        choice = out.choices[0]
        value = json.loads(choice.message.content)
        jsonschema.validate(value, SCHEMAS[name])
        return choice.finish_reason

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        reasons = list(pool.map(run, jobs))  # re-raises the first invalid output
    print(f"structured output: {len(reasons)}/{len(jobs)} outputs parse and validate "
          f"({len(SCHEMAS)} schemas x {len(PROMPTS)} prompts)")
    assert reasons == ["stop"] * len(jobs)


def test_json_object_mode(client):
    out = client.chat.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1",
        messages=[{"role": "user", "content": "Describe a cat as a JSON object with two fields."}],
        temperature=0, max_tokens=120, response_format={"type": "json_object"},
    )
    if out.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(out.choices[0].message.content), dict)
    else:
        assert out.choices[0].message.content.startswith("{")


def test_an_unusable_schema_is_a_400(client):
    with pytest.raises(openai.BadRequestError, match="invalid constraint: Invalid type: frobnicate"):
        client.chat.completions.create(
            model="SmolLM2-135M-Instruct.Q4_1", messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frobnicate"}}},
        )
