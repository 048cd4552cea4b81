"""`synapse serve` through the official openai client: the same output as the CLI,
streaming, logprobs, the prefix cache, and every error the issue lists."""

import concurrent.futures
import json
import math
import time

import httpx
import openai
import pytest

from conftest import Server

PROMPT = "The capital of France is"
QUESTION = "What is the capital of France?"


def test_chat_gives_the_cli_reply(client, cli):
    want = cli("chat", "--temperature", "0", "-n", "24", stdin=QUESTION + "\n").split("\n", 1)[1].rstrip("\n")
    out = client.chat.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1",
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=24,
    )
    assert out.choices[0].message.content == want
    assert out.choices[0].message.role == "assistant"
    assert out.object == "chat.completion" and out.id.startswith("chatcmpl-")
    assert out.usage.completion_tokens == 24 and out.usage.prompt_tokens > 20
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_completion_gives_the_cli_tokens(client, cli):
    want = cli.json("run", "--prompt", PROMPT, "--temperature", "0", "-n", "16", "--ignore-eos")
    out = client.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1", prompt=PROMPT, temperature=0, max_tokens=16,
        extra_body={"ignore_eos": True},
    )
    assert out.choices[0].text == want["text"]
    assert out.choices[0].finish_reason == "length"
    assert out.usage.prompt_tokens == len(want["prompt_tokens"])
    # Token ids as the prompt.
    by_ids = client.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1", prompt=want["prompt_tokens"],
        temperature=0, max_tokens=16, extra_body={"ignore_eos": True},
    )
    assert by_ids.choices[0].text == want["text"]


def test_streams_match_whole_responses(client):
    whole = client.chat.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1", messages=[{"role": "user", "content": QUESTION}],
        temperature=0, max_tokens=20,
    )
    chunks = list(client.chat.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1", messages=[{"role": "user", "content": QUESTION}],
        temperature=0, max_tokens=20, stream=True, stream_options={"include_usage": True},
    ))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20

    pieces = list(client.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1", prompt=PROMPT, temperature=0, max_tokens=12, stream=True,
    ))
    whole = client.completions.create(model="SmolLM2-135M-Instruct.Q4_1", prompt=PROMPT, temperature=0, max_tokens=12)
    assert "".join(p.choices[0].text for p in pieces) == whole.choices[0].text


def test_sampling_parameters(client):
    def complete(**kw):
        return client.completions.create(
            model="SmolLM2-135M-Instruct.Q4_1", prompt="Once upon a time", max_tokens=24, **kw
        ).choices[0]

    # A seed replays the same draws; the penalties change the text. The first request
    # leaves the prompt in the prefix cache, so that both compared evaluate its last token
    # alone: a pass of one row and one of several may round differently (AVX-512 kernels).
    complete(temperature=0)
    a, b = complete(temperature=1.0, seed=11), complete(temperature=1.0, seed=11)
    assert a.text == b.text
    plain = complete(temperature=0)
    penalised = complete(temperature=0, frequency_penalty=2.0, presence_penalty=2.0)
    assert plain.text != penalised.text
    # A stop string ends the text before it.
    stopped = client.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1", prompt=PROMPT, temperature=0, max_tokens=16, stop=["Paris"]
    ).choices[0]
    assert stopped.text == "" or "Paris" not in stopped.text
    assert stopped.finish_reason == "stop"
    # llama-server's extras.
    extra = complete(temperature=0.7, seed=3, extra_body={"top_k": 1, "min_p": 0.1, "repeat_penalty": 1.1})
    assert extra.text


def test_logprobs(client):
    out = client.chat.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1", messages=[{"role": "user", "content": QUESTION}],
        temperature=0, max_tokens=6, logprobs=True, top_logprobs=3,
    )
    content = out.choices[0].logprobs.content
    assert len(content) == 6
    for entry in content:
        assert len(entry.top_logprobs) == 3
        # Greedy: the token is the most likely one.
        assert entry.token == entry.top_logprobs[0].token
        assert math.isclose(entry.logprob, entry.top_logprobs[0].logprob)
        assert entry.logprob <= 0
    text = client.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1", prompt=PROMPT, temperature=0, max_tokens=4, logprobs=2
    ).choices[0]
    assert len(text.logprobs.tokens) == 4 and len(text.logprobs.top_logprobs[0]) == 2
    assert "".join(text.logprobs.tokens) == text.text


def test_second_chat_turn_reuses_the_first(client):
    messages = [{"role": "user", "content": "Hi! " + QUESTION}]
    first = client.chat.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1", messages=messages, temperature=0, max_tokens=32
    )
    messages += [first.choices[0].message.model_dump(include={"role", "content"}),
                 {"role": "user", "content": "And of Italy?"}]
    start = time.perf_counter()
    stream = client.chat.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1", messages=messages, temperature=0, max_tokens=32,
        stream=True, stream_options={"include_usage": True},
    )
    first_token_s = None
    for chunk in stream:
        if first_token_s is None and chunk.choices and chunk.choices[0].delta.content:
            first_token_s = time.perf_counter() - start
        usage = chunk.usage
    cached = usage.prompt_tokens_details.cached_tokens
    print(f"second turn: {cached} of {usage.prompt_tokens} prompt tokens cached, "
          f"time to first token {first_token_s * 1000:.1f} ms")
    assert cached >= first.usage.prompt_tokens + first.usage.completion_tokens - 2


