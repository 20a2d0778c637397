"""Versioned KFP pipelines. Each sub-package exposes `pipeline` (a @dsl.pipeline function) and `PIPELINE_NAME`."""
