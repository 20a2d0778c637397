"""Unified medical evaluation: benchmark adapters, prompts, answer extraction, metrics, backends and reports.

Entry points: `medfoundry.evaluation.runner.evaluate` (library), `medfoundry.evaluation.recipe.evaluate_model`
(the pipeline's evaluate stage) and the `medfoundry eval` command (medfoundry/evaluation/cli.py).
"""
