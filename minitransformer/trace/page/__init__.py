"""The step-through demo as one offline HTML page (data, script and style inlined).

    to_html(tokenizer, model, text, path=None) -> str   the page; written atomically when path is given
    page_data(tokenizer, model, text) -> dict           what the page shows, as JSON-ready data
    show(tokenizer, model, text)                        the page inline in a Jupyter notebook
"""

from .build import PageDisplay, page_data, render, show, to_html

__all__ = ["PageDisplay", "page_data", "render", "show", "to_html"]
