"""`medfoundry promote` / `medfoundry rollback` end to end through the CLI."""

from __future__ import annotations

from typer.testing import CliRunner

from medfoundry.release import registry

GOOD = {"heldout/accuracy": 0.62, "heldout/ci95_lo": 0.55, "heldout/ci95_hi": 0.69, "heldout/unparseable_rate": 0.1}
REGRESSED = {"heldout/accuracy": 0.50, "heldout/ci95_lo": 0.44, "heldout/ci95_hi": 0.56, "heldout/unparseable_rate": 0.1}
LINEAGE = {"pipeline_run_id": "run-1", "dataset_hash": "abc123", "base_model": "tiny", "git_sha": "deadbee"}


def test_promote_refuse_and_rollback_via_cli(profile, model_dir, workspace):
    from medfoundry.cli import app

    name = profile.tracking.registered_model
    common = ["--set", f"workspace={workspace}", "--set", "gates.min_scores={heldout: 0.3}"]
    runner = CliRunner()

    registry.register_model_version(model_dir, name, LINEAGE, GOOD)
    promoted = runner.invoke(app, ["promote", "--env", "dev", *common])
    assert promoted.exit_code == 0, promoted.output
    assert "promoted" in promoted.output and "min_score" in promoted.output

    registry.register_model_version(model_dir, name, LINEAGE, REGRESSED)
    refused = runner.invoke(app, ["promote", "--model", name, "--env", "dev", *common])
    assert refused.exit_code == 1 and "refused" in refused.output and "FAIL" in refused.output
    assert registry.version_by_alias(name, "dev").version == "1"

    back = runner.invoke(app, ["rollback", "--env", "dev", *common])
    assert back.exit_code == 0 and "no model served" in back.output
    nothing = runner.invoke(app, ["rollback", "--env", "dev", *common])
    assert nothing.exit_code == 2 and "nothing to roll back" in nothing.output
    bad_env = runner.invoke(app, ["promote", "--env", "qa", *common])
    assert bad_env.exit_code == 2 and "unknown environment" in bad_env.output
