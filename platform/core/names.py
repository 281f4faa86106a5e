"""Names people type (projects, label classes, users): one rule for what is allowed, with a message saying why not."""
from __future__ import annotations

import json
import re
import unicodedata

from segloop.platform.core.errors import ValidationError

USER_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
LABEL_CLASS_NAME_MAX = 120
INVISIBLE_CATEGORIES = ("Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp")  # control, format (bidi, zero-width), unassigned,
# private use, surrogates, line/paragraph separators


def value_kind(value: object) -> str:
    """What a value is, in JSON's words (for messages: never a Python type name)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    names = {dict: "an object", list: "a list", tuple: "a list", str: "a string", type(None): "null"}
    return names.get(type(value), "a value of another kind")


def shown(value: object, limit: int = 60) -> str:
    """A value as JSON writes it (`true`, `null`, `"x"`, `[1]`), cut short: how a file's value is quoted to a person."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_name(what: str, value: object, max_length: int = 200) -> str:
    """The stripped name in Unicode's composed form (NFC), or ValidationError: empty, too long, a path separator, a
    control character, a leading dot. Composed, 'café' typed either way is one name (it made two tags that look
    alike, and a 60-letter decomposed name counted 120 characters)."""
    if not isinstance(value, str):
        raise ValidationError(f"{what}: expected text, got {value_kind(value)}")
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise ValidationError(f"{what}: must not be empty")
    if len(name) > max_length:
        raise ValidationError(f"{what}: {len(name)} characters, at most {max_length} allowed")
    if "/" in name or "\\" in name:
        raise ValidationError(f"{what}: {name!r} contains a path separator (/ or \\)")
    bad = next((c for c in name if unicodedata.category(c) in INVISIBLE_CATEGORIES), None)
    if bad is not None:
        raise ValidationError(f"{what}: contains the control or invisible character U+{ord(bad):04X}")
    if name.startswith("."):
        raise ValidationError(f"{what}: {name!r} starts with a dot")
    return name


def check_user_name(value: object) -> str:
    """A user name: 1-64 ASCII letters, digits, '.', '_', '@' or '-', starting with a letter or digit."""
    name = check_name("user name", value, 64)
    if not USER_NAME_PATTERN.fullmatch(name):
        raise ValidationError(f"user name: {name!r} may only hold ASCII letters (a-z, A-Z), digits, '.', '_', '@' "
                              "and '-', and must start with a letter or digit")
    return name


def check_comment(what: str, value: object, max_length: int = 2000) -> str:
    """Free text (a review comment): stripped, bounded, control characters other than newlines and tabs removed."""
    if not isinstance(value, str):
        raise ValidationError(f"{what}: expected text, got {value_kind(value)}")
    text = "".join(c for c in value if c in "\n\t" or unicodedata.category(c) not in INVISIBLE_CATEGORIES).strip()
    if len(text) > max_length:
        raise ValidationError(f"{what}: {len(text)} characters, at most {max_length} allowed")
    return text
