"""The HTML report (matplotlib plots embedded as base64 PNG) and MLflow logging of an evaluation folder."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}
th{background:#f3f3f3}.num{text-align:right;font-variant-numeric:tabular-nums}.warn{color:#a40}
code{background:#f6f6f6;padding:1px 3px}img{max-width:100%}
"""


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))


def _ci(ci: list | tuple | None) -> str:
    if not ci or ci[0] is None:
        return "–"
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td class='num'>{_fmt(c)}</td>" if isinstance(c, float) else f"<td>{_fmt(c)}</td>" for c in r)
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f"<img alt='plot' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'/>"


def _bar_with_ci(labels: list[str], values: list[float], cis: list[list], title: str, ylabel: str,
                 signed: bool = False):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(labels) + 2), 3.6))
    vals = [v if v is not None else 0.0 for v in values]
    lower = [max(0.0, v - (c[0] if c and c[0] is not None else v)) for v, c in zip(vals, cis, strict=True)]
    upper = [max(0.0, (c[1] if c and c[1] is not None else v) - v) for v, c in zip(vals, cis, strict=True)]
    ax.bar(labels, vals, yerr=[lower, upper], capsize=5, color="#4a7ab5")
    if signed:  # deltas: autoscaled around a zero line
        ax.axhline(0, color="#888", linewidth=0.8)
    else:
        ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=20)
    return fig


def score_plot(summary: dict[str, Any]) -> str:
    res = [r for r in summary["benchmarks"].values() if r["score"] is not None]
    if not res:
        return ""
    return _png(
        _bar_with_ci(
            [f"{r['benchmark']}\n({r['metric']})" for r in res], [r["score"] for r in res], [r["ci95"] for r in res],
            "Main score per benchmark (95% bootstrap CI)", "score",
        )
    )


def rarity_plot(summary: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = [r for r in summary["benchmarks"].values() if r.get("by_rarity")]
    if not res:
        return ""
    order = {"rare": 0, "common": 1, "no_entity": 2}
    tiers = sorted({t for r in res for t in r["by_rarity"]}, key=lambda t: (order.get(t, 3), t))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(res) + 2), 3.6))
    width = 0.8 / len(tiers)
    for k, tier in enumerate(tiers):
        xs, ys, err = [], [], [[], []]
        for i, r in enumerate(res):
            t = r["by_rarity"].get(tier)
            if not t or t["score"] is None:
                continue
            xs.append(i + k * width)
            ys.append(t["score"])
            err[0].append(max(0.0, t["score"] - t["ci95"][0]))
            err[1].append(max(0.0, t["ci95"][1] - t["score"]))
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=tier)
    ax.set_xticks([i + width * (len(tiers) - 1) / 2 for i in range(len(res))], [r["benchmark"] for r in res])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("main score")
    ax.set_title("Score by entity rarity tier (95% bootstrap CI)")
    ax.legend()
    return _png(fig)


def render_report(summary: dict[str, Any], comparison: dict[str, Any] | None = None) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>medfoundry evaluation</title><style>{_STYLE}</style>"
        "</head><body><h1>medfoundry evaluation</h1>",
        f"<p>Model: <code>{html.escape(summary.get('backend', ''))}</code> · prompt mode "
        f"<code>{html.escape(str(summary.get('settings', {}).get('prompt_mode', '')))}</code> · limit "
        f"{_fmt(summary.get('settings', {}).get('limit'))}</p>",
    ]
    benches = summary["benchmarks"]
    rows = [
        [r["benchmark"], r["metric"], r["score"], _ci(r["ci95"]), r["n"], r["n_unparseable"], r["n_errors"],
         r["n_skipped"]]
        for r in benches.values()
    ]
    parts.append("<h2>Scores</h2>")
    parts.append(_table(["benchmark", "metric", "score", "95% CI", "n", "unparseable", "errors", "skipped rows"], rows))
    parts.append(score_plot(summary))
    for name, reason in summary.get("missing", {}).items():
        parts.append(f"<p class='warn'>Skipped benchmark <b>{html.escape(name)}</b>: {html.escape(reason)}</p>")

    parts.append("<h2>All metrics</h2>")
    metric_rows = [
        [name, key, m["value"], _ci(m["ci95"]), m["n"]] for name, r in benches.items() for key, m in r["metrics"].items()
    ]
    parts.append(_table(["benchmark", "metric", "value", "95% CI", "n"], metric_rows))

    parts.append("<h2>By entity rarity</h2>")
    if summary.get("rarity_available"):
        tier_rows = [
            [name, tier, t["score"], _ci(t["ci95"]), t["n"]]
            for name, r in benches.items()
            for tier, t in r.get("by_rarity", {}).items()
        ]
        parts.append(_table(["benchmark", "tier", "score", "95% CI", "n"], tier_rows))
        parts.append(rarity_plot(summary))
    else:
        parts.append("<p class='warn'>No entity linker available (medfoundry.entities): rarity breakdown not computed.</p>")

    parts.append("<h2>Decontamination</h2>")
    decon = [(name, r["decontamination"]) for name, r in benches.items() if r.get("decontamination")]
    if decon:
        parts.append(
            _table(
                ["benchmark", "checked", "contaminated", "excluded", "clean score", "clean CI", "contaminated score"],
                [
                    [n, d["n_checked"], d["n_contaminated"], str(d["excluded"]), d["clean"]["score"],
                     _ci(d["clean"]["ci95"]), d["contaminated"]["score"]]
                    for n, d in decon
                ],
            )
        )
    else:
        parts.append("<p class='warn'>No training corpus given or found in the model's lineage: not checked.</p>")

    if comparison:
        parts.append(render_comparison(comparison))

    skipped = [[name, s["file"], s["line"], s["reason"]] for name, r in benches.items() for s in r["skipped"][:50]]
    parts.append("<h2>Skipped rows</h2>")
    parts.append(_table(["benchmark", "file", "line", "reason"], skipped) if skipped else "<p>None.</p>")
    examples = [
        [name, e["id"], (e.get("output") or "")[:200], e.get("error") or ""]
        for name, r in benches.items()
        for e in r.get("unparseable_examples", [])
    ]
    parts.append("<h2>Unparseable outputs (examples)</h2>")
    parts.append(_table(["benchmark", "id", "output", "error"], examples) if examples else "<p>None.</p>")
    parts.append(rl_traces_section(summary))
    parts.append("</body></html>")
    return "\n".join(parts)


