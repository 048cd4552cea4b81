"""Tool calling through the official openai client. SmolLM2's template knows no tools, so
the server describes them in the system message and holds the reply to the generic JSON
format: a forced or required call always parses, names an offered function and has
arguments that validate against its schema."""

import concurrent.futures
import json

import jsonschema
import openai
import pytest

from test_openai import error_of

MODEL = "SmolLM2-135M-Instruct.Q4_1"

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Current time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 40}},
                   "required": ["zone"]}}}
BOOK = {"type": "function", "function": {
    "name": "book_table", "description": "Book a restaurant table",
    "parameters": {"type": "object", "properties": {
        "restaurant": {"type": "string", "maxLength": 60},
        "guests": {"type": "integer", "minimum": 1, "maximum": 12},
        "time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
        "notes": {"type": "string", "maxLength": 80}},
        "required": ["restaurant", "guests", "time"]}}}
TOOLS = [WEATHER, TIME, BOOK]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
PROMPTS = [
    "What is the weather like in Paris today?",
    "What time is it in Tokyo?",
    "Book a table for four at Luigi's at 19:30.",
]


def ask(client, prompt, choice, **kwargs):
    # Room for the longest call the schemas allow (a booking's 60-character restaurant
    # and 80-character notes may take a token per character): with 160 tokens, one
    # sampled call in four runs of this file ended without finishing its call.
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], tools=TOOLS,
        tool_choice=choice, **{"max_tokens": 256, **kwargs})


def check_calls(choice, allowed):
    """The calls of a reply: each names an allowed tool, with arguments that validate."""
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls
    for call in calls:
        assert call.type == "function" and call.id
        assert call.function.name in allowed
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
    return calls


def test_forced_and_required_calls_fit_the_schema(client):
    jobs = [(prompt, name, seed) for prompt in PROMPTS for name in [*SCHEMAS, "required"]
            for seed in range(2)]

    def run(job):
        prompt, name, seed = job
        if name == "required":
            out = ask(client, prompt, "required", temperature=0.8, seed=seed)
            return check_calls(out.choices[0], SCHEMAS)
        forced = {"type": "function", "function": {"name": name}}
        out = ask(client, prompt, forced, temperature=0.8, seed=seed)
        return check_calls(out.choices[0], [name])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, jobs))
    print(f"tool calls: {len(results)}/{len(jobs)} replies are calls that validate")
    # At temperature 0 the weather call takes its city from the question.
    greedy = ask(client, PROMPTS[0], {"type": "function", "function": {"name": "get_weather"}}, temperature=0)
    call = check_calls(greedy.choices[0], ["get_weather"])[0]
    assert json.loads(call.function.arguments)["city"] == "Paris"


def test_auto_calls_or_answers_and_none_answers(client):
    called = 0
    for prompt in PROMPTS:
        choice = ask(client, prompt, "auto", temperature=0).choices[0]
        if choice.message.tool_calls:
            called += len(check_calls(choice, SCHEMAS))
        else:
            assert choice.finish_reason == "stop" and choice.message.content
    assert called > 0
    out = ask(client, PROMPTS[0], "none", temperature=0, max_tokens=24)
    assert out.choices[0].message.tool_calls is None
    assert out.choices[0].message.content and not out.choices[0].message.content.startswith("{")


def test_streamed_calls_match_whole_replies(client):
    whole = ask(client, PROMPTS[2], "required", temperature=0).choices[0]
    stream = ask(client, PROMPTS[2], "required", temperature=0, stream=True)
    calls, reasons = {}, []
    for chunk in stream:
        choice = chunk.choices[0]
        reasons.append(choice.finish_reason)
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"name": "", "arguments": ""})
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""
    assert reasons[-1] == "tool_calls"
    want = [{"name": c.function.name, "arguments": c.function.arguments} for c in whole.message.tool_calls]
    assert [calls[i] for i in sorted(calls)] == want


def test_a_tool_result_continues_the_conversation(client):
    messages = [{"role": "user", "content": PROMPTS[0]}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER],
                                           tool_choice="required", temperature=0, max_tokens=60)
    call = first.choices[0].message.tool_calls[0]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"celsius": 21, "sky": "sunny"})})
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER],
                                            temperature=0, max_tokens=60)
    choice = second.choices[0]
    assert choice.message.content or choice.message.tool_calls
    # The second turn's prompt holds the first's, call and result: longer, partly cached.
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + 20
    assert second.usage.prompt_tokens_details.cached_tokens > 0


def test_tool_errors(server, client):
    def bad(match, **kwargs):
        with pytest.raises(openai.BadRequestError, match=match) as e:
            client.chat.completions.create(model=MODEL, messages=kwargs.pop("messages", [{"role": "user", "content": "hi"}]),
                                           **kwargs)
        return e.value

    e = bad("not among the tools", tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "fly"}})
    assert e.param == "tool_choice"
    e = bad("a name is needed", tools=[WEATHER, {"type": "function", "function": {"description": "x"}}])
    assert e.param == "tools[1].function.name"
    bad("tool_choice", tools=[WEATHER], tool_choice="sometimes")
    bad("cannot be combined with tools", tools=[WEATHER], response_format={"type": "json_object"})
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                     "function": {"name": "get_weather", "arguments": "{oops"}}]}]
    bad(r"messages\[1\].tool_calls\[0\].function.arguments is not JSON", messages=history, tools=[WEATHER])
