"""Medical Entity Tree: sources, tree builder, linker, coverage, rebalancing, knowledge-centric synthesis."""
