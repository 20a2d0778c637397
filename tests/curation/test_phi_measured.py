"""PHI recall measured on notes written by a tool written by others (presidio-evaluator's data generator).

The full figure (1,000 notes, per category, plus clinical-term retention on MTS-Dialog) comes from
benchmarks/phi_benchmark.py and lives in docs/phi.md; this runs a smaller sample, another seed, the same thresholds.
"""

from __future__ import annotations

import pytest

from medfoundry.deid.engine import default_deidentifier
from medfoundry.deid.measure import generated_notes, recall_on_generated

pytest.importorskip("presidio_evaluator", reason="presidio-evaluator is installed by make setup (--no-deps)")

PER_CATEGORY_MIN = {"names": 0.95, "dates": 0.95, "locations": 0.95, "identifiers": 0.95, "contacts": 0.95}
OVERALL_MIN = 0.99


def test_recall_per_category_on_presidio_evaluator_generated_notes():
    samples = generated_notes(150, seed=7)
    result = recall_on_generated(default_deidentifier(), samples)
    misses = [(m["category"], m["value"]) for m in result["misses"][:15]]
    print(f"\nPHI recall on {result['notes']} generated notes: {result['overall_recall']:.4f} {result['counts']}")
    assert result["identifiers"] >= 150
    for category, minimum in PER_CATEGORY_MIN.items():
        assert result["recall"][category] >= minimum, (category, result["counts"], misses)
    assert result["overall_recall"] >= OVERALL_MIN, (result["counts"], misses)
