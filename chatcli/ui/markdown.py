"""Model text as markdown: rich's Markdown with HTML left as text, and code drawn as it was written.

The renderers draw replies with it, and `sessions show` draws saved ones; it
draws a document and knows nothing of streaming.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from markdown_it import MarkdownIt

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions


@functools.cache
def _text_markdown_class():
    from rich.markdown import CodeBlock, Markdown  # lazy: keeps rich off the startup path

    # Built once: rich's own __init__ makes a parser per document, which costs more than
    # parsing a typical block. This sets what rich's __init__ sets (rich 13-14), with ours.
    parser = MarkdownIt().enable("strikethrough").enable("table").disable(["html_inline", "html_block"])

    class Code(CodeBlock):
        """Highlighted code without rich's padding or wrapping (a long line is cut in the live tail only)."""

        def __rich_console__(self, console: Console, options: ConsoleOptions):
            yield code_text(str(self.text).rstrip(), self.lexer_name, self.theme)

    class TextMarkdown(Markdown):
        """rich's Markdown with HTML parsing off: tags the model writes stay visible text.

        rich drops HTML tokens, so `use <br> here` would lose its tag, and a
        `<details>` block would vanish.
        """

        elements = {**Markdown.elements, "fence": Code, "code_block": Code}

        def __init__(self, markup: str, *, code_theme: str = "monokai", hyperlinks: bool = False) -> None:
            self.markup = markup
            self.parsed = parser.parse(markup)
            self.code_theme = code_theme
            self.justify = None
            self.style = "none"
            self.hyperlinks = hyperlinks
            self.inline_code_lexer = None
            self.inline_code_theme = code_theme

    return TextMarkdown


def code_text(code: str, lexer: str, theme: str):
    """Code highlighted by language, as one Text that is never wrapped: its lines are the code's lines."""
    from rich.syntax import Syntax  # lazy: keeps rich off the startup path

    text = Syntax(code, lexer, theme=theme).highlight(code)
    text.rstrip()
    text.no_wrap, text.overflow, text.end = True, "ignore", "\n"
    return text


def markdown(text: str, *, code_theme: str = "monokai"):
    """A renderable for model text: markdown without HTML, links with their URL shown."""
    return _text_markdown_class()(text, code_theme=code_theme, hyperlinks=False)


def ends_with_spacing(md) -> bool:
    """Whether rich would put a blank line after this document's last block.

    rich separates top-level blocks by the `new_line` flag of the block before;
    printing blocks one by one has to carry that flag across.
    """
    from rich.markdown import UnknownElement  # lazy: keeps rich off the startup path

    for token in reversed(md.parsed):
        if token.level == 0 and token.nesting in (-1, 0) and token.type != "inline":
            return (md.elements.get(token.type) or UnknownElement).new_line
    return False
