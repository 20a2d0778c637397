"""ConText cues for who has a condition and when (Harkema et al. 2009, "ConText: an algorithm for determining
negation, experiencer, and temporal status from clinical reports", J Biomed Inform 42:839).

Trigger phrases follow medspaCy's default ConText rules (medspacy 1.3.1, `medspacy/resources/context_rules.json`:
FAMILY and HISTORICAL categories), trimmed to phrases our word-boundary scan can match. They live in the linker's
Aho-Corasick automaton next to the NegEx cues, so experiencer and temporality cost no second pass: a mention is
`experiencer="family"` when a family cue ends at most `scope_words` words before it (or a post-cue starts right after
it) with no sentence end in between, and `temporality="historical"` likewise for a historical cue.
"""

from __future__ import annotations

FAMILY_PRE = (
    "family history of",
    "family history",
    "family hx",
    "fh of",
    "fhx",
    "mother",
    "mother's",
    "father",
    "father's",
    "brother",
    "brothers",
    "sister",
    "sisters",
    "sibling",
    "siblings",
    "parent",
    "parents",
    "grandmother",
    "grandfather",
    "grandparent",
    "aunt",
    "uncle",
    "cousin",
    "maternal",
    "paternal",
    "his mom",
    "her mom",
    "his dad",
    "her dad",
    "daughter",
    "son",
    "twin",
    "relative",
    "relatives",
    "first degree relative",
)
FAMILY_POST = (
    "in mother",
    "in her mother",
    "in his mother",
    "in father",
    "in her father",
    "in his father",
    "in the family",
    "runs in the family",
    "in a sibling",
    "in siblings",
    "in relatives",
)
HISTORICAL_PRE = (
    "history of",
    "hx of",
    "h o",
    "past history of",
    "past medical history",
    "past medical history of",
    "pmh",
    "pmhx",
    "previous",
    "previously",
    "prior",
    "prior history of",
    "status post",
    "s p",
    "remote history of",
    "childhood",
    "as a child",
    "resolved",
    "in remission",
)
HISTORICAL_POST = (
    "in the past",
    "years ago",
    "months ago",
    "as a child",
    "in childhood",
    "previously",
    "in remission",
    "which resolved",
    "has resolved",
)
# Phrases that contain a cue but are not one ("history of present illness" is the current problem).
CONTEXT_PSEUDO = (
    "history of present illness",
    "history of the present illness",
)
# Characters that end an experiencer/temporality scope: sentence ends, not colons ("Family history: ...").
SCOPE_END_CHARS = ".;!?"
