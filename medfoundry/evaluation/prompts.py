"""Moved to `medfoundry.tasks.prompts` (shared by evaluation and training); this alias keeps code written against the
old path importing. New code imports `medfoundry.tasks.prompts`."""

from medfoundry.tasks.prompts import *  # noqa: F403
