"""Moved to `medfoundry.tasks.extractors` (shared by evaluation and training); this alias keeps code written against the
old path importing. New code imports `medfoundry.tasks.extractors`."""

from medfoundry.tasks.extractors import *  # noqa: F403
