"""Each hardening rule against a real server on 127.0.0.1: auth, validation, body limit, queue bound, readiness,
metrics, and no prompts in the logs."""

from __future__ import annotations

import asyncio
import base64
import logging

import httpx
import pytest

API_KEY = "test-key-123"  # the `server` fixture's key
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = "/openai/v1/chat/completions"


def chat_body(content, **extra):
    return {"model": "medvlm", "messages": [{"role": "user", "content": content}], "max_tokens": 4, **extra}


def image_body(url):
    return chat_body([{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "what is it?"}])


def assert_error(response, status, code=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code
    return error


def test_api_key(server):
    assert_error(httpx.post(server + CHAT, json=chat_body("hi")), 401, "missing_api_key")
    assert httpx.get(server + "/openai/v1/models").headers["www-authenticate"] == "Bearer"
    assert_error(httpx.post(server + CHAT, json=chat_body("hi"), headers={"Authorization": "Bearer nope"}), 403)
    assert_error(httpx.get(server + "/v2/models/medvlm", headers={"X-API-Key": "nope"}), 403)
    assert httpx.get(server + "/v2/models/medvlm", headers={"X-API-Key": API_KEY}).status_code == 200
    # Probes and metrics need no key.
    for path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
        assert httpx.get(server + path).status_code == 200


def test_request_validation(server, png_data_uri):
    post = lambda body, **kw: httpx.post(server + CHAT, headers={**AUTH, **kw.pop("headers", {})}, **({"json": body} if body is not None else kw))  # noqa: E731
    assert_error(post(None, content=b'{"model": "medvlm", "messages": [', headers={"content-type": "application/json"}), 400, "invalid_json")
    assert_error(post(image_body("data:image/png;base64,@@@not-base64@@@")), 400, "bad_base64")
    assert_error(post(image_body("data:image/gif;base64," + base64.b64encode(b"GIF89a").decode())), 400, "unsupported_image")
    assert_error(post(image_body("https://example.org/scan.png")), 400, "unsupported_image")
    garbage = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode()
    assert_error(post(image_body(garbage)), 400, "invalid_image")
    assert_error(post(chat_body("hi", max_tokens=17)), 400, "max_tokens_exceeded")
    assert_error(post(chat_body("pneumonia " * 1500)), 400, "context_length_exceeded")  # > 768 tokens
    assert_error(post({"model": "medvlm", "messages": []}), 400)
    assert_error(post({**chat_body("hi"), "model": "other"}), 404, "model_not_found")
    assert_error(post({**chat_body("hi"), "n": 2}), 400)
    # The KServe v2 route answers malformed JSON with 400 as well.
    v2 = httpx.post(server + "/v2/models/medvlm/infer", content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert_error(v2, 400)
    too_many = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}], "parameters": {"max_tokens": 999}}
    assert_error(httpx.post(server + "/v2/models/medvlm/infer", json=too_many, headers=AUTH), 400)
    bad_image = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]},
                            {"name": "image", "shape": [1], "datatype": "BYTES", "data": ["data:image/png;base64,@@"]}]}
    assert_error(httpx.post(server + "/v2/models/medvlm/infer", json=bad_image, headers=AUTH), 400)
    # A valid request still works after all that.
    assert httpx.post(server + CHAT, json=image_body(png_data_uri()), headers=AUTH).status_code == 200


def test_body_size_limit(server, serving_config):
    big = image_body("data:image/png;base64," + "A" * (serving_config.max_body_bytes + 10))
    assert_error(httpx.post(server + CHAT, json=big, headers=AUTH), 413, "request_too_large")

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(serving_config.max_body_bytes // 65536 + 2):
            yield b" " * 65536

    assert_error(httpx.post(server + CHAT, content=chunks(), headers=AUTH), 413, "request_too_large")


def test_bounded_queue_answers_429_with_retry_after(server, serving_config):
    async def burst():
        async with httpx.AsyncClient(timeout=60) as client:
            body = chat_body("Describe the chest radiograph findings.", max_tokens=16)
            return await asyncio.gather(*(client.post(server + CHAT, json=body, headers=AUTH) for _ in range(24)))

    responses = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) >= serving_config.max_queue
    refused = [r for r in responses if r.status_code == 429]
    assert refused, "24 simultaneous requests should overflow a queue of 4"
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert refused[0].json()["error"]["code"] == "queue_full"
    assert httpx.post(server + CHAT, json=chat_body("hi"), headers=AUTH).status_code == 200


