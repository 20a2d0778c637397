"""Dataset records and the on-disk dataset layout shared by every stage."""
