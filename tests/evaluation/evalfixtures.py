"""Benchmark fixture files in the upstream formats (with one malformed row each), and OpenAI-compatible test servers
on 127.0.0.1 whose replies come from a Python function."""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

SIX = ["pubmedqa", "medqa", "medmcqa", "mmlu_medical", "vqa_rad", "medquad"]

# (benchmark, file name, 1-based line of the malformed row) for assertions.
MALFORMED = {
    "pubmedqa": ("pqal_fixture.json", 5),
    "medqa": ("us_4options.jsonl", 3),
    "medmcqa": ("dev.jsonl", 2),
    "mmlu_medical": ("anatomy_test.csv", 3),
    "vqa_rad": ("trainset.json", 4),
    "medquad": ("0000002_1.xml", None),
}


def write_benchmarks(root: Path) -> Path:
    """A data root like ../shared/data with small files in every upstream format; each has one malformed row."""
    (root / "pubmedqa").mkdir(parents=True)
    pubmed = {
        "101": {"QUESTION": "Does aspirin reduce stroke risk?", "CONTEXTS": ["Trial of aspirin.", "Fewer strokes."],
                "LABELS": ["B", "R"], "MESHES": ["Aspirin"], "final_decision": "yes", "LONG_ANSWER": "Yes."},
        "102": {"QUESTION": "Is vitamin C curative for sepsis?", "CONTEXTS": ["Sepsis trial."], "final_decision": "no"},
        "103": {"QUESTION": "Does statin use prevent dementia?", "CONTEXTS": ["Cohort."], "final_decision": "maybe"},
        "104": {"QUESTION": "Broken row", "CONTEXTS": ["x"], "final_decision": "perhaps"},
        "105": {"QUESTION": "Is metformin first line for type 2 diabetes?", "CONTEXTS": ["Guideline."],
                "final_decision": "yes"},
    }
    # One key per line after "{" so the malformed entry ("104") sits on line 5.
    lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pubmed.items())
    (root / "pubmedqa" / "pqal_fixture.json").write_text("{\n" + lines + "\n}\n")

    (root / "medqa").mkdir()
    medqa = [
        {"question": "First-line drug for anaphylaxis?", "options": {"A": "Epinephrine", "B": "Diphenhydramine",
         "C": "Prednisone", "D": "Ranitidine"}, "answer": "Epinephrine", "answer_idx": "A", "meta_info": "step1"},
        {"question": "Vitamin deficient in scurvy?", "options": {"A": "Vitamin A", "B": "Vitamin D", "C": "Vitamin C",
         "D": "Vitamin K"}, "answer": "Vitamin C", "answer_idx": "C", "meta_info": "step1"},
    ]
    with (root / "medqa" / "us_4options.jsonl").open("w") as fh:
        fh.write(json.dumps(medqa[0]) + "\n" + json.dumps(medqa[1]) + "\n")
        fh.write('{"question": "truncated row", "options": {"A": \n')  # line 3: invalid JSON
        fh.write(json.dumps({**medqa[0], "question": "Drug of choice for anaphylactic shock?"}) + "\n")
        fh.write(json.dumps({"question": "Which nerve?", "options": {"A": "Vagus", "B": "Facial", "C": "Ulnar",
                 "D": "Radial"}, "answer_idx": "B"}) + "\n")

    (root / "medmcqa").mkdir()
    rows = [
        {"question": "Axonal transport is:", "opa": "Antegrade", "opb": "Retrograde", "opc": "Both", "opd": "None",
         "cop": 3, "id": "m1", "subject_name": "Physiology"},
        {"question": "Bad cop", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 7, "id": "m2"},
        {"question": "Largest organ?", "opa": "Skin", "opb": "Liver", "opc": "Lung", "opd": "Brain", "cop": 1,
         "id": "m3"},
        {"question": "Insulin is made by?", "opa": "Alpha cells", "opb": "Beta cells", "opc": "Delta cells",
         "opd": "PP cells", "cop": 2, "id": "m4"},
        {"question": "Not a branch of the facial nerve?", "opa": "Temporal", "opb": "Zygomatic", "opc": "Buccal",
         "opd": "Lingual", "cop": 4, "id": "m5"},
    ]
    (root / "medmcqa" / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    (root / "mmlu_medical").mkdir()
    with (root / "mmlu_medical" / "anatomy_test.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Which bone is in the thigh?", "Femur", "Tibia", "Ulna", "Radius", "A"])
        writer.writerow(["Heart chambers?", "Two", "Three", "Four", "Five", "C"])
        writer.writerow(["Missing columns", "x", "y"])  # line 3
        writer.writerow(['A "dished face" profile is associated with', "acromegaly", "maxillary hypoplasia",
                         "hydrocephaly", "sinusitis", "B"])

    vqa = root / "vqa_rad"
    (vqa / "images").mkdir(parents=True)
    for name, shade in (("synpic1.jpg", 40), ("synpic2.jpg", 200)):
        Image.new("RGB", (32, 32), (shade, shade, shade)).save(vqa / "images" / name)
    items = [
        {"qid": 1, "image_name": "synpic1.jpg", "question": "Is there a fracture?", "answer": "No",
         "image_organ": "CHEST", "question_type": "ABN", "answer_type": "CLOSED"},
        {"qid": 2, "image_name": "synpic2.jpg", "question": "What modality is this?", "answer": "CT",
         "image_organ": "HEAD", "question_type": "MODALITY", "answer_type": "OPEN"},
        {"qid": 3, "image_name": "missing.jpg", "question": "Is it normal?", "answer": "yes",
         "answer_type": "CLOSED"},
        {"qid": 4, "image_name": "synpic2.jpg", "question": "Is the lesion enhancing?", "answer": "yes",
         "image_organ": "HEAD", "question_type": "ATTRIB", "answer_type": "CLOSED "},
    ]
    (vqa / "trainset.json").write_text("[\n" + ",\n".join(json.dumps(i) for i in items) + "\n]\n")

    medquad = root / "medquad" / "1_CancerGov_QA"
    medquad.mkdir(parents=True)
    (medquad / "0000001_1.xml").write_text(
        """<?xml version="1.0" encoding="UTF-8"?>
<Document id="0000001_1" source="CancerGov" url="https://www.cancer.gov/x">
<Focus>Adult Acute Lymphoblastic Leukemia</Focus>
<QAPairs>
  <QAPair pid="1">
    <Question qid="0000001_1-1" qtype="information">What is (are) Adult Acute Lymphoblastic Leukemia ?</Question>
    <Answer>Adult acute lymphoblastic leukemia is a type of cancer in which the bone marrow makes too many
    lymphocytes.</Answer>
  </QAPair>
  <QAPair pid="2">
    <Question qid="0000001_1-2" qtype="symptoms">What are the symptoms of Adult Acute Lymphoblastic Leukemia ?</Question>
    <Answer>Fever, feeling tired, and easy bruising or bleeding.</Answer>
  </QAPair>
  <QAPair pid="3">
    <Question qid="0000001_1-3" qtype="treatment">What are the treatments for Adult ALL ?</Question>
    <Answer></Answer>
  </QAPair>
</QAPairs>
</Document>
"""
    )
    (medquad / "0000002_1.xml").write_text('<?xml version="1.0"?>\n<Document id="2">\n<Focus>Broken</Focus>\n<QAPairs>\n')
    return root


class ChatServer:
    """A minimal OpenAI-compatible /v1/chat/completions server; `reply(payload) -> (status, body)`."""

    def __init__(self, reply: Callable[[dict], tuple[int, object]]):
        self.reply = reply
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **payload})
                status, body = server.reply(payload)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def completion(text) -> dict:
    return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant",
            "content": text}, "finish_reason": "stop"}]}


def user_text(payload: dict) -> str:
    content = payload["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def has_image(payload: dict) -> bool:
    content = payload["messages"][-1]["content"]
    return not isinstance(content, str) and any(
        p.get("type") == "image_url" and p["image_url"]["url"].startswith("data:image/") for p in content
    )
