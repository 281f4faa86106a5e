"""Alembic migrations of the segloop schema (shipped as segloop.migrations)."""
