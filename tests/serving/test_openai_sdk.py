"""The official openai SDK, unmodified, against the server on each engine (in-process continuous batching; vLLM where
a GPU is present): plain, streaming, PNG and DICOM images, text-only models refusing images, v2 protocol."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from medfoundry.serving.client import MedFoundryClient, image_data_uri

QUESTION = "Is there a pleural effusion on this chest radiograph?"


@pytest.fixture(scope="module")
def sdk(engine_server, api_key):
    return OpenAI(base_url=f"{engine_server}/openai/v1", api_key=api_key)


def test_models_and_chat(sdk):
    assert [m.id for m in sdk.models.list().data] == ["medvlm"]
    response = sdk.chat.completions.create(model="medvlm", messages=[{"role": "user", "content": QUESTION}], max_tokens=6)
    choice = response.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert response.usage.completion_tokens <= 6 and response.usage.prompt_tokens > 10


def test_stream_matches_non_stream(sdk):
    messages = [{"role": "system", "content": "You are a radiologist."}, {"role": "user", "content": QUESTION}]
    full = sdk.chat.completions.create(model="medvlm", messages=messages, max_tokens=10)
    stream = sdk.chat.completions.create(
        model="medvlm", messages=messages, max_tokens=10, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content  # greedy: same tokens either way
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        full.choices[0].finish_reason
    ]


def test_image_png_and_dicom(sdk, png_data_uri):
    from pydicom.data import get_testdata_file

    for uri in (png_data_uri(), image_data_uri(get_testdata_file("CT_small.dcm"))):
        assert uri.startswith(("data:image/png;base64,", "data:application/dicom;base64,"))
        response = sdk.chat.completions.create(
            model="medvlm",
            messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": uri}},
                {"type": "text", "text": "Describe the scan."},
            ]}],
            max_tokens=4,
        )
        text_only = sdk.chat.completions.create(
            model="medvlm", messages=[{"role": "user", "content": "Describe the scan."}], max_tokens=4
        )
        # The image's tokens are part of the prompt.
        assert response.usage.prompt_tokens > text_only.usage.prompt_tokens


def test_text_only_model_answers_400_for_an_image(text_server, api_key, png_data_uri):
    sdk = OpenAI(base_url=f"{text_server}/openai/v1", api_key=api_key)
    image_message = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": png_data_uri()}}, {"type": "text", "text": "Describe the scan."},
    ]}]
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="textlm", messages=image_message, max_tokens=4)
    assert refused.value.body["code"] == "unsupported_image" and "text-only" in refused.value.body["message"]
    v2 = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["Describe."]},
                     {"name": "image", "shape": [1], "datatype": "BYTES", "data": [png_data_uri()]}]}
    response = httpx.post(f"{text_server}/v2/models/textlm/infer", json=v2, headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 400 and "text-only" in response.text
    answer = sdk.chat.completions.create(model="textlm", messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    assert answer.usage.completion_tokens == 3


def test_python_client_and_v2_protocol(engine_server, api_key, png_data_uri):
    server = engine_server
    client = MedFoundryClient(server, api_key=api_key)
    answer = client.ask(QUESTION, max_tokens=5)
    assert answer == "".join(client.ask_stream(QUESTION, max_tokens=5))
    body = {
        "inputs": [
            {"name": "text", "shape": [2], "datatype": "BYTES", "data": [QUESTION, "Describe."]},
            {"name": "image", "shape": [2], "datatype": "BYTES", "data": ["", png_data_uri()]},
        ],
        "parameters": {"max_tokens": 5},
    }
    response = httpx.post(f"{server}/v2/models/medvlm/infer", json=body, headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["name"] == "text_output" and output["shape"] == [2]
    assert output["data"][0] == answer
