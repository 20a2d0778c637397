"""Structured reasoning data: four-part traces verified for the gold conclusion and against answer leakage, from
templates and from an OpenAI-compatible teacher (a local stub server speaking the chat-completions API)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from training_data import records

from medfoundry.config.training import TeacherConfig
from medfoundry.training.reasoning import Trace, build_traces, template_trace, verify
from medfoundry.training.sft import run_sft


def _train_qa():
    return [r for r in records() if r.kind == "qa" and r.split == "train"]


def _record(record_id):
    return next(r for r in records() if r.id == record_id)


def test_every_kept_template_trace_on_the_tiny_sft_set_passes():
    qa = _train_qa()
    traces, report = build_traces(qa)
    assert report.source.startswith("templates") and report.kept == len(qa) == len(traces) == 4
    assert all(verify(traces[r.id], r).kept for r in qa)
    rendered = traces["qa-0"].render()
    assert [line.split(":")[0] for line in rendered.splitlines()] == ["Understanding", "Recall", "Reasoning",
                                                                      "Conclusion"]
    assert rendered.splitlines()[-1] == "Conclusion: The answer is B (Metformin)."


GOOD = dict(understanding="Which drug starts type 2 diabetes treatment.", recall="Metformin lowers glucose.",
            reasoning="Insulin is for later stages; aspirin does not lower glucose.", conclusion="The answer is B.")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"reasoning": "The answer is B, since guidelines say so."}, "leakage in reasoning"),
        ({"recall": "Option B is the first-line drug."}, "leakage in recall"),
        ({"reasoning": "Metformin is the correct choice here."}, "leakage in reasoning"),
        ({"understanding": "We need the answer: Metformin."}, "leakage in understanding"),
        ({"conclusion": "The answer is A."}, "wrong conclusion: it answers 'A'"),
        ({"conclusion": "It depends."}, "wrong conclusion: it answers None"),
        ({"recall": "  "}, "missing part: recall"),
    ],
)
def test_leaking_and_wrong_traces_are_rejected_with_their_reason(change, reason):
    record = _record("qa-0")
    assert verify(Trace(**GOOD), record).kept
    verdict = verify(Trace(**{**GOOD, **change}), record)
    assert not verdict.kept and verdict.reason.startswith(reason), verdict.reason


def test_yes_no_and_short_answer_checks():
    yes_no, short = _record("qa-1"), _record("qa-2")
    trace = template_trace(yes_no, [])
    assert verify(trace, yes_no).kept
    assert not verify(Trace(trace.understanding, trace.recall, "So the answer is yes.", trace.conclusion),
                      yes_no).kept
    assert verify(template_trace(short, []), short).kept
    assert "wrong conclusion" in verify(Trace("q", "f", "r", "The answer is high iron."), short).reason


class _StubTeacher(BaseHTTPRequestHandler):
    """/v1/chat/completions: a canned reply per question (good, leaking, wrong, not JSON)."""

    replies = {
        "first-line": json.dumps(GOOD),
        "consolidation": json.dumps({"understanding": "Is there consolidation?", "recall": "Opacity means it.",
                                     "reasoning": "The answer is yes because the lobe is white.",
                                     "conclusion": "Yes."}),
        "pallor": json.dumps({"understanding": "Cause of pallor.", "recall": "Hemoglobin colours skin.",
                              "reasoning": "Pale skin follows from less pigment in blood.",
                              "conclusion": "The answer is high bilirubin."}),
        "hemorrhage": "I think it is negative.",
    }

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        content = next(v for k, v in self.replies.items() if k in prompt)
        payload = json.dumps({
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def teacher_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubTeacher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_teacher_traces_are_verified_and_rejections_reported(teacher_url):
    qa = _train_qa()
    traces, report = build_traces(qa, TeacherConfig(base_url=teacher_url, model="stub-teacher"))
    assert report.source == f"teacher stub-teacher at {teacher_url}"
    assert report.from_teacher == 1 and traces["qa-0"].recall == GOOD["recall"]
    reasons = {r["record_id"]: r["reason"] for r in report.rejected}
    assert reasons["qa-1"].startswith("leakage in reasoning")
    assert reasons["qa-2"].startswith("wrong conclusion")
    assert reasons["qa-3"] == "teacher reply is not a JSON object with the four parts"
    assert report.from_template == 3 and report.kept == 4  # rejected items fall back to verified templates
    assert all(verify(traces[r.id], r).kept for r in qa)


def test_sft_with_structured_traces_says_where_they_came_from(tiny_profile, tiny_dataset, base_model_dir, tmp_path):
    section = tiny_profile.sft.model_copy(update={"reasoning_format": "structured", "max_steps": 1})
    metrics = run_sft(tiny_profile.model_copy(update={"sft": section}), tiny_dataset, base_model_dir, tmp_path / "m")
    assert metrics["reasoning_source"] == "templates (no teacher in the profile)"
    assert metrics["reasoning_traces_kept"] == metrics["examples"] == 4 and metrics["reasoning_rejected"] == 0
    report = json.loads((tmp_path / "m" / "reasoning_report.json").read_text())
    assert report["kept"] == 4
