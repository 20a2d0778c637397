import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from medfoundry.data.records import Record
from medfoundry.entities.synthesis import Rewriter, select_targets, summarize, synthesize_for_sparse


def test_sparse_rare_diseases_come_first_with_grounded_records(vocab_tree):
    counts = {"D:noonan": 5, "P:fever": 10}
    targets = select_targets(vocab_tree, counts, sparse_threshold=2, max_entities=3, seed=0)
    assert targets[0] == "D:marfan" and "D:noonan" not in targets  # Noonan is mentioned 5 times: not sparse
    records = synthesize_for_sparse(vocab_tree, counts, max_entities=3, sparse_threshold=2, seed=0)
    assert all(isinstance(r, Record) and r.meta["synthetic"] and r.meta["provenance"] for r in records)
    marfan = [r for r in records if r.meta["entity_id"] == "D:marfan"]
    text = next(r for r in marfan if r.kind == "text")
    assert text.source == "met:D:marfan" and "Marfan syndrome is a rare disease." in text.text
    for phenotype in ("Tall stature", "Arachnodactyly", "Aortic root dilatation"):
        assert phenotype in text.text
    assert (
        text.entities[0].id == "D:marfan"
        and text.text[text.entities[0].start : text.entities[0].end] == "Marfan syndrome"
    )
    assert {
        "relation": "has_phenotype",
        "object": "P:tall",
        "subject": "D:marfan",
        "source": "hpoa",
    } in text.meta["provenance"]
    qa = next(r for r in marfan if r.kind == "qa")
    assert sorted(qa.options) == ["A", "B", "C", "D"] and qa.answer in qa.options
    correct = qa.options[qa.answer]
    assert correct in {"Tall stature", "Arachnodactyly", "Aortic root dilatation"}
    wrong = [v for k, v in qa.options.items() if k != qa.answer]
    assert not set(wrong) & {"Tall stature", "Arachnodactyly", "Aortic root dilatation"}
    assert correct in qa.reasoning and qa.reasoning.endswith(f"Answer: {qa.answer}.")
    assert qa.meta["provenance"][0]["subject"] == "D:marfan"
    assert summarize(records)["synthesized_entities"] == 3


def test_drug_class_question(vocab_tree):
    records = synthesize_for_sparse(vocab_tree, {}, targets=["R:aspirin"], seed=3)
    qa = next(r for r in records if r.kind == "qa")
    assert qa.options[qa.answer] == "Salicylates" and "MeSH" in qa.reasoning
    text = next(r for r in records if r.kind == "text")
    assert "classified under Salicylates" in text.text and "bayer" in text.text


def test_synthesis_is_deterministic_per_seed(vocab_tree):
    first = synthesize_for_sparse(vocab_tree, {}, max_entities=5, seed=7)
    again = synthesize_for_sparse(vocab_tree, {}, max_entities=5, seed=7)
    assert [r.model_dump() for r in first] == [r.model_dump() for r in again]


class _ChatHandler(BaseHTTPRequestHandler):
    reply = ""
    requests: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body))
        payload = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": type(self).reply},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _ChatHandler.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_rewriter_through_a_local_openai_compatible_server(vocab_tree, chat_server):
    _ChatHandler.reply = (
        "Marfan syndrome, a rare disease, shows tall stature, arachnodactyly and aortic root dilatation, and it is "
        "inherited in an autosomal dominant manner according to the ontology annotations."
    )
    rewriter = Rewriter(chat_server, model="tiny-rewriter", api_key="test")
    records = synthesize_for_sparse(vocab_tree, {}, targets=["D:marfan"], rewriter=rewriter)
    text = next(r for r in records if r.kind == "text")
    assert text.text == _ChatHandler.reply and text.meta["rewriter"] == "accepted"
    assert text.meta["template_text"].startswith("Marfan syndrome is a rare disease.")
    path, body = _ChatHandler.requests[0]
    assert path == "/v1/chat/completions" and body["model"] == "tiny-rewriter"
    assert "Tall stature" in body["messages"][-1]["content"]


def test_rewrites_that_drop_the_entity_or_fail_keep_the_template(vocab_tree, chat_server):
    _ChatHandler.reply = (
        "A condition with several features that are described in the literature at some length."
    )
    records = synthesize_for_sparse(vocab_tree, {}, targets=["D:marfan"], rewriter=Rewriter(chat_server))
    text = next(r for r in records if r.kind == "text")
    assert text.meta["rewriter"] == "rejected" and text.text.startswith("Marfan syndrome is a rare disease.")
    dead = Rewriter("http://127.0.0.1:9/v1", timeout=2.0)
    records = synthesize_for_sparse(vocab_tree, {}, targets=["D:marfan"], rewriter=dead)
    text = next(r for r in records if r.kind == "text")
    assert text.meta["rewriter"] == "error" and "Connection" in text.meta["rewriter_error"]


@pytest.mark.parametrize(
    ("added", "because"),
    [
        (" It is treated with aspirin.", "entity not in the node's facts: 'aspirin' (R:aspirin)"),
        (" Patients often develop pneumonia.", "entity not in the node's facts: 'pneumonia' (D:pneumonia)"),
        (" It causes sudden death.", "relation not in the node's facts: 'causes'"),
        (" About 1 in 5000 people have it.", "figure not in the node's facts: 1, 5000"),
    ],
)
def test_a_rewrite_that_adds_a_fact_is_rejected_with_its_reason(vocab_tree, chat_server, added, because):
    """The stub endpoint returns the template with one added fact: the fact check rejects it, keeps the template."""
    template = next(
        r for r in synthesize_for_sparse(vocab_tree, {}, targets=["D:marfan"]) if r.kind == "text"
    ).text
    _ChatHandler.reply = template + added
    records = synthesize_for_sparse(vocab_tree, {}, targets=["D:marfan"], rewriter=Rewriter(chat_server))
    text = next(r for r in records if r.kind == "text")
    assert text.meta["rewriter"] == "rejected" and text.meta["rejected_because"] == because
    assert text.text == template and text.meta["rewritten"] == template + added
    # the same rewrite without the added fact passes
    _ChatHandler.reply = template.replace("Marfan syndrome is a rare disease.", "Marfan syndrome: a rare disease.")
    records = synthesize_for_sparse(vocab_tree, {}, targets=["D:marfan"], rewriter=Rewriter(chat_server))
    assert next(r for r in records if r.kind == "text").meta["rewriter"] == "accepted"


def test_production_rewriter_endpoint_is_the_documented_inference_service():
    """The production profile's rewriter URL names the InferenceService docs/curation.md deploys, and that manifest
    validates against KServe's own CRD (../shared/k8s-crds)."""
    import re
    from pathlib import Path

    import yaml

    from medfoundry.cluster.crds import shared_crd_dir, validate_custom_resource
    from medfoundry.config import load_profile

    docs = (Path(__file__).parents[2] / "docs" / "curation.md").read_text()
    section = docs.split("## Deploying the rewriter", 1)[1]
    manifest = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    cfg = load_profile("production-7b").curation
    assert cfg.rewriter_endpoint == f"http://{name}-predictor.{namespace}.svc.cluster.local/openai/v1"
    assert f"--model_name={cfg.rewriter_model}" in manifest["spec"]["predictor"]["model"]["args"]
    crds = shared_crd_dir()
    if crds is None:
        pytest.skip("../shared/k8s-crds not found")
    assert validate_custom_resource(manifest, crds) == []
