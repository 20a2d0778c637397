import json

import typer
from typer.testing import CliRunner

from medfoundry.entities.cli import register


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)  # a second command keeps `entities` a sub-command
    register(app)
    return app


def test_build_link_coverage_synthesize(tmp_path):
    runner = CliRunner()
    app = _app()
    tree_dir = tmp_path / "tree"
    result = runner.invoke(
        app, ["entities", "build", "--out", str(tree_dir), "--max-nodes-per-source", "120"]
    )
    assert result.exit_code == 0, result.output
    assert (tree_dir / "tree.parquet").exists() and json.loads((tree_dir / "meta.json").read_text())["counts"]

    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps(
            {
                "id": "1",
                "text": "Cholera with no evidence of cholera due to Vibrio cholerae 01, biovar cholerae.",
            }
        )
        + "\n"
        "{broken\n"
        + json.dumps({"id": "3", "no_text": True})
        + "\n"
        + json.dumps({"id": "4", "text": ""})
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    result = runner.invoke(
        app, ["entities", "link", "--tree", str(tree_dir), "--input", str(source), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    rejected = [json.loads(line) for line in (tmp_path / "out.rejected.jsonl").read_text().splitlines()]
    assert len(rows) + len(rejected) == 4 and [r["line"] for r in rejected] == [2, 3]
    first = rows[0]["entities"]
    assert [(m["id"], m["negated"]) for m in first] == [("ICD10CM:A00", False), ("ICD10CM:A00.0", True)]
    assert set(first[0]) >= {"id", "name", "kind", "start", "end", "rare", "negated"}
    assert rows[1]["entities"] == []

    cov = tmp_path / "cov"
    result = runner.invoke(
        app, ["entities", "coverage", "--tree", str(tree_dir), "--input", str(out), "--out", str(cov)]
    )
    assert result.exit_code == 0, result.output
    coverage = json.loads((cov / "coverage.json").read_text())
    assert coverage["summary"]["mentions"] == 2 and (cov / "plots" / "long_tail.png").exists()

    syn = tmp_path / "syn"
    result = runner.invoke(
        app,
        [
            "entities",
            "synthesize",
            "--tree",
            str(tree_dir),
            "--out",
            str(syn),
            "--coverage",
            str(cov),
            "--max-entities",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len((syn / "records.jsonl").read_text().splitlines()) >= 3 and (syn / "manifest.json").exists()


def test_clear_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        _app(),
        [
            "entities",
            "link",
            "--tree",
            str(tmp_path),
            "--input",
            str(tmp_path / "x.jsonl"),
            "--output",
            str(tmp_path / "o.jsonl"),
        ],
    )
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "x.jsonl").write_text("{}\n")
    result = runner.invoke(
        _app(),
        [
            "entities",
            "link",
            "--tree",
            str(tmp_path),
            "--input",
            str(tmp_path / "x.jsonl"),
            "--output",
            str(tmp_path / "o.jsonl"),
        ],
    )
    assert result.exit_code == 2 and "entities build" in result.output
