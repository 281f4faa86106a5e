"""Core: settings, atomic file writes, the DAVIS layout, image/mask helpers, device choice, typed coercion, errors.

Imports nothing else from segloop."""
