"""Job kinds: one module per kind or close family; each registers its params spec and handler."""
