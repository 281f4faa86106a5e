"""Media: ingest of footage (videos, frame folders), synthetic footage, and import/export of annotations."""
