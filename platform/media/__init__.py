"""Media: ingest of footage, synthetic footage, uploads, and import/export of annotations."""