def test_readiness_follows_model_load(tiny_model_dir, serving_config, tmp_path, free_port):
    from medfoundry.serving.model import MedVLMModel
    from medfoundry.serving.server import BackgroundServer, ServerSettings

    model = MedVLMModel("medvlm", str(tiny_model_dir), serving_config)
    with BackgroundServer(model, ServerSettings(port=free_port(), serving=serving_config), wait_ready=False) as url:
        assert httpx.get(url + "/v2/health/live").status_code == 200
        not_ready = httpx.get(url + "/v2/health/ready")
        assert not_ready.status_code == 503 and not_ready.headers["retry-after"]
        loading = httpx.post(url + CHAT, json=chat_body("hi"))
        assert_error(loading, 503, "not_ready")
        assert loading.headers["retry-after"]
        model.load()
        assert httpx.get(url + "/v2/health/ready").json() == {"ready": True}
        assert httpx.post(url + CHAT, json=chat_body("hi")).status_code == 200

    broken = MedVLMModel("medvlm", str(tmp_path / "missing"), serving_config)
    with pytest.raises(RuntimeError, match="did not load"):
        with BackgroundServer(broken, ServerSettings(port=free_port(), serving=serving_config)):
            pass


def test_metrics_and_no_prompt_in_logs(server, caplog, capfd, png_data_uri):
    secret = "PatientNameZebra42 has a fever"
    before = _samples(httpx.get(server + "/metrics").text)
    with caplog.at_level(logging.DEBUG):
        ok = httpx.post(server + CHAT, json=image_body(png_data_uri()) | {"messages": [
            {"role": "user", "content": [{"type": "text", "text": secret}, {"type": "image_url", "image_url": {"url": png_data_uri()}}]}
        ]}, headers=AUTH, timeout=60)  # the server's first image request pays one-off warm-up costs
        assert ok.status_code == 200
        httpx.post(server + CHAT, json=chat_body(secret, max_tokens=99), headers=AUTH)  # an error path too
    out, err = capfd.readouterr()  # handlers that do not propagate (kserve, uvicorn) write to the terminal
    logged = "\n".join(r.getMessage() for r in caplog.records) + out + err
    assert "PatientNameZebra42" not in logged and "base64" not in logged
    text = httpx.get(server + "/metrics").text
    assert 'medfoundry_serving_requests_total{route="/openai/v1/chat/completions",status="200"}' in text
    for name in ("medfoundry_serving_batch_size_bucket", "medfoundry_serving_queue_depth",
                 "medfoundry_serving_completion_tokens_total", 'medfoundry_serving_rejected_total{reason="invalid"}',
                 'medfoundry_serving_model_ready{model="medvlm"}', "medfoundry_serving_running"):
        assert name in text
    after = _samples(text)
    # One request served: one more first token; its other tokens each add an inter-token gap.
    ttft = "medfoundry_serving_time_to_first_token_seconds_count"
    assert after[ttft] == before[ttft] + 1
    itl = "medfoundry_serving_inter_token_latency_seconds_count"
    completion = "medfoundry_serving_completion_tokens_total"
    assert after[itl] - before[itl] >= after[completion] - before[completion] - 1 >= 1


def _samples(exposition: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {s.name + (str(sorted(s.labels.items())) if s.labels else ""): s.value
            for family in text_string_to_metric_families(exposition) for s in family.samples}
