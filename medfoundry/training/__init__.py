"""Training stages of the recipe: continual pretraining (`pretrain`), SFT with structured reasoning (`sft`), RL with
GRPO (`grpo`), each a `run_*` entry point taking the profile and paths; rewards in `rewards/`, tools in `tools/`."""
