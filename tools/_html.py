"""HTML as readable text, with the stdlib's `html.parser` (no extra dependency).

Scripts, styles and other parts that are not text are dropped; block elements
start new lines, list items get a "- ", headings "#"s. It is for a model to
read, not a faithful rendering: links' targets and tables' layout are lost.

The page is hostile input, so the work is linear in its size. The parser is
fed the whole page once and never closed: `close()` re-reads the rest of the
page from each unterminated `<!--` or `<a` (quadratic: 100 KB of `<!--` took
half a minute). Markup left open at the end runs to the end, as in a browser,
and is dropped. A `<` that starts no markup is escaped first, so a run of them
is read as text at once rather than one character at a time.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "canvas"})
_BLOCK = frozenset(
    {
        *("address", "article", "aside", "blockquote", "br", "dd", "details", "div", "dl", "dt", "fieldset"),
        *("figcaption", "figure", "footer", "form", "header", "hr", "li", "main", "nav", "ol", "p", "pre"),
        *("section", "summary", "table", "tr", "ul", "h1", "h2", "h3", "h4", "h5", "h6"),
    }
)
_ITEMS = frozenset({"li", "dt", "dd", "tr", "br"})
"""Block elements that end a line but no paragraph: no blank line after them."""
_SPACES = re.compile(r"[ \t\r\f\v]+")
_LONE_LT = re.compile(r"<(?![A-Za-z/!?])")
"""A `<` that starts no tag, end tag, comment, declaration or processing instruction: text."""


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping: list[str] = []  # the open elements whose text is dropped, innermost last
        self.title = ""
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        elif tag in _SKIP:
            self.skipping.append(tag)
        if self.skipping:
            return
        if tag in _BLOCK:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self.parts.append("#" * int(tag[1]) + " ")
        elif tag == "td" or tag == "th":
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif self.skipping and tag == self.skipping[-1]:
            self.skipping.pop()
        elif not self.skipping and tag in _BLOCK and tag not in _ITEMS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
        elif not self.skipping:
            self.parts.append(data)

    def finish(self) -> None:
        """Take what `feed` left unparsed, instead of `close()` (see the module): text kept back
        in case an entity went on (`AT&T` at the end) is text; markup, a script or a style left open is dropped."""
        rest, self.rawdata = self.rawdata, ""
        if rest and not rest.startswith("<") and self.cdata_elem is None:
            self.handle_data(html.unescape(rest))


def html_to_text(page: str) -> str:
    """The readable text of an HTML document: its title first, then its body's text."""
    parser = _Text()
    parser.feed(_LONE_LT.sub("&lt;", page))
    parser.finish()
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parser.parts).split("\n"))
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    title = _SPACES.sub(" ", parser.title).strip()
    return f"{title}\n\n{body}".strip() if title else body
