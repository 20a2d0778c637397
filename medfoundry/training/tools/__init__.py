"""Tools a policy can call during GRPO (TRL `tools=[fn]`): clinical calculators and lookups over dictionaries shipped
on PyPI, all with verifiable outputs.

Each tool is a plain function with a Google-style docstring (TRL/transformers build the JSON schema from it) that
returns a string. `profile.rl.tools` names them; the `tool_use` reward scores the decision trace and checks that the
final answer uses the tool's result. `medfoundry.training.agentic` generates tasks that need them.
"""

from __future__ import annotations

from collections.abc import Callable

from medfoundry.training.tools.calculators import anion_gap, bmi, cha2ds2_vasc, egfr_ckd_epi_2021, qtc_bazett
from medfoundry.training.tools.drugs import drug_lookup
from medfoundry.training.tools.hpo import hpo_search
from medfoundry.training.tools.icd10 import icd10_lookup

TOOLS: dict[str, Callable[..., str]] = {
    fn.__name__: fn
    for fn in (icd10_lookup, drug_lookup, hpo_search, egfr_ckd_epi_2021, bmi, cha2ds2_vasc, qtc_bazett, anion_gap)
}


def resolve_tools(names: list[str]) -> list[Callable[..., str]]:
    unknown = sorted(set(names) - set(TOOLS))
    if unknown:
        raise ValueError(f"rl.tools: unknown tool(s) {', '.join(unknown)}; known: {', '.join(sorted(TOOLS))}")
    return [TOOLS[name] for name in names]
