"""One kind of progress bar for every long job (training a tokenizer, training a model): tqdm.

In a terminal it is tqdm's text bar on stderr; in a notebook (with ipywidgets) it
is tqdm's widget. note: a notebook saved with its outputs keeps, beside the
widget, the plain text that a viewer without widgets shows, and tqdm writes that
text when the bar appears (at 0 %). Here a notebook bar is shown with a display
id and, when it closes, shown again in place, so the saved text is where the bar
ended. Nothing else changes.
"""

from __future__ import annotations


def progress_bar(total: int, initial: int = 0, **kwargs):
    """A tqdm bar over ``total`` units starting at ``initial`` (keyword arguments go to tqdm)."""
    from tqdm import notebook
    from tqdm.auto import tqdm

    if not issubclass(tqdm, notebook.tqdm):  # a terminal, or a notebook without ipywidgets
        return tqdm(total=total, initial=initial, **kwargs)
    from IPython.display import display

    bar = tqdm(total=total, initial=initial, display=False, **kwargs)
    handle = display(bar.container, display_id=True)
    close = bar.close

    def close_and_keep_the_final_text():
        if not bar.disable:
            close()
            handle.update(bar.container)  # the saved text/plain: the final state, not 0 %

    bar.close = close_and_keep_the_final_text
    return bar
