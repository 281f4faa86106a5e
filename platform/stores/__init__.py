"""Store layer: one module per aggregate; functions take a Session and return entities."""


class NotFoundError(LookupError):
    """A referenced row does not exist; the message names what was looked for."""