TRACES_SHOWN = 30


def rl_traces_section(summary: dict[str, Any]) -> str:
    """The evaluated policy's GRPO rollouts (rl_traces.jsonl beside an in-process model): tool calls with their
    arguments, the tools' results, the final answer and each reward component; empty when there are none."""
    source = str(summary.get("backend", ""))
    path = Path(source[3:]) / "rl_traces.jsonl" if source.startswith("hf:") else None
    if path is None or not path.is_file():
        return ""
    traces = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows, with_calls = [], 0
    for trace in traces:
        messages = trace["completion"] if isinstance(trace["completion"], list) else [
            {"role": "assistant", "content": trace["completion"]}]
        calls = [f"{c['function']['name']}({json.dumps(c['function'].get('arguments', {}), sort_keys=True)})"
                 for m in messages for c in m.get("tool_calls") or []]
        results = [f"{m.get('name', '')}: {m.get('content', '')}" for m in messages if m.get("role") == "tool"]
        with_calls += bool(calls)
        answer = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "assistant"), "")
        rewards = ", ".join(f"{k} {_fmt(v, 2)}" for k, v in sorted(trace.get("rewards", {}).items()))
        rows.append([trace.get("phase", ""), trace.get("id", ""), "; ".join(calls) or "–",
                     "; ".join(r[:200] for r in results) or "–", answer[:200], rewards])
    return "\n".join([
        "<h2>Agentic traces (RL rollouts)</h2>",
        f"<p>{len(traces)} rollouts in <code>{html.escape(str(path))}</code>, {with_calls} with tool calls; "
        f"the first {min(len(rows), TRACES_SHOWN)} shown.</p>",
        _table(["phase", "prompt id", "tool calls (arguments)", "tool results", "final answer", "rewards"],
               rows[:TRACES_SHOWN]),
    ])


def render_comparison(comparison: dict[str, Any]) -> str:
    rows = [
        [name, c["base"], c["candidate"], c["delta"], _ci(c["delta_ci95"]), c["n_paired"],
         "yes" if c["significant"] else "no"]
        for name, c in comparison["benchmarks"].items()
    ]
    out = [
        "<h2>Comparison</h2>",
        f"<p>Base <code>{html.escape(comparison['base'])}</code> vs candidate "
        f"<code>{html.escape(comparison['candidate'])}</code> (paired bootstrap over shared items).</p>",
        _table(["benchmark", "base", "candidate", "delta", "delta 95% CI", "paired items", "CI excludes 0"], rows),
    ]
    deltas = [(n, c) for n, c in comparison["benchmarks"].items() if c["delta"] is not None]
    if deltas:
        out.append(
            _png(
                _bar_with_ci(
                    [n for n, _ in deltas], [c["delta"] for _, c in deltas], [c["delta_ci95"] for _, c in deltas],
                    "Candidate − base (95% paired bootstrap CI)", "delta", signed=True,
                )
            )
        )
    return "\n".join(out)


def write_report(summary: dict[str, Any], path: Path, comparison: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    path.write_text(render_report(summary, comparison), encoding="utf-8")
    return path


def log_mlflow(summary: dict[str, Any], out_dir: Path, prefix: str = "eval", log_metrics: bool = True) -> bool:
    """Log metrics (unless the caller logs the flat figures itself), per-benchmark prediction tables, the summary and
    the report into the active MLflow run; False when no run is active."""
    import mlflow

    if mlflow.active_run() is None:
        return False
    import pandas as pd

    from medfoundry.evaluation.runner import PREDICTIONS, REPORT, SUMMARY, flat_metrics

    out_dir = Path(out_dir)
    metrics = {f"{prefix}/{k}" if prefix else k: v for k, v in flat_metrics(summary).items()}
    if metrics and log_metrics:
        mlflow.log_metrics(metrics)
    for name in summary["benchmarks"]:
        table = out_dir / name / PREDICTIONS
        if table.exists():
            frame = pd.read_parquet(table).drop(columns=["prompt"])
            mlflow.log_table(frame, artifact_file=f"{prefix or 'eval'}/{name}/predictions.json")
    for artifact in (out_dir / SUMMARY, out_dir / REPORT):
        if artifact.exists():
            mlflow.log_artifact(str(artifact), artifact_path=prefix or "eval")
    mlflow.set_tag("medfoundry.eval.benchmarks", ",".join(summary["benchmarks"]))
    return True


def load_summary(out_dir: Path) -> dict[str, Any]:
    from medfoundry.evaluation.runner import SUMMARY

    return json.loads((Path(out_dir) / SUMMARY).read_text())
