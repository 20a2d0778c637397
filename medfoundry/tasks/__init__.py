"""What evaluation and training share about a question: the item and its answer type, the versioned prompt templates,
answer extraction, and which held-back records are for RL and which for evaluation.

`medfoundry.evaluation` and `medfoundry.training` both import this package and never each other.
"""
