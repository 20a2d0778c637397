"""End to end through a real HTTP endpoint on 127.0.0.1: `medfoundry eval --endpoint` against test servers."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import typer
from evalfixtures import SIX, ChatServer, completion, has_image, user_text
from typer.testing import CliRunner

from medfoundry.evaluation.backends import image_data_uri
from medfoundry.evaluation.benchmarks import get_benchmark
from medfoundry.evaluation.cli import register
from medfoundry.tasks.prompts import build_prompt

MC_AND_YES_NO = ["pubmedqa", "medqa", "medmcqa", "mmlu_medical", "vqa_rad"]


@pytest.fixture(scope="module")
def cli():
    app = typer.Typer()
    register(app)
    runner = CliRunner()

    def invoke(*args: str):
        # No entity tree here (rarity is covered in test_eval_inprocess.py); keeps these tests to HTTP behaviour.
        return runner.invoke(app, ["eval", *args, "--entity-tree", "none"], catch_exceptions=False)

    return invoke


def _key(payload_or_prompt, image=None) -> tuple[str, str | None]:
    if isinstance(payload_or_prompt, dict):
        content = payload_or_prompt["messages"][-1]["content"]
        url = None if isinstance(content, str) else next(
            (p["image_url"]["url"] for p in content if p.get("type") == "image_url"), None
        )
        return user_text(payload_or_prompt), url
    return payload_or_prompt, image_data_uri(image) if image else None


def gold_table(data: Path, names: list[str], limit: int | None = None) -> tuple[dict, dict]:
    """(prompt key -> gold answer, benchmark -> items) built with the same adapters and templates."""
    table, items = {}, {}
    for name in names:
        items[name] = get_benchmark(name).load(data, limit)[0]
        for item in items[name]:
            table[_key(build_prompt(item).user, item.image)] = item.answer
    return table, items


def _results(out: Path, name: str) -> dict:
    return json.loads((out / name / "results.json").read_text())


def test_oracle_scores_one_everywhere(cli, bench_root, tmp_path):
    gold, items = gold_table(bench_root, SIX)
    with ChatServer(lambda p: (200, completion(gold[_key(p)]))) as server:
        out = tmp_path / "out"
        result = cli(
            "--benchmark", ",".join(SIX), "--data", str(bench_root), "--out", str(out), "--endpoint", server.url,
            "--model-name", "oracle", "--api-key", "sekret", "--concurrency", "3",
        )
        assert result.exit_code == 0, result.output
    for name in SIX:
        res = _results(out, name)
        assert res["benchmark"] == name and res["n"] == len(items[name]) > 0
        assert res["score"] == pytest.approx(1.0) and res["ci95"] == [pytest.approx(1.0), pytest.approx(1.0)]
        assert res["n_unparseable"] == 0 and res["n_scored"] == res["n"]
        if name in MC_AND_YES_NO:
            assert res["accuracy"] == 1.0
    assert _results(out, "medquad")["metric"] == "rouge_l"
    assert _results(out, "medqa")["n_skipped"] == 1 and _results(out, "medquad")["n_skipped"] == 2
    vqa_requests = [r for r in server.requests if "Is there a fracture?" in user_text(r)]
    assert vqa_requests and all(has_image(r) for r in vqa_requests)
    assert {r["auth"] for r in server.requests} == {"Bearer sekret"}
    assert all(r["path"] == "/v1/chat/completions" and r["temperature"] == 0.0 for r in server.requests)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 1 and "medquad" in html
    assert (out / "medqa" / "predictions.parquet").is_file()


def test_always_a_scores_share_of_gold_a(cli, bench_root, tmp_path):
    _, items = gold_table(bench_root, SIX)
    with ChatServer(lambda p: (200, completion("A"))) as server:
        out = tmp_path / "out"
        result = cli("--benchmark", "all", "--data", str(bench_root), "--out", str(out), "--endpoint", server.url,
                     "--model-name", "always-a")
        assert result.exit_code == 0, result.output
    for name in ["pubmedqa", "medqa", "medmcqa", "mmlu_medical"]:
        share = sum(i.answer == "A" for i in items[name]) / len(items[name])
        assert _results(out, name)["accuracy"] == pytest.approx(share), name
    assert _results(out, "medqa")["accuracy"] == pytest.approx(2 / 4)
    assert _results(out, "pubmedqa")["n_unparseable"] == len(items["pubmedqa"])  # "A" is not yes/no/maybe


def test_malformed_replies_are_unparseable_never_fatal(cli, bench_root, tmp_path):
    replies = [
        (200, b"this is not json"),
        (200, {"choices": []}),
        (200, {"choices": [{"message": {"role": "assistant", "content": None}}]}),
        (200, {"unexpected": True}),
        (500, {"error": "boom"}),
        (400, {"error": "bad request"}),
        (200, completion("")),
    ]
    counter = iter(range(10**6))
    lock = threading.Lock()

    def reply(_payload):
        with lock:
            return replies[next(counter) % len(replies)]

    with ChatServer(reply) as server:
        out = tmp_path / "out"
        result = cli("--benchmark", ",".join(SIX), "--data", str(bench_root), "--out", str(out), "--endpoint",
                     server.url, "--model-name", "broken", "--retries", "0", "--concurrency", "2")
        assert result.exit_code == 0, result.output
    for name in SIX:
        res = _results(out, name)
        assert res["n_unparseable"] == res["n"] > 0 and res["score"] == 0.0
        assert res["unparseable_examples"]
    errors = [e["error"] for n in SIX for e in _results(out, n)["unparseable_examples"] if e["error"]]
    assert any("not JSON" in e for e in errors) and any("HTTP 500" in e or "HTTP 400" in e for e in errors)


def test_retries_and_concurrency_limit(cli, bench_root, tmp_path):
    gold, _ = gold_table(bench_root, ["medmcqa", "mmlu_medical"])
    seen: set = set()
    state = {"inflight": 0, "peak": 0}
    lock = threading.Lock()

    def reply(payload):
        key = _key(payload)
        with lock:
            state["inflight"] += 1
            state["peak"] = max(state["peak"], state["inflight"])
            first = key not in seen
            seen.add(key)
        time.sleep(0.05)
        with lock:
            state["inflight"] -= 1
        return (503, {"error": "busy"}) if first else (200, completion(f"The answer is ({gold[key]})."))

    with ChatServer(reply) as server:
        out = tmp_path / "out"
        result = cli("--benchmark", "medmcqa,mmlu_medical", "--data", str(bench_root), "--out", str(out),
                     "--endpoint", server.url, "--model-name", "flaky", "--concurrency", "2", "--retries", "2")
        assert result.exit_code == 0, result.output
    assert _results(out, "medmcqa")["accuracy"] == 1.0 and _results(out, "mmlu_medical")["accuracy"] == 1.0
    assert state["peak"] <= 2


def test_cli_rejects_bad_arguments(cli, bench_root, tmp_path):
    assert cli("--benchmark", "nope", "--data", str(bench_root), "--out", str(tmp_path), "--model", "x").exit_code == 2
    both = cli("--benchmark", "medqa", "--data", str(bench_root), "--out", str(tmp_path), "--model", "x",
               "--endpoint", "http://127.0.0.1:9/v1", "--model-name", "m")
    assert both.exit_code == 2 and "exactly one" in both.output


@pytest.mark.shared
def test_shared_data_oracle_and_always_a(cli, shared_dir, tmp_path):
    data = shared_dir / "data"
    gold, items = gold_table(data, SIX, limit=20)
    for name, reply in (("oracle", lambda p: (200, completion(gold[_key(p)]))), ("a", lambda p: (200, completion("A")))):
        out = tmp_path / name
        with ChatServer(reply) as server:
            result = cli("--benchmark", ",".join(SIX), "--data", str(data), "--out", str(out), "--endpoint",
                         server.url, "--model-name", name, "--limit", "20", "--concurrency", "8")
            assert result.exit_code == 0, result.output
        for bench in SIX:
            res = _results(out, bench)
            assert res["n"] == 20 and res["n_skipped"] == 0
            if name == "oracle":
                assert res["score"] == pytest.approx(1.0), bench
            elif bench in ("medqa", "medmcqa", "mmlu_medical"):
                share = sum(i.answer == "A" for i in items[bench]) / 20
                assert res["accuracy"] == pytest.approx(share), bench


def test_llm_judge_for_open_answers_reports_agreement_with_exact_match(cli, bench_root, tmp_path):
    """Open VQA-RAD and MedQuAD answers: the model repeats the gold for some items and paraphrases it ("It is ...") for the
    others; a judge server accepting any answer that contains the reference grades both as correct, so its agreement
    with exact match is exactly the share of verbatim answers."""
    from medfoundry.evaluation.judge import JUDGE_PROMPT_ID
    from medfoundry.tasks.extractors import normalize_text

    names = ["vqa_rad", "medquad"]
    gold, items = gold_table(bench_root, names)
    open_items = [i for n in names for i in items[n] if i.task in ("short_answer", "long_answer")]
    assert len(open_items) >= 3
    verbatim = {open_items[0].answer}

    def model(payload):
        answer = gold[_key(payload)]
        return 200, completion(answer if answer in verbatim or answer in ("yes", "no") else f"It is {answer}")

    def judge(payload):
        text = user_text(payload)
        reference = text.split("Reference answer: ")[1].split("\n")[0]
        candidate = text.split("Candidate answer: ")[1].split("\n")[0]
        return 200, completion("correct" if normalize_text(reference) in normalize_text(candidate) else "incorrect")

    with ChatServer(model) as server, ChatServer(judge) as judge_server:
        out = tmp_path / "out"
        result = cli(
            "--benchmark", ",".join(names), "--data", str(bench_root), "--out", str(out), "--endpoint", server.url,
            "--model-name", "m", "--judge-endpoint", judge_server.url, "--judge-model", "judge",
        )
        assert result.exit_code == 0, result.output
    reports = [_results(out, n)["judge"] for n in names]
    assert all(JUDGE_PROMPT_ID in r["judge"] and r["accuracy"] == 1.0 for r in reports)
    assert sum(r["n_judged"] for r in reports) == len(open_items)
    agreed = sum(r["agreement_with_exact_match"] * r["n_judged"] for r in reports)
    share_verbatim = sum(i.answer in verbatim for i in open_items) / len(open_items)
    assert agreed / len(open_items) == pytest.approx(share_verbatim) and share_verbatim < 1.0
    assert all("Reference answer:" in user_text(r) for r in judge_server.requests)


def test_cli_takes_max_new_tokens_and_prompt_mode_from_the_profile(cli, bench_root, tmp_path, workspace):
    with ChatServer(lambda p: (200, completion("A"))) as server:
        result = cli(
            "--benchmark", "medqa", "--data", str(bench_root), "--out", str(tmp_path / "out"), "--endpoint", server.url,
            "--model-name", "m", "--profile", "production-7b",
        )
        assert result.exit_code == 0, result.output
    # production-7b: eval.max_new_tokens 512, prompt_mode reasoning.
    assert {r["max_tokens"] for r in server.requests} == {512}
    assert all("<think>" in user_text(r) for r in server.requests)
    assert _results(tmp_path / "out", "medqa")["prompt_mode"] == "reasoning"


def test_cli_refuses_loglikelihood_against_an_endpoint_and_ambiguous_splits(cli, bench_root, tmp_path):
    result = cli("--benchmark", "medqa", "--data", str(bench_root), "--out", str(tmp_path / "o"), "--endpoint",
                 "http://127.0.0.1:9/v1", "--model-name", "m", "--protocol", "loglikelihood")
    assert result.exit_code == 2 and "use --model" in result.output
    folder = tmp_path / "split-data" / "medmcqa"
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text((bench_root / "medmcqa" / "dev.jsonl").read_text())
    result = cli("--benchmark", "medmcqa", "--data", str(tmp_path / "split-data"), "--out", str(tmp_path / "o"),
                 "--endpoint", "http://127.0.0.1:9/v1", "--model-name", "m")
    assert result.exit_code == 2 and "several splits (test, train)" in result.output