def test_other_endpoints(server, client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["SmolLM2-135M-Instruct.Q4_1"]
    tokens = httpx.post(server.url + "/tokenize", json={"content": PROMPT}).json()["tokens"]
    assert len(tokens) == 5
    assert httpx.post(server.url + "/detokenize", json={"tokens": tokens}).json()["content"] == PROMPT
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    m = server.metrics()
    for name in ("requests_total", "prompt_tokens_total", "generated_tokens_total", "queue_depth",
                 "busy_slots", "kv_bytes_in_use", "generated_tokens_per_second"):
        assert name in m


def error_of(response):
    body = response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return body["error"]


def test_errors(server, client):
    url = server.url + "/v1/chat/completions"
    # Malformed JSON.
    r = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "invalid request body" in error_of(r)["message"]
    # Unknown model, invalid parameter.
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="temperature must be between"):
        client.chat.completions.create(model="SmolLM2-135M-Instruct.Q4_1",
                                       messages=[{"role": "user", "content": "hi"}], temperature=5)
    with pytest.raises(openai.BadRequestError, match="n = 1"):
        client.chat.completions.create(model="SmolLM2-135M-Instruct.Q4_1",
                                       messages=[{"role": "user", "content": "hi"}], n=2)
    # A prompt over the context, with both counts.
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="SmolLM2-135M-Instruct.Q4_1", prompt="word " * 2000)
    assert e.value.code == "context_length_exceeded" and e.value.param == "prompt"
    assert "the context holds 1024" in str(e.value) and "tokens" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="SmolLM2-135M-Instruct.Q4_1",
                                       messages=[{"role": "user", "content": "word " * 2000}])
    assert e.value.code == "context_length_exceeded" and e.value.param == "messages"
    # A body over the limit: 413, in OpenAI's error shape like every other error.
    r = httpx.post(url, content=b"x" * (9 << 20), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "length limit exceeded" in error_of(r)["message"]


def test_api_key():
    server = Server("--parallel", "1", "--ctx-size", "256", "--api-key", "sesame")
    try:
        with pytest.raises(openai.AuthenticationError):
            server.client(api_key="wrong").models.list()
        r = httpx.get(server.url + "/v1/models")
        assert r.status_code == 401 and error_of(r)["code"] == "invalid_api_key"
        assert server.client(api_key="sesame").models.list().data
        assert httpx.get(server.url + "/health").status_code == 200
    finally:
        server.stop()


def test_a_full_queue_answers_503_with_retry_after():
    server = Server("--parallel", "1", "--queue", "1", "--ctx-size", "512")
    try:
        body = {"prompt": "Once upon a time", "max_tokens": 200, "ignore_eos": True}
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(
                lambda _: httpx.post(server.url + "/v1/completions", json=body, timeout=120), range(6)))
        busy = [r for r in responses if r.status_code == 503]
        assert busy and all(r.headers["retry-after"] == "1" for r in busy)
        assert error_of(busy[0])["type"] == "server_overloaded"
        assert any(r.status_code == 200 for r in responses)
        assert server.wait_idle()["busy_slots"] == 0
    finally:
        server.stop()


def test_a_client_that_goes_away_frees_its_slot(server):
    before = server.metrics()["requests_cancelled_total"]
    with httpx.stream("POST", server.url + "/v1/completions", timeout=60, json={
        "prompt": "Once upon a time", "max_tokens": 900, "stream": True, "ignore_eos": True,
    }) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
    m = server.wait_idle(5.0)
    assert m["busy_slots"] == 0
    assert m["requests_cancelled_total"] == before + 1


def test_load_16_clients_by_10_requests(server):
    """Bounded load: 16 concurrent clients x 10 requests, streamed and not: no errors,
    resident memory flat after warm-up, every slot free at the end."""
    client = server.client(timeout=300)

    def run(i):
        for j in range(10):
            prompt = f"Request {i}-{j}: tell me about the number {i * 10 + j}."
            if (i + j) % 2:
                stream = client.chat.completions.create(
                    model="SmolLM2-135M-Instruct.Q4_1", messages=[{"role": "user", "content": prompt}],
                    max_tokens=16, stream=True, seed=j,
                )
                assert any(c.choices and c.choices[0].finish_reason for c in stream)
            else:
                out = client.completions.create(model="SmolLM2-135M-Instruct.Q4_1", prompt=prompt,
                                                max_tokens=16, seed=j)
                assert out.usage.completion_tokens <= 16

    def round_of_load():
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(run, range(16)))  # re-raises any client's error

    round_of_load()  # warm-up: pages, buffers and the prefix cache fill
    warm = server.rss_bytes()
    start = time.perf_counter()
    round_of_load()
    elapsed = time.perf_counter() - start
    after = server.rss_bytes()
    m = server.wait_idle()
    print(f"load: 160 requests in {elapsed:.1f} s, RSS {warm >> 20} MiB after warm-up, {after >> 20} MiB after")
    assert after <= warm * 1.10
    assert m["busy_slots"] == 0 and m["queue_depth"] == 0
