"""The step-through page fits the window between the narrow layout (<= 900 px) and the projected 1280x720.

A laptop half-screen or a small projector is 901..1199 px wide: there every stage's figures must fit
inside ``#view`` (no inner sideways scrollbar, nothing cut off) and nothing may stick out of the window.
Browser and fixtures as in test_page.py (skipped, with the reason, without Playwright or chromium).
"""

import pytest

from test_page import TEXT, VARIANTS, browser, course, course_page, open_page, prompt_of, small_tok, tiny_model  # noqa: F401
from minitransformer.trace.page import to_html

WIDTHS = [901, 960, 1024, 1100, 1280]

# every element's box against the window, and #view's scroll width against its own width
OVERFLOW = """() => {
  const v = document.querySelector('#view'), W = innerWidth, out = [];
  for (const e of document.querySelectorAll('body *')) {
    const r = e.getBoundingClientRect();
    if (r.width && (r.left < -1 || r.right > W + 1)) out.push((e.id ? '#' + e.id : e.tagName.toLowerCase()) + ' to ' + Math.round(r.right));
  }
  return {scroll: v.scrollWidth, client: v.clientWidth, page: document.documentElement.scrollWidth, outside: out.slice(0, 5)};
}"""


@pytest.fixture(scope="module")
def pages(course, course_page, small_tok, tmp_path_factory):
    """The course page of test_page.py (12 tokens), a 32-token one (wider figures) and an MLA toy (its cache panel)."""
    model, tok = course
    folder = tmp_path_factory.mktemp("widths")
    to_html(tok, model, prompt_of(tok, 32), path=folder / "course32.html")
    to_html(small_tok, tiny_model(**VARIANTS["mla"]), TEXT, path=folder / "mla.html")
    long = " ".join(["The return statement leaves the current function call with the value."] * 12)  # ~150 tokens
    to_html(tok, model, long, path=folder / "long.html")
    return {"course": course_page[0], "course32": folder / "course32.html", "mla": folder / "mla.html",
            "long": folder / "long.html"}


@pytest.mark.parametrize("which", ["course", "course32", "mla", "long"])
@pytest.mark.parametrize("width", WIDTHS)
def test_browser_figures_fit_the_view_between_narrow_and_projected(browser, pages, width, which):
    page, log = open_page(browser, pages[which], width=width, height=720)
    for step in range(1, 6):
        page.click(f'#stagebar [data-go="{step}"]', timeout=15000)
        assert page.get_attribute("#view", "data-step") == str(step)
        got = page.evaluate(OVERFLOW)
        assert got["scroll"] <= got["client"] + 2, f"stage {step}: the figures are {got['scroll']} px wide in a {got['client']} px view"
        assert got["page"] <= width, f"stage {step}: the page scrolls sideways"
        assert got["outside"] == [], f"stage {step}: sticking out of the {width} px window: {got['outside']}"
    clipped = page.evaluate("() => [...document.querySelectorAll('#stagebar button')]"
                            ".filter(b => b.scrollWidth > b.clientWidth + 1).map(b => b.textContent.trim())")
    assert clipped == [], f"stage names cut off at {width} px: {clipped}"
    assert log["errors"] == []
    page.close()


def test_browser_middle_screen_keeps_the_concept_beside_the_figures(browser, course_page):
    """Between 901 and 1199 px the concept column narrows (down to 240 px) but stays to the left of the figures."""
    page, _ = open_page(browser, course_page[0], width=960, height=720)
    concept = page.eval_on_selector("#concept", "e => e.getBoundingClientRect().toJSON()")
    view = page.eval_on_selector("#view", "e => e.getBoundingClientRect().toJSON()")
    assert 240 <= concept["width"] < 290 and concept["right"] <= view["left"] + 1 and concept["top"] == view["top"]
    page.close()
