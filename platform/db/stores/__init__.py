"""Store layer: one module per aggregate; functions take a Session and return entities."""
from segloop.platform.core.errors import NotFoundError

__all__ = ["NotFoundError"]
