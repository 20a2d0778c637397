"""Curation: reading user corpora, cleaning (dedup, quality, PHI), decontamination, the curate orchestrator, Feast."""
