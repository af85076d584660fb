"""The one-file step-through page: self-contained, faithful to the model's cache, and working in a browser.

Pure-python tests always run. Browser tests drive Debian's chromium through Playwright for
Python and are skipped, with the reason, when either is absent.
"""

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from minitransformer import positional
from minitransformer.feedforward import mlp, output
from minitransformer.core.config import ModelConfig
from minitransformer.model import GPT, new_kv_cache
from minitransformer.model import forward as model_forward
from minitransformer.trace.page import PageDisplay, page_data, render, show, to_html
from minitransformer.tokenizer import Tokenizer
from minitransformer.trace.lens import logit_lens

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
TEXT = "the cat sat on the mat and the dog sat on the log"
VARIANTS = {
    "learned": {},
    "sinusoidal": {"positional": "sinusoidal"},
    "rope": {"positional": "rope"},
    "gqa": {"positional": "rope", "n_kv_heads": 2},
    "mqa": {"n_kv_heads": 1},
    "mla": {"attention": "mla", "positional": "rope", "d_latent": 8},
    "mla-learned": {"attention": "mla", "d_latent": 8},
    "swiglu-rmsnorm": {"ffn": "swiglu", "norm": "rmsnorm", "positional": "none"},
}


@pytest.fixture(scope="module")
def small_tok():
    return Tokenizer.train("the cat sat on the mat. the dog sat on the log. " * 30, 300)


def tiny_model(**overrides):
    return GPT(ModelConfig.preset("toy", vocab_size=300, **overrides), seed=1)


@pytest.fixture(scope="module")
def course():
    from minitransformer.cli import load_course_model

    model, tok, _ = load_course_model()
    return model, tok


def prompt_of(tok, n: int) -> str:
    """The shortest prefix of a pydoc sentence that encodes to exactly ``n`` tokens."""
    base = ("The return statement leaves the current function call with the expression list (or None) "
            "as return value. When return passes control out of a try statement with a finally clause")
    for k in range(1, len(base) + 1):
        if len(tok.encode_ordinary(base[:k])) == n:
            return base[:k]
    raise AssertionError(f"no prefix encodes to {n} tokens")


def data_in(doc: str) -> dict:
    """The JSON the page carries, read back out of the HTML."""
    m = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', doc, re.S)
    assert m, "the page has no data block"
    return json.loads(m.group(1))


# --------------------------------------------------------------------------- one self-contained file
def test_one_file_with_nothing_external(small_tok):
    doc = to_html(small_tok, tiny_model(), TEXT)
    assert doc.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?:", doc, re.I), "an external URL is in the page"
    assert not re.search(r"""\b(src|href)\s*=""", doc, re.I), "the page references another file"
    assert "url(" not in doc and "@import" not in doc
    for call in ("fetch(", "XMLHttpRequest", "import(", "WebSocket", "sendBeacon"):
        assert call not in doc
    assert len(re.findall(r"<script\b", doc)) == 2 and len(re.findall(r"<style\b", doc)) == 1
    assert "{{" not in doc  # every placeholder was filled
    assert "default-src 'none'" in doc  # the page's own policy forbids any request


def test_hostile_prompt_stays_inside_the_data(small_tok):
    text = 'a </script><script src="https://x.example/y.js"></script> <!-- & {{JS}}'
    doc = to_html(small_tok, tiny_model(), text)
    assert len(re.findall(r"<script\b", doc)) == 2
    assert not re.search(r"https?://", doc)
    assert data_in(doc)["text"] == text


def test_html_carries_exactly_page_data(small_tok):
    model = tiny_model()
    assert data_in(to_html(small_tok, model, TEXT)) == json.loads(json.dumps(page_data(small_tok, model, TEXT)))


def test_written_atomically(small_tok, tmp_path):
    path = tmp_path / "page.html"
    doc = to_html(small_tok, tiny_model(), TEXT, path=path)
    assert path.read_text(encoding="utf-8") == doc
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]  # no temporary file left
    with pytest.raises(ValueError, match="does not exist"):
        to_html(small_tok, tiny_model(), TEXT, path=tmp_path / "missing" / "page.html")


def test_notebook_display_is_an_iframe_holding_the_page(small_tok):
    shown = show(small_tok, tiny_model(), TEXT)
    assert isinstance(shown, PageDisplay)
    m = re.fullmatch(r'<iframe srcdoc="([^"]*)" sandbox="allow-scripts" .*</iframe>', shown._repr_html_(), re.S)
    assert m and html.unescape(m.group(1)) == shown.doc


