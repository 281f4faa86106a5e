"""Text people typed (project, video, class, tag and user names, comments, file names) or that a job or a service
wrote, shown as itself where Streamlit renders Markdown: captions, alerts, expander, button and widget labels,
progress texts and image captions. Without it `[here](https://…)` is a live link and `![x](https://…)` loads an
image. Inline markup characters are escaped everywhere, block markers (`#`, `-`, `1.`, `>`, …) at a line's start."""
from __future__ import annotations

import re

# code, emphasis, links, images, HTML, entities, maths, tables (an underscore inside a word means nothing there)
# ("<" only where a tag or an autolink could start: "a <= b" stays as written; ">" quotes only at a line's start)
_INLINE = re.compile(r"([\\`*~\[\]&$|]|<(?=[A-Za-z/!?])|(?<!\w)_|_(?!\w))")
_LINE_START = re.compile(r"^(\d*)([!\"#%'()+,\-.;=?@^{}>])")  # other punctuation: a heading, list, quote or rule
# GitHub-flavoured autolinks (www.x, https://x, a@b.c) and shortcodes (`:smile:`, `:material/…:`) ignore escapes:
# an invisible word joiner breaks the pattern
_UNLINK = re.compile(r"(?i)(?:(?<=www)|(?<=http)|(?<=https)|(?<=ftp)|(?<=mailto)|(?<=xmpp))(?=[.:])|(?=@)"
                     r"|(?<=:)(?=[-+\w/]+:)")
WORD_JOINER = "\u2060"


def literal(text: object, *, one_line: bool = False) -> str:
    """`text` as Markdown that shows exactly these characters (no link, image, heading, list, emphasis, HTML, maths
    or icon); its line breaks stay breaks, or become spaces with `one_line` (labels and captions)."""
    lines = [_UNLINK.sub(WORD_JOINER, _LINE_START.sub(r"\1\\\2", _INLINE.sub(r"\\\1", line.strip())))
             for line in str(text).splitlines()]
    return (" " if one_line else "  \n").join(lines)
