"""MLflow on PostgreSQL, as the chart runs it (`--backend-store-uri postgresql+psycopg://...`): a real server
started by the test. Runs, metrics, a registered version with lineage tags and an alias round trip."""

from __future__ import annotations


def test_mlflow_tracking_and_registry_on_postgresql(postgres_server, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    uri = postgres_server("mlflow")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment("pg-check", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment_id, tags={"medfoundry.stage": "sft"})
    for step, loss in enumerate([2.0, 1.5, 1.1]):
        client.log_metric(run.info.run_id, "loss", loss, step=step)
    client.set_terminated(run.info.run_id)
    client.create_registered_model("pg-medvlm")
    version = client.create_model_version("pg-medvlm", source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id,
                                          tags={"lineage.git_sha": "abc1234"})
    client.set_registered_model_alias("pg-medvlm", "champion", version.version)

    # A second client (another pod) reads everything back from the database.
    reader = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert [m.value for m in reader.get_metric_history(run.info.run_id, "loss")] == [2.0, 1.5, 1.1]
    champion = reader.get_model_version_by_alias("pg-medvlm", "champion")
    assert champion.version == version.version and champion.tags["lineage.git_sha"] == "abc1234"
    assert mlflow.get_tracking_uri() != uri  # the test never changed the process-wide store