def test_bad_input_is_a_clear_error(small_tok):
    with pytest.raises(ValueError, match="empty"):
        page_data(small_tok, tiny_model(), "")
    with pytest.raises(ValueError, match=f"tokenizer has {small_tok.vocab_size} ids but the model only 200"):
        page_data(small_tok, GPT(ModelConfig.preset("toy", vocab_size=200), seed=0), TEXT)


def test_size_of_a_32_token_page_of_the_course_model(course):
    model, tok = course
    doc = to_html(tok, model, prompt_of(tok, 32))
    assert len(data_in(doc)["ids"]) == 32
    assert len(doc.encode("utf-8")) <= 2_000_000


# --------------------------------------------------------------------------- the data is the cache
def check_against_cache(tok, model, text):
    data = data_in(to_html(tok, model, text))
    cfg = model.config
    ids = tok.encode_ordinary(text)[-cfg.context_length:]
    assert data["ids"] == ids
    T = len(ids)
    logits, cache = model.run_with_cache(np.array([ids]))
    for i in range(cfg.n_layers):
        pattern = cache[f"blocks.{i}.attn.hook_pattern"][0]  # (H, T, T)
        for h in range(cfg.n_heads):
            for t in range(T):
                np.testing.assert_allclose(data["retrieval"]["patterns"][i][h][t], pattern[h, t, :t + 1], atol=5e-4 + 1e-7)
    np.testing.assert_allclose(data["processing"]["logits"], logits[0, -1], atol=5e-5 + 1e-6)
    page_logits = np.array(data["processing"]["logits"])
    for temperature, top_k, top_p in [(1.0, None, None), (0.5, None, 0.9), (1.7, 20, 0.5), (0.05, None, None), (0, None, None)]:
        np.testing.assert_allclose(output.probabilities(page_logits, temperature, top_k, top_p),
                                   output.probabilities(logits[0, -1], temperature, top_k, top_p), atol=1e-3)
    for t in (0, T - 1):
        for row, page_row in zip(logit_lens(model, cache, position=t, k=5), data["processing"]["lens"][t]):
            assert page_row[0] == row["top_ids"]
            np.testing.assert_allclose(page_row[1], row["top_probs"], atol=5e-5 + 1e-9)
    post = np.abs(cache["blocks.0.mlp.hook_post"][0]).mean(axis=1)  # (T,)
    np.testing.assert_allclose(data["processing"]["mlp_mean_abs"][0], post, rtol=0.01, atol=1e-3 * post.max())
    if "hook_pos_embed" in cache:
        pos = cache["hook_pos_embed"]
        np.testing.assert_allclose(data["indexing"]["values"], pos, atol=np.abs(pos).max() * 1e-2)
    assert data["generation"]["ids"] == model.generate(np.array([ids]), 24, temperature=0.8, top_k=40, seed=0,
                                                        crop=True)[0, T:].tolist()
    gen = data["generation"]
    if all(i < tok.vocab_size for i in gen["ids"]):
        assert gen["text"] == tok.decode(gen["ids"])
    else:  # the model has rows the tokenizer never produces; a sample may still pick one
        assert "<unused " in gen["text"]
    return data, cache


