"""Stage entry points called by the KFP components, the pipeline registry, compilation and local runs."""
