"""Screenshots of the step-through page, one per stage, at 1280x720 with the course model.

    PYTHONPATH=. python3 docs/figures/page/make_screenshots.py

Needs Playwright for Python and Debian's chromium at /usr/bin/chromium (no
``playwright install``). Writes docs/figures/page/step-1.png .. step-5.png next
to this script.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
PROMPT = "The return statement leaves the current function call with the expression list"


def small_png(png: bytes, colors: int = 256) -> bytes:
    """The screenshot with a palette of ``colors`` colours: a few times smaller, no visible change."""
    from PIL import Image  # installed with matplotlib

    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=colors).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def main(out_dir: Path = HERE) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from minitransformer.cli import load_course_model
    from minitransformer.core.fileio import atomic_write
    from minitransformer.trace.page import to_html

    model, tok, _ = load_course_model()
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "page.html"
        to_html(tok, model, PROMPT, path=page_path)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(page_path.as_uri())
            for step in range(1, 6):
                page.goto(f"{page_path.as_uri()}#step={step}")
                page.wait_for_selector(f'#view[data-step="{step}"]')
                if step == 1:
                    page.click('.tok[data-tok="2"]')  # a merged token, to show its tree
                if step == 4:
                    page.hover('.tok[data-query="6"]')
                path = out_dir / f"step-{step}.png"
                atomic_write(path, small_png(page.screenshot()))
                written.append(path)
            browser.close()
    return written


if __name__ == "__main__":
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