def test_data_equal_to_the_cache_on_the_course_model(course):
    model, tok = course
    data, _ = check_against_cache(tok, model, prompt_of(tok, 12))
    W_E = model.params["embed"]["W_E"][:tok.vocab_size]
    assert len(data["classification"]["xy"]) == tok.vocab_size
    first = data["ids"][0]
    from minitransformer.embedding import nearest

    assert [j for j, _ in data["classification"]["nearest"][str(first)]] == [j for j, _ in nearest(W_E, first, k=6)]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant(small_tok, variant):
    model = tiny_model(**VARIANTS[variant])
    data, cache = check_against_cache(small_tok, model, TEXT)
    cfg, T = model.config, len(data["ids"])
    assert len(data["retrieval"]["patterns"]) == cfg.n_layers and len(data["retrieval"]["patterns"][0]) == cfg.n_heads
    kind = data["indexing"]["kind"]
    assert kind == {"learned": "vectors", "sinusoidal": "vectors", "rope": "angles", "none": "none"}[cfg.positional]
    if kind == "angles":
        width = cfg.rope_dim if cfg.attention == "mla" else cfg.d_head
        cos, sin = positional.rope_angles(np.arange(T), width, cfg.rope_base)
        page = np.array(data["indexing"]["values"])  # (T, width/2)
        np.testing.assert_allclose(np.cos(page), cos, atol=1e-3)
        np.testing.assert_allclose(np.sin(page), sin, atol=1e-3)
    # the cache sizes shown are those of the model's own cache, filled by a real prefill
    kv = new_kv_cache(cfg, batch_size=1)
    model_forward(model.params, cfg, np.array([data["ids"]]), kv_cache=kv)
    shown = data["retrieval"]["cache"]
    assert shown["bytes_per_token"] * T == kv.nbytes
    assert shown["mha_bytes_per_token"] == 2 * cfg.n_layers * cfg.n_heads * cfg.d_head * 4
    if cfg.attention == "mla":
        assert shown["kind"] == "LatentKVCache" and shown["bytes_per_token"] < shown["mha_bytes_per_token"]


def test_prompt_longer_than_the_context_is_cropped(small_tok):
    model = tiny_model()
    text = TEXT * 3
    n = len(small_tok.encode_ordinary(text))
    assert n > model.config.context_length
    data, _ = check_against_cache(small_tok, model, text)
    assert len(data["ids"]) == model.config.context_length
    assert data["distinction"]["cropped"] == n - model.config.context_length


def test_merge_trees_rebuild_each_token(small_tok):
    data = page_data(small_tok, tiny_model(), TEXT)

    def leaves(node):
        return [node["id"]] if not node["children"] else [i for c in node["children"] for i in leaves(c)]

    for tk in data["distinction"]["tokens"]:
        tree = data["distinction"]["trees"][str(tk["id"])]
        assert bytes(leaves(tree)) == small_tok.token_bytes(tk["id"]) == bytes(tk["bytes"])


def test_render_fills_the_template_once(small_tok):
    data = page_data(small_tok, tiny_model(), TEXT)
    data["text"] = "{{DATA}} {{CSS}}"
    assert data_in(render(data))["text"] == "{{DATA}} {{CSS}}"


# --------------------------------------------------------------------------- in a browser
@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"the browser tests need chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, path: Path, hash_: str = "", wait: bool = True, width: int = 1280, height: int = 720):
    """A ``width``x``height`` page (1280x720 by default) on ``path``, recording console errors, page errors and every request."""
    page = browser.new_page(viewport={"width": width, "height": height})
    log = {"errors": [], "requests": []}
    page.on("console", lambda m: log["errors"].append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: log["errors"].append(str(e)))
    page.on("request", lambda r: log["requests"].append(r.url))
    page.goto(path.as_uri() + hash_)
    if wait:
        page.wait_for_selector("#view[data-step]")
    return page, log


@pytest.fixture(scope="module")
def course_page(course, tmp_path_factory):
    model, tok = course
    text = prompt_of(tok, 12)
    path = tmp_path_factory.mktemp("page") / "page.html"
    to_html(tok, model, text, path=path)
    ids = tok.encode_ordinary(text)
    logits, cache = model.run_with_cache(np.array([ids]))
    return path, ids, logits, cache


def test_browser_loads_offline_without_errors(browser, course_page):
    path = course_page[0]
    page, log = open_page(browser, path)
    for step in range(1, 6):  # every stage draws without an error
        page.click(f'#stagebar [data-go="{step}"]')
        assert page.get_attribute("#view", "data-step") == str(step)
        assert page.inner_text("#view").strip()
    assert log["errors"] == []
    assert set(log["requests"]) == {path.as_uri()}
    page.close()


@pytest.mark.parametrize("variant", ["mla", "gqa", "sinusoidal", "swiglu-rmsnorm"])
def test_browser_every_variant_draws(browser, small_tok, tmp_path, variant):
    path = tmp_path / "page.html"
    to_html(small_tok, tiny_model(**VARIANTS[variant]), TEXT, path=path)
    page, log = open_page(browser, path)
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    assert page.get_attribute("#view", "data-step") == "5"
    assert log["errors"] == [] and set(log["requests"]) == {path.as_uri()}
    page.close()


