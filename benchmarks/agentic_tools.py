"""Agentic RL benchmark: does a short tool-use SFT + GRPO make SmolLM2-135M-Instruct call clinical tools and beat
itself without tools on held-back tool-requiring tasks?

1. Tasks from `medfoundry.training.agentic.generate_tasks` (kept only when a reference solver needs the tool):
   a training set (seed 0) and a held-back set (seed 1, questions not in the training set).
2. SFT (medfoundry's causal-LM trainer): for each training task the tool-call turn (twice per epoch), the answer
   turn after the tool's result, and the no-tools answer turn (the gold answer under the no-tools system prompt, so the baseline is the same
   model trained on the same tasks).
3. GRPO (TRL GRPOTrainer) on the tool-call turn: reward 1 when the call executes and its result satisfies the gold
   answer, 0.3 for the right tool with a wrong result, else 0.
4. Held-back evaluation, greedy: with tools (call -> run the tool -> answer turn) vs. without tools; tool-call rate
   and accuracy. Traces (call, arguments, result, answer) are written to --out/traces.jsonl.

Sized for a shared 2-core CPU: calculator tasks (random patients, so the answers cannot be memorised), short tool
signatures in the system prompt, short completions, batched greedy evaluation.

Usage: .venv/bin/python benchmarks/agentic_tools.py --train 32 --heldout 40 --sft-steps 48 --grpo-steps 1
       [--every-stage]  (also evaluate before training and after SFT)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from medfoundry.models.chat import ChatPrompt, render
from medfoundry.models.generation import generate
from medfoundry.models.loading import load_model
from medfoundry.training.agentic import (
    NO_TOOL_SYSTEM,
    answer_from_result,
    generate_tasks,
    run_tool_call,
    tool_call_text,
    tool_system_prompt,
)
from medfoundry.training.rewards.rules import rule_match
from medfoundry.training.tools import TOOLS

# The calculators: their answers are numbers of random patients, which no model can know without computing.
TOOL_NAMES = ["anion_gap", "bmi", "cha2ds2_vasc", "egfr_ckd_epi_2021", "qtc_bazett"]
EVAL_BATCH = 20


def _messages(system: str, task, call: str | None = None, result: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": task.question}]
    if call is not None:
        messages += [{"role": "assistant", "content": call}, {"role": "user", "content": f"<tool_response>{result}</tool_response>"}]
    return messages


def _correct(task, text: str) -> bool:
    return rule_match(text, task.answer, task.answer_type, tolerance=task.tolerance)


def sft_examples(loaded, tasks):
    from medfoundry.training.common import TextExample

    system = tool_system_prompt(TOOL_NAMES)
    examples = []
    for task in tasks:
        call = tool_call_text(task)
        result = TOOLS[task.tool](**task.arguments)
        # The call turn twice per epoch: it is the decision the benchmark measures (after 36 steps with it once,
        # eGFR and CHA2DS2-VASc, the calls with the most arguments, were never made: call rate 0.45).
        turns = [
            (_messages(system, task), call),
            (_messages(system, task), call),
            (_messages(system, task, call, result), f"<answer>{answer_from_result(task, result)}</answer>"),
            (_messages(NO_TOOL_SYSTEM, task), f"<answer>{task.answer.replace(chr(92), '')}</answer>"),
        ]
        for messages, target in turns:
            examples.append(TextExample(render(loaded, messages, add_generation_prompt=True), target + "<|im_end|>"))
    return examples


def grpo(loaded, tasks, steps: int, out: Path, profile):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    system = tool_system_prompt(TOOL_NAMES)
    by_question = {t.question: t for t in tasks}

    def tool_call_reward(completions, question, **_):
        scores = []
        for completion, q in zip(completions, question, strict=True):
            task = by_question[q]
            call, result = run_tool_call(completion[0]["content"] if isinstance(completion, list) else completion)
            if call is None:
                scores.append(0.0)
            elif result is not None and _correct(task, f"<answer>{answer_from_result(task, result)}</answer>"):
                scores.append(1.0)
            else:
                scores.append(0.3 if call.get("name") == task.tool else 0.0)
        return scores

    rows = [{"prompt": _messages(system, t), "question": t.question} for t in tasks]
    args = GRPOConfig(output_dir=str(out / "grpo"), max_steps=steps, per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=48, learning_rate=1e-5, beta=0.0, temperature=1.0, logging_steps=1,
                      save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, seed=0)
    trainer = GRPOTrainer(model=loaded.model, reward_funcs=[tool_call_reward], args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=loaded.tokenizer)
    trainer.train()
    loaded.model = trainer.model
    return [(int(r["step"]), float(r["reward"])) for r in trainer.state.log_history if "reward" in r]


def evaluate(loaded, tasks, out: Path) -> dict:
    system = tool_system_prompt(TOOL_NAMES)
    first = generate(loaded, [ChatPrompt(messages=_messages(system, t)) for t in tasks], max_new_tokens=48,
                     batch_size=EVAL_BATCH)
    calls = [run_tool_call(text) for text in first]
    follow = [(i, t) for i, (t, (_, result)) in enumerate(zip(tasks, calls, strict=True)) if result is not None]
    answers = generate(loaded, [ChatPrompt(messages=_messages(system, t, first[i], calls[i][1])) for i, t in follow],
                       max_new_tokens=12, batch_size=EVAL_BATCH)
    with_tools = dict.fromkeys(range(len(tasks)), "")
    for (i, _), text in zip(follow, answers, strict=True):
        with_tools[i] = text
    without = generate(loaded, [ChatPrompt(messages=_messages(NO_TOOL_SYSTEM, t)) for t in tasks], max_new_tokens=12,
                       batch_size=EVAL_BATCH)
    traces = []
    for i, task in enumerate(tasks):
        call, result = calls[i]
        traces.append({"id": task.id, "question": task.question, "gold": task.answer, "expected_tool": task.tool,
                       "call": call, "result": result, "answer_with_tools": with_tools[i],
                       "correct_with_tools": _correct(task, with_tools[i]), "answer_without_tools": without[i],
                       "correct_without_tools": _correct(task, without[i])})
    (out / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces))
    n = len(tasks)
    return {"heldout": n, "tool_call_rate": sum(t["call"] is not None for t in traces) / n,
            "accuracy_with_tools": sum(t["correct_with_tools"] for t in traces) / n,
            "accuracy_without_tools": sum(t["correct_without_tools"] for t in traces) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=48)
    parser.add_argument("--heldout", type=int, default=40)
    parser.add_argument("--sft-steps", type=int, default=12)
    parser.add_argument("--sft-lr", type=float, default=1e-4)
    parser.add_argument("--grpo-steps", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("build/agentic"))
    parser.add_argument("--model", default="smollm2", help="the small profile's model; a folder to check the script")
    parser.add_argument("--every-stage", action="store_true", help="also evaluate before training and after SFT")
    args = parser.parse_args()
    from medfoundry.config import load_profile
    from medfoundry.training.common import encode_examples, train_causal_lm

    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    profile = load_profile("small")
    train, train_counts = generate_tasks(args.train, seed=0, lookup_share=0.0)
    seen = {t.question for t in train}
    heldout = [t for t in generate_tasks(args.heldout * 2, seed=1, lookup_share=0.0)[0]
               if t.question not in seen][: args.heldout]
    stage_s: dict[str, int] = {}
    loaded = load_model(args.model, profile.model if args.model == "smollm2" else None)
    report: dict = {"tasks": train_counts, "command": " ".join(["benchmarks/agentic_tools.py", *os.sys.argv[1:]])}
    if args.every_stage:
        report["before"] = evaluate(loaded, heldout, args.out)
    mark = time.time()
    encoded, _ = encode_examples(loaded, sft_examples(loaded, train), 192, keep_completion=True)
    sft_cfg = profile.sft.model_copy(update={"max_steps": args.sft_steps, "batch_size": 4,
                                             "learning_rate": args.sft_lr, "packing": False})
    sft_metrics, _, _ = train_causal_lm(loaded, encoded, sft_cfg, args.out / "sft")
    report["sft"] = {k: sft_metrics[k] for k in ("steps", "loss_first", "loss_last")}
    stage_s["sft"], mark = round(time.time() - mark), time.time()
    if args.every_stage:
        report["after_sft"] = evaluate(loaded, heldout, args.out)
    report["grpo_rewards"] = grpo(loaded, train, args.grpo_steps, args.out, profile)
    stage_s["grpo"], mark = round(time.time() - mark), time.time()
    report["after_grpo"] = evaluate(loaded, heldout, args.out)
    stage_s["evaluate"] = round(time.time() - mark)
    report["stage_s"] = stage_s
    report["wall_s"] = round(time.time() - started)
    report["load_average"] = os.getloadavg()
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
