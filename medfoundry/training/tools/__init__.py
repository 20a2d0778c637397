"""Tools a policy can call during GRPO (TRL `tools=[fn]`): real lookups over dictionaries shipped on PyPI.

Each tool is a plain function with a Google-style docstring (TRL/transformers build the JSON schema from it) that
returns a string. `profile.rl.tools` names them; the `tool_use` reward scores the decision trace.
"""

from __future__ import annotations

from collections.abc import Callable

from medfoundry.training.tools.drugs import drug_lookup
from medfoundry.training.tools.icd10 import icd10_lookup

TOOLS: dict[str, Callable[..., str]] = {"icd10_lookup": icd10_lookup, "drug_lookup": drug_lookup}


def resolve_tools(names: list[str]) -> list[Callable[..., str]]:
    unknown = sorted(set(names) - set(TOOLS))
    if unknown:
        raise ValueError(f"rl.tools: unknown tool(s) {', '.join(unknown)}; known: {', '.join(sorted(TOOLS))}")
    return [TOOLS[name] for name in names]