def test_browser_arrow_keys_and_hash(browser, course_page):
    path = course_page[0]
    page, _ = open_page(browser, path, "#step=2")
    assert page.get_attribute("#view", "data-step") == "2"
    page.keyboard.press("ArrowLeft")
    seen = [page.get_attribute("#view", "data-step")]
    for _ in range(5):  # one press past the end stays on stage 5
        page.keyboard.press("ArrowRight")
        seen.append(page.get_attribute("#view", "data-step"))
        assert page.evaluate("location.hash") == f"#step={seen[-1]}"
        assert page.get_attribute('#stagebar [aria-current="step"]', "data-go") == seen[-1]
    assert seen == ["1", "2", "3", "4", "5", "5"]
    page.close()


def test_browser_keyboard_selects_tokens_and_heads(browser, course_page):
    path, ids = course_page[0], course_page[1]
    page, _ = open_page(browser, path, "#step=1")
    page.focus('.tok[data-tok="3"]')
    page.keyboard.press("Enter")
    assert f"id {ids[3]}" in page.inner_text("#tok-detail")
    page.goto(path.as_uri() + "#step=4")
    page.wait_for_selector('#view[data-step="4"]')
    page.focus('[data-head="5"]')
    page.keyboard.press(" ")
    assert page.get_attribute("#weights", "data-layer") == "1" and page.get_attribute("#weights", "data-head") == "1"
    page.close()


def test_browser_hover_shows_the_cache_attention_weights(browser, course_page):
    path, ids, _, cache = course_page
    page, _ = open_page(browser, path, "#step=4")
    H = cache["blocks.0.attn.hook_pattern"].shape[1]
    for layer, head in [(0, 0), (2, 3)]:
        page.click(f'[data-head="{layer * H + head}"]')
        for t in (0, 5, len(ids) - 1):
            page.hover(f'.tok[data-query="{t}"]')
            assert page.get_attribute("#weights", "data-query") == str(t)
            shown = [float(x) for x in page.locator("#weights .w .num").all_inner_texts()]
            want = cache[f"blocks.{layer}.attn.hook_pattern"][0, head, t, :t + 1]
            np.testing.assert_allclose(shown, want, atol=5e-4 + 1e-6)  # 3 decimals on screen
    page.close()


def test_browser_temperature_gives_the_library_probabilities(browser, course_page):
    path, _, logits, _ = course_page
    page, _ = open_page(browser, path, "#step=5")
    for temperature, top_p in [("0.5", "1"), ("1.5", "0.8"), ("0", "1")]:
        page.eval_on_selector("#topp", "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }", top_p)
        page.eval_on_selector("#temp", "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }", temperature)
        want = output.probabilities(logits[0, -1], float(temperature), top_p=float(top_p))
        bars = page.locator("#probs .bar")
        for k in range(bars.count()):
            i, p = int(bars.nth(k).get_attribute("data-id")), float(bars.nth(k).get_attribute("data-p"))
            assert abs(p - want[i]) < 1e-3
            assert abs(float(bars.nth(k).locator(".val").inner_text().rstrip("%")) / 100 - want[i]) < 1e-3
    # the whole distribution, from the page's own function, for settings the sliders do not reach
    page_logits = page.evaluate("minitransformerPage.data.processing.logits")
    for temperature, top_k, top_p in [(0.07, 0, 1), (1.0, 50, 0.9), (2.5, 0, 0.3)]:
        got = page.evaluate("([t, k, p]) => minitransformerPage.probabilities(minitransformerPage.data.processing.logits, t, k, p)",
                            [temperature, top_k, top_p])
        want = output.probabilities(logits[0, -1], temperature, top_k or None, top_p)
        assert np.abs(np.array(got) - want).max() < 1e-3
        assert np.abs(np.array(got) - output.probabilities(np.array(page_logits), temperature, top_k or None, top_p)).max() < 1e-9
    page.close()



def box(page, sel: str) -> dict:
    return page.eval_on_selector(sel, "e => { const r = e.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; }")


@pytest.mark.parametrize("width", [400, 768, 1280])
def test_browser_narrow_screen_keeps_every_control_reachable(browser, course_page, width):
    """A phone or half a laptop screen: no sideways scroll, every stage button and arrow takes a real click
    (Playwright's click fails when another element covers the button); below 900px the concept stacks above."""
    path = course_page[0]
    page, log = open_page(browser, path, width=width, height=800)
    for step in range(1, 6):
        page.click(f'#stagebar [data-go="{step}"]', timeout=15000)
        assert page.get_attribute("#view", "data-step") == str(step)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, f"the page scrolls sideways on stage {step}"
        for sel in ("#stagebar", "#prev", "#next", "#view"):
            b = box(page, sel)
            assert b["left"] >= 0 and b["right"] <= width, f"{sel} sticks out of the window on stage {step}"
        concept, view = box(page, "#concept"), box(page, "#view")
        if width < 900:
            assert concept["bottom"] <= view["top"] + 1  # stacked: the text above the figures
        else:
            assert concept["right"] <= view["left"] + 1 and concept["top"] == view["top"]  # side by side
    for button, want in [("#prev", "4"), ("#prev", "3"), ("#next", "4"), ("#next", "5")]:
        page.click(button, timeout=15000)
        assert page.get_attribute("#view", "data-step") == want
    assert log["errors"] == []
    page.close()


def test_browser_focus_stays_on_an_arrow(browser, course_page):
    """Stepping never drops keyboard focus to <body>: at the last stage -> is disabled, so focus moves to <-."""
    path = course_page[0]
    page, _ = open_page(browser, path, "#step=1")
    active = "document.activeElement.id || document.activeElement.tagName"
    page.focus("#next")
    for step in range(2, 6):
        page.keyboard.press("Enter")
        assert page.get_attribute("#view", "data-step") == str(step)
        assert page.evaluate(active) == ("prev" if step == 5 else "next")
    page.keyboard.press("Enter")  # the focused <- goes back, and keeps focus
    assert page.get_attribute("#view", "data-step") == "4" and page.evaluate(active) == "prev"
    page.click("#next")  # with the mouse too
    assert page.get_attribute("#view", "data-step") == "5" and page.evaluate(active) == "prev"
    for _ in range(4):
        page.keyboard.press(" ")
    assert page.get_attribute("#view", "data-step") == "1" and page.evaluate(active) == "next"
    page.focus('.tok[data-tok="3"]')  # a token is redrawn by the arrow key: focus goes to the arrow, not <body>
    page.keyboard.press("ArrowRight")
    assert page.get_attribute("#view", "data-step") == "2" and page.evaluate(active) == "next"
    page.close()


def test_browser_query_outline_marks_one_token_without_hiding_it(browser, small_tok, tmp_path):
    """With one token a thumbnail row is the whole thumbnail: its outline stays a thin frame."""
    path = tmp_path / "page.html"
    to_html(small_tok, tiny_model(), "t", path=path)
    page, log = open_page(browser, path, "#step=4")
    assert len(data_in(path.read_text(encoding="utf-8"))["ids"]) == 1
    for row in page.locator("rect.qrow").all():
        side = float(row.get_attribute("width"))
        assert float(row.get_attribute("stroke-width")) <= side / 16
    assert log["errors"] == []
    page.close()

def test_browser_inside_a_notebook_iframe(browser, small_tok, tmp_path):
    """What Jupyter shows: the `show` iframe (srcdoc, scripts sandboxed) draws and steps without errors."""
    path = tmp_path / "notebook.html"
    path.write_text("<!DOCTYPE html><html><body>" + show(small_tok, tiny_model(), TEXT)._repr_html_() + "</body></html>",
                    encoding="utf-8")
    page, log = open_page(browser, path, wait=False)
    frame = page.frame_locator("iframe")
    frame.locator('#view[data-step="1"]').wait_for()
    frame.locator("#next").click()
    frame.locator('#view[data-step="2"]').wait_for()
    frame.locator('.tok[data-emb="0"]').hover()
    assert "Nearest neighbours" in frame.locator("#emb-detail").inner_text()
    assert log["errors"] == [] and set(log["requests"]) == {path.as_uri()}
    page.close()



def test_the_pipeline_writes_the_same_page(tmp_path):
    from minitransformer.trace.pipeline import Pipeline

    tok = Tokenizer.train("the cat sat on the mat " * 20, 300)
    model = GPT(ModelConfig.preset("toy", vocab_size=tok.vocab_size), seed=0)
    path = tmp_path / "page.html"
    html = Pipeline(tok, model).to_html("the cat sat", path)
    assert path.read_text(encoding="utf-8") == html == to_html(tok, model, "the cat sat")
    assert Pipeline(tok, model).show_html("the cat")._repr_html_().startswith("<iframe srcdoc=")
