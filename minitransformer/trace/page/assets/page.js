// minitransformer step-through page. Hand-written, no libraries, no network: everything it
// shows comes from the JSON block with id "page-data", written by minitransformer/page/build.py.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("page-data").textContent);
  var ids = D.ids, T = ids.length, vocab = D.vocab, cfg = D.model.config;

  // ---------------------------------------------------------------- colour scales (stops of matplotlib's maps)
  var VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"];
  var CIVIDIS = ["#00224e", "#123570", "#3b496c", "#575d6d", "#707173", "#8a8678", "#a59c74", "#c3b369", "#e1cc55", "#fee838"];
  function rgb(hex) { return [1, 3, 5].map(function (i) { return parseInt(hex.substr(i, 2), 16); }); }
  function colour(stops, t) {  // t in [0, 1] -> "rgb(...)", linear between neighbouring stops
    t = Math.max(0, Math.min(1, isFinite(t) ? t : 0));
    var x = t * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
    var a = rgb(stops[i]), b = rgb(stops[i + 1]);
    return "rgb(" + [0, 1, 2].map(function (k) { return Math.round(a[k] + f * (b[k] - a[k])); }).join(",") + ")";
  }
  function ink(t) { return t > 0.55 ? "#000" : "#fff"; }  // readable text on a viridis/cividis cell

  // ---------------------------------------------------------------- small helpers
  function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return "&#" + c.charCodeAt(0) + ";"; }); }
  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function lab(id) { return vocab[id]; }
  function q(id) { return "\u201c" + lab(id) + "\u201d"; }
  function pct(p) { return (100 * p).toFixed(2) + "%"; }
  function range(a) { var lo = Infinity, hi = -Infinity; a.forEach(function (r) { r.forEach(function (v) { lo = Math.min(lo, v); hi = Math.max(hi, v); }); }); return [lo, hi]; }
  function chips(kind, sel, extra) {  // the prompt's tokens as focusable buttons
    return '<div class="tokens" role="group" aria-label="tokens of the prompt">' + ids.map(function (id, t) {
      var bg = extra ? extra(t) : "";
      return '<button type="button" class="tok' + (t === sel ? " sel" : "") + '" data-' + kind + '="' + t + '"' + bg +
        ' aria-label="token ' + t + ": " + esc(lab(id)) + '">' + esc(lab(id)) + "</button>";
    }).join("") + "</div>";
  }
  function legend(stops, lo, hi, what) {
    var g = stops.map(function (c, i) { return c + " " + Math.round(100 * i / (stops.length - 1)) + "%"; }).join(",");
    return '<div class="legend">' + esc(what) + " " + lo + ' <span style="display:inline-block;width:120px;height:10px;background:linear-gradient(90deg,' + g + ')"></span> ' + hi + "</div>";
  }
  function heatmap(rows, stops, lo, hi, w, h, attrs) {  // rows: arrays of numbers (ragged allowed) -> SVG rects
    var out = [], span = hi - lo || 1;
    rows.forEach(function (r, i) {
      r.forEach(function (v, j) {
        out.push('<rect x="' + j * w + '" y="' + i * h + '" width="' + w + '" height="' + h + '" fill="' + colour(stops, (v - lo) / span) +
          '" data-i="' + i + '" data-j="' + j + '"' + (attrs || "") + "></rect>");
      });
    });
    return out.join("");
  }

  // ---------------------------------------------------------------- the language the library uses for sampling
  // Mirrors minitransformer.feedforward.probabilities: divide by the temperature after subtracting the max
  // (0 means greedy), keep the top_k largest logits (ties kept), softmax, keep the smallest most-likely set
  // whose mass reaches top_p (the top token always stays), renormalise.
  function probabilities(logits, temperature, topK, topP) {
    var V = logits.length, i, p = new Array(V);
    if (temperature === 0) {
      var best = 0;
      for (i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;  // first maximum, as numpy's argmax
      for (i = 0; i < V; i++) p[i] = i === best ? 1 : 0;
      return p;
    }
    var mx = Math.max.apply(null, logits);
    var z = logits.map(function (l) { return (l - mx) / temperature; });
    if (topK && topK < V) {
      var kth = z.slice().sort(function (a, b) { return b - a; })[topK - 1];
      z = z.map(function (v) { return v < kth ? -Infinity : v; });
    }
    var m2 = Math.max.apply(null, z), sum = 0;
    for (i = 0; i < V; i++) { p[i] = Math.exp(z[i] - m2); sum += p[i]; }
    for (i = 0; i < V; i++) p[i] /= sum;
    if (topP < 1) {
      var order = p.map(function (_, k) { return k; }).sort(function (a, b) { return p[b] - p[a]; });  // stable
      var cum = 0, kept = 0;
      var keep = new Array(V).fill(false);
      order.forEach(function (k) { cum += p[k]; if (cum - p[k] < topP) keep[k] = true; });
      for (i = 0; i < V; i++) { if (!keep[i]) p[i] = 0; kept += p[i]; }
      for (i = 0; i < V; i++) p[i] /= kept;
    }
    return p;
  }
  window.minitransformerPage = { data: D, probabilities: probabilities };

  // ---------------------------------------------------------------- state and navigation
  var S = { step: 1, tok: T - 1, emb: T - 1, pos: null, query: T - 1, layer: 0, head: 0, lens: T - 1,
            temperature: 1, topP: 1, topK: 0 };
  var view = $("#view");
  function stepFromHash() { var m = /step=(\d+)/.exec(location.hash); return m ? +m[1] : 1; }
  function go(n, fromHash) {
    S.step = Math.max(1, Math.min(5, n | 0 || 1));
    if (!fromHash) {
      try { history.replaceState(null, "", "#step=" + S.step); } catch (e) { try { location.hash = "step=" + S.step; } catch (e2) { /* sandboxed */ } }
    }
    var had = document.activeElement && document.activeElement !== document.body;  // something had focus
    render();
    keepFocus(had);
  }
  // a step change may disable the focused arrow or redraw the focused token: focus drops to <body>, so
  // keyboard users would Tab again from the top. Keep it on the arrow that still steps (-> at the end: <-).
  function keepFocus(had) {
    var a = document.activeElement;
    if (!had || (a && a !== document.body && !a.disabled && document.contains(a))) return;
    ($("#next").disabled ? $("#prev") : $("#next")).focus();
  }
  function render() {
    var st = D.stages[S.step - 1];
    $$("#stagebar button").forEach(function (b, i) { if (i === S.step - 1) b.setAttribute("aria-current", "step"); else b.removeAttribute("aria-current"); });
    $("#counter").textContent = S.step + " / 5";
    $("#prev").disabled = S.step === 1; $("#next").disabled = S.step === 5;
    $("#concept").innerHTML = "<h1>" + st.number + ". " + esc(st.name) + '</h1><p class="concept">' + esc(st.concept) + "</p>" +
      '<p class="question">' + esc(st.question) + '</p><p class="summary">' + esc(st.summary) + "</p>" +
      '<div class="flow">in: ' + esc(st.data_in) + "<br>out: " + esc(st.data_out) + "</div>" +
      '<p class="hint">\u2190 / \u2192 keys step through the stages. Tab reaches every token and head; Enter or Space selects.</p>';
    view.innerHTML = "";
    view.setAttribute("data-step", S.step);
    [distinction, classification, indexing, retrieval, processing][S.step - 1]();
  }
  $("#stagebar").innerHTML = D.stages.map(function (s) {
    return '<button type="button" data-go="' + s.number + '">' + s.number + ". " + esc(s.name) + "<small>" + esc(s.concept) + "</small></button>";
  }).join("");
  $("#stagebar").addEventListener("click", function (e) { var b = e.target.closest("[data-go]"); if (b) go(+b.getAttribute("data-go")); });
  $("#prev").addEventListener("click", function () { go(S.step - 1); });
  $("#next").addEventListener("click", function () { go(S.step + 1); });
  $("#model-summary").textContent = D.model.summary.replace(/^GPT\(/, "(");
  document.addEventListener("keydown", function (e) {
    if (/^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName) || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === "ArrowRight") { go(S.step + 1); e.preventDefault(); }
    if (e.key === "ArrowLeft") { go(S.step - 1); e.preventDefault(); }
  });
  window.addEventListener("hashchange", function () { go(stepFromHash(), true); });
  // a token or head reacts alike to the mouse and to keyboard focus
  function onPoint(attr, fn) {
    function handler(e) { var t = e.target.closest && e.target.closest("[data-" + attr + "]"); if (t && view.contains(t)) fn(+t.getAttribute("data-" + attr), t); }
    view.addEventListener("mouseover", handler); view.addEventListener("focusin", handler); view.addEventListener("click", handler);
  }

  // ---------------------------------------------------------------- 1. distinction: token boundaries and merge trees
  var PALE = ["#fde2e4", "#dbeafe", "#dcfce7", "#fef9c3", "#ede9fe", "#ffedd5"];
  function tree(node) {  // a token above the two it was merged from, down to single bytes
    var kids = node.children.length ? '<div class="kids">' + node.children.map(tree).join("") + "</div>" : "";
    var how = node.id < 256 ? "byte" : "merge " + (node.id - 256 + 1);
    return '<div class="n"><span class="node">' + esc(node.token.replace(/ /g, "\u2423")) + '</span><span class="id">#' + node.id + "<br>" + how + "</span>" + kids + "</div>";
  }
  function distinction() {
    var d = D.distinction;
    view.innerHTML = "<h2>Text \u2192 bytes \u2192 chunks \u2192 merged tokens</h2>" +
      '<p class="muted small">' + d.n_chars + " characters \u2192 " + d.n_bytes + " bytes \u2192 " + d.chunks.length + " chunks \u2192 " +
      d.n_merges + " merges applied \u2192 " + d.n_tokens_text + " tokens (" + (d.n_bytes / d.n_tokens_text).toFixed(2) + " bytes/token)" +
      (d.cropped ? "; the first " + d.cropped + " tokens are cropped to fit the context of " + cfg.context_length : "") + "</p>" +
      chips("tok", S.tok, function (t) { return ' style="background:' + PALE[t % PALE.length] + '"'; }) +
      '<div class="cols"><div class="panel" id="tok-detail"></div><div class="panel"><h3>Chunks (the split pattern cuts here first; merges never cross them)</h3><div class="tokens">' +
      d.chunks.map(function (c) { return '<span class="tok">' + esc(c) + "</span>"; }).join("") + "</div></div></div>";
    showToken(S.tok);
  }
  function showToken(t) {
    S.tok = t;
    $$(".tok[data-tok]").forEach(function (b) { b.classList.toggle("sel", +b.getAttribute("data-tok") === t); });
    var tk = D.distinction.tokens[t], tr = D.distinction.trees[tk.id];
    $("#tok-detail").innerHTML = "<h3>Token " + t + ": " + esc(q(tk.id)) + " = id " + tk.id + "</h3>" +
      '<div class="bytes small">bytes: ' + tk.bytes.map(function (b) { return "<span>" + b.toString(16).padStart(2, "0") + "</span>"; }).join("") + "</div>" +
      "<h3>How it was built (merge tree)</h3>" + (tr ? '<div class="tree">' + tree(tr) + "</div>" : '<p class="muted">a special token</p>');
  }
  onPoint("tok", function (t) { if (S.step === 1 && t !== S.tok) showToken(t); });

  // ---------------------------------------------------------------- 2. classification: the embedding map
  var MAP = { w: 520, h: 430, pad: 24 };
  function mapXY() {
    // the 1st..99th percentile of the fitted rows fills the frame (outliers would squeeze the rest); outliers sit on the edge
    var xy = D.classification.xy, X = D.classification.frame[0], Y = D.classification.frame[1], fit = function (v, r, n) { return Math.max(0, Math.min(1, (v - r[0]) / (r[1] - r[0] || 1))) * n; };
    return function (i) { var p = xy[i]; return [MAP.pad + fit(p[0], X, MAP.w - 2 * MAP.pad), MAP.h - MAP.pad - fit(p[1], Y, MAP.h - 2 * MAP.pad)]; };
  }
  function classification() {
    var c = D.classification, P = mapXY(), dots = [], seen = {};
    c.xy.forEach(function (_, i) { var p = P(i); dots.push('<circle cx="' + p[0].toFixed(1) + '" cy="' + p[1].toFixed(1) + '" r="1.6" fill="#b9bdc7"></circle>'); });
    ids.forEach(function (id, t) {
      if (seen[id]) return; seen[id] = 1;
      var p = P(id);
      dots.push('<circle cx="' + p[0].toFixed(1) + '" cy="' + p[1].toFixed(1) + '" r="5" fill="' + colour(VIRIDIS, t / Math.max(T - 1, 1)) + '" stroke="#fff" data-emb="' + t + '"><title>' + esc(lab(id)) + "</title></circle>");
      dots.push('<text x="' + (p[0] + 6).toFixed(1) + '" y="' + (p[1] - 4).toFixed(1) + '" font-size="12">' + esc(lab(id)) + "</text>");
    });
    view.innerHTML = "<h2>Each id is a row of W_E; rows of tokens that behave alike lie close together</h2>" +
      chips("emb", S.emb) + '<div class="cols"><div class="panel"><svg id="emb-map" width="100%" viewBox="0 0 ' + MAP.w + " " + MAP.h + '" role="img" aria-label="embedding map">' +
      dots.join("") + '<g id="emb-over"></g><text x="' + MAP.w / 2 + '" y="' + (MAP.h - 4) + '" font-size="12" text-anchor="middle">PC 1 (' + pct(c.explained[0]) + " of variance)</text>" +
      '<text x="10" y="' + MAP.h / 2 + '" font-size="12" transform="rotate(-90 10 ' + MAP.h / 2 + ')" text-anchor="middle">PC 2 (' + pct(c.explained[1]) + ")</text></svg>" +
      '<p class="muted small">All ' + c.xy.length + " rows of W_E (grey) on the first two principal components of the " + c.n_fit + " rows of merged tokens and printable bytes; the prompt\u2019s tokens coloured by position. Points beyond the frame sit on its edge.</p></div>" +
      '<div class="panel" id="emb-detail"></div></div>';
    showNeighbours(S.emb);
  }
  function showNeighbours(t) {
    S.emb = t;
    $$(".tok[data-emb]").forEach(function (b) { b.classList.toggle("sel", +b.getAttribute("data-emb") === t); });
    var id = ids[t], near = D.classification.nearest[id], P = mapXY(), a = P(id), lines = [];
    near.forEach(function (n) {
      var b = P(n[0]);
      lines.push('<line x1="' + a[0] + '" y1="' + a[1] + '" x2="' + b[0] + '" y2="' + b[1] + '" stroke="#e07a00" stroke-width="1.5"></line>' +
        '<circle cx="' + b[0] + '" cy="' + b[1] + '" r="4" fill="#e07a00"></circle><text x="' + (b[0] + 5) + '" y="' + (b[1] + 12) + '" font-size="12" fill="#9a4a00">' + esc(lab(n[0])) + "</text>");
    });
    $("#emb-over").innerHTML = lines.join("") + '<circle cx="' + a[0] + '" cy="' + a[1] + '" r="8" fill="none" stroke="#e07a00" stroke-width="2"></circle>';
    $("#emb-detail").innerHTML = "<h3>Nearest neighbours of " + esc(q(id)) + " (cosine similarity of W_E rows)</h3><div class=\"bars\">" +
      near.map(function (n) {
        return '<div class="bar"><span class="lab">' + esc(lab(n[0])) + '</span><span class="track"><span class="fill" style="display:block;width:' +
          Math.max(0, 100 * n[1]).toFixed(1) + "%;background:" + colour(VIRIDIS, n[1]) + '"></span></span><span class="val">' + n[1].toFixed(3) + "</span></div>";
      }).join("") + '</div><p class="muted small">The neighbours are the token\u2019s class: the model treats them as interchangeable until later stages tell them apart.</p>';
  }
  onPoint("emb", function (t) { if (S.step === 2 && t !== S.emb) showNeighbours(t); });

  // ---------------------------------------------------------------- 3. indexing: position vectors or RoPE angles
  function indexing() {
    var x = D.indexing, rows = x.values;
    if (x.kind === "none") { view.innerHTML = "<h2>No positional encoding</h2><p>This model sees a bag of tokens: nothing tells it where a token stands.</p>"; return; }
    var cols = rows[0].length, w = Math.max(2, Math.min(40, Math.floor(520 / cols))), h = Math.max(4, Math.min(18, Math.floor(440 / T)));
    var lr = range(rows), lo = x.kind === "angles" ? 0 : lr[0], hi = x.kind === "angles" ? 2 * Math.PI : lr[1];
    // vectors: cosine of the two rows; RoPE: the mean cosine of the angle differences, which is what a
    // rotated query-key product keeps of the positions (it depends on t - s only)
    var sim = rows.map(function (a) { return rows.map(function (b) {
      var ab = 0, aa = 0, bb = 0, k;
      if (x.kind === "angles") { for (k = 0; k < a.length; k++) ab += Math.cos(a[k] - b[k]); return ab / a.length; }
      for (k = 0; k < a.length; k++) { ab += a[k] * b[k]; aa += a[k] * a[k]; bb += b[k] * b[k]; }
      return ab / Math.sqrt(aa * bb || 1);
    }); });
    var title = x.kind === "angles" ? "RoPE: position t turns pair i of every query and key by the angle t\u00b7\u03b8\u1d62 (mod 2\u03c0), \u03b8\u1d62 = " + cfg.rope_base + "^(\u22122i/" + x.width + ")"
      : (x.variant === "learned" ? "Learned positions: row t of W_pos is added to the token at position t" : "Sinusoidal positions: fast to slow sine/cosine clocks added to each token");
    var s = Math.max(2, Math.min(14, Math.floor(Math.min(300, 1200 - cols * w - 320) / T)));
    view.innerHTML = "<h2>" + esc(title) + "</h2>" + chips("pos", S.pos) +
      '<div class="cols pos-cols" style="--left:' + Math.max(cols * w + 24, 300) + 'px"><div class="panel"><svg id="pos-map" class="fit" width="' + cols * w + '" height="' + T * h + '" viewBox="0 0 ' + cols * w + " " + T * h + '" role="img" aria-label="position heatmap">' +
      heatmap(rows, CIVIDIS, lo, hi, w, h, ' class="pcell"') + '<rect id="pos-row" x="0" y="-100" width="' + cols * w + '" height="' + h + '" fill="none" stroke="#e07a00" stroke-width="2"></rect></svg>' +
      legend(CIVIDIS, lo.toFixed(2), hi.toFixed(2), x.kind === "angles" ? "angle (rad):" : "value:") +
      '<p class="readout mono" id="pos-read">rows: positions 0..' + (T - 1) + "; columns: " + (x.kind === "angles" ? "rotated pairs" : "dimensions of the vector") + ". Hover a cell for its value.</p></div>" +
      '<div class="panel"><h3>Addresses that look alike</h3><svg class="fit" width="' + T * s + '" height="' + T * s + '" viewBox="0 0 ' + T * s + " " + T * s + '">' + heatmap(sim, VIRIDIS, -1, 1, s, s) + "</svg>" +
      legend(VIRIDIS, "\u22121", "1", x.kind === "angles" ? "mean cos(\u0394angle):" : "cosine:") + '<p class="small">' +
      (x.kind === "angles" ? "Mean cosine of the angle differences of two positions, position against position (what a rotated query\u00b7key keeps of them): " : "Cosine similarity of the rows on the left, position against position: ") +
      (x.kind === "angles" ? "the codes of nearby positions are alike, so attention can tell near from far." : "if nearby positions get similar vectors, attention can tell near from far.") + "</p></div></div>";
    $("#pos-map").addEventListener("mousemove", function (e) {
      var r = e.target.closest("rect.pcell"); if (!r) return;
      var i = +r.getAttribute("data-i"), j = +r.getAttribute("data-j");
      $("#pos-read").textContent = "position " + i + " (" + q(ids[i]) + "), " + (x.kind === "angles" ? "pair " + j + ": angle " : "dimension " + j + ": ") + rows[i][j];
    });
  }
  onPoint("pos", function (t) {
    if (S.step !== 3 || !$("#pos-row")) return;
    S.pos = t; $$(".tok[data-pos]").forEach(function (b) { b.classList.toggle("sel", +b.getAttribute("data-pos") === t); });
    var row = D.indexing.values[t], h = +$("#pos-row").getAttribute("height"), n = Math.sqrt(row.reduce(function (a, v) { return a + v * v; }, 0));
    $("#pos-row").setAttribute("y", t * h);
    $("#pos-read").textContent = "position " + t + " (" + q(ids[t]) + "): first values " + row.slice(0, 6).join(", ") + " \u2026  (length " + n.toFixed(3) + ")";
  });

  // ---------------------------------------------------------------- 4. retrieval: attention patterns and the cache
  function retrieval() {
    var r = D.retrieval, L = r.patterns.length, H = r.n_heads, mini = Math.max(1, Math.floor(Math.min(440 / H, 480 / L - 24) / T));
    var grid = "", outline = Math.max(1, Math.min(mini / 2, T * mini / 16));  // half a row, at most 1/16 of the thumbnail
    r.patterns.forEach(function (layer, l) {
      layer.forEach(function (pat, h) {
        grid += '<button type="button" class="head' + (l === S.layer && h === S.head ? " sel" : "") + '" data-head="' + (l * H + h) + '" aria-label="layer ' + l + " head " + h + '">' +
          '<svg width="' + T * mini + '" height="' + T * mini + '" viewBox="0 0 ' + T * mini + " " + T * mini + '">' + heatmap(pat, VIRIDIS, 0, 1, mini, mini) +
          '<rect class="qrow" x="0" y="' + S.query * mini + '" width="' + T * mini + '" height="' + mini + '" fill="none" stroke="#e07a00" stroke-width="' + outline + '"></rect></svg><span>L' + l + " H" + h + "</span></button>";
      });
    });
    view.innerHTML = "<h2>Each query (row) retrieves a weighted mix of earlier keys (columns): " + L + " layers \u00d7 " + H + " heads" +
      (r.attention === "mla" ? " (MLA)" : r.kv_heads < H ? " (" + r.kv_heads + " key/value heads, GQA)" : "") + "</h2>" + chips("query", S.query) +
      '<div class="cols heads-cols"><div class="grid-heads" style="--heads:' + H + '">' + grid + "</div>" +
      '<div><div class="panel" id="head-big"></div><div class="panel" style="margin-top:8px" id="kv"></div></div></div>';
    showHead(); showCache();
  }
  function showHead() {
    var r = D.retrieval, pat = r.patterns[S.layer][S.head], big = Math.max(3, Math.min(14, Math.floor(210 / T))), pad = big >= 8 ? 80 : 4;
    var labels = big >= 8 ? ids.map(function (id, t) { return '<text x="' + (pad - 4) + '" y="' + (t * big + big - 1) + '" font-size="' + Math.min(11, big) + '" text-anchor="end">' + esc(lab(id)) + "</text>"; }).join("") : "";
    var w = pat[S.query];
    $("#head-big").innerHTML = "<h3>Layer " + S.layer + ", head " + S.head + ": where " + esc(q(ids[S.query])) + " (position " + S.query + ") attends</h3>" +
      '<div id="weights" class="weights" data-layer="' + S.layer + '" data-head="' + S.head + '" data-query="' + S.query + '">' + w.map(function (v, j) {
        return '<span class="w" data-j="' + j + '" style="background:' + colour(VIRIDIS, v) + ";color:" + ink(v) + '">' + esc(lab(ids[j])) + ' <b class="num">' + v.toFixed(3) + "</b></span>";
      }).join("") + '</div><svg id="big" class="fit" width="' + (pad + T * big) + '" height="' + (T * big) + '" viewBox="0 0 ' + (pad + T * big) + " " + (T * big) + '" style="margin-top:6px">' + labels + '<g transform="translate(' + pad + ',0)">' +
      heatmap(pat, VIRIDIS, 0, 1, big, big, ' class="acell"') + '<rect x="0" y="' + S.query * big + '" width="' + T * big + '" height="' + big + '" fill="none" stroke="#e07a00" stroke-width="2"></rect></g></svg>' +
      legend(VIRIDIS, "0", "1", "weight:") + '<p class="readout mono" id="att-read">Hover a cell: query row, key column, weight.</p>';
    $("#big").addEventListener("mousemove", function (e) {
      var c = e.target.closest("rect.acell"); if (!c) return;
      var i = +c.getAttribute("data-i"), j = +c.getAttribute("data-j");
      $("#att-read").textContent = "query " + i + " " + q(ids[i]) + " \u2192 key " + j + " " + q(ids[j]) + ": " + pat[i][j].toFixed(3);
    });
  }
  function showCache() {
    var c = D.retrieval.cache, mla = c.kind === "LatentKVCache", mx = Math.max(c.bytes_per_token, c.mha_bytes_per_token);
    var bar = function (name, b) { return '<div class="col"><div class="blk" style="height:' + Math.max(2, Math.round(60 * b / mx)) + 'px"></div><b>' + b.toLocaleString("en") + "</b> B<br>" + name + "</div>"; };
    $("#kv").innerHTML = "<h3>The stored index: cache bytes per token (" + cfg.n_layers + " layers, float32)</h3><div class=\"cachebox\">" +
      bar(mla ? "MLA latent cache (c_KV " + c.d_latent + " + k_R " + c.d_rope + ")" : c.kv_heads < cfg.n_heads ? "this cache (" + c.kv_heads + " K/V heads)" : "this cache (K and V)", c.bytes_per_token) +
      (c.bytes_per_token !== c.mha_bytes_per_token ? bar("MHA would store (" + cfg.n_heads + " heads \u00d7 K, V)", c.mha_bytes_per_token) : "") +
      '<div class="small muted" style="max-width:230px">For this prompt of ' + T + " tokens the cache holds " + (c.bytes_per_token * T).toLocaleString("en") + " bytes (" + c.kind + ").</div></div>";
  }
  onPoint("query", function (t) {
    if (S.step !== 4) return;
    S.query = t; $$(".tok[data-query]").forEach(function (b) { b.classList.toggle("sel", +b.getAttribute("data-query") === t); });
    $$("rect.qrow").forEach(function (r) { r.setAttribute("y", t * +r.getAttribute("height")); });
    showHead();
  });
  view.addEventListener("click", function (e) {
    var b = e.target.closest("[data-head]"); if (!b || S.step !== 4 || !view.contains(b)) return;
    var k = +b.getAttribute("data-head"); S.layer = Math.floor(k / D.retrieval.n_heads); S.head = k % D.retrieval.n_heads;
    $$(".head").forEach(function (x) { x.classList.toggle("sel", x === b); });
    showHead();
  });

  // ---------------------------------------------------------------- 5. processing: MLP, logit lens, next token
  function processing() {
    var p = D.processing, L = p.lens[0].length, mm = p.mlp_mean_abs, mr = range(mm), cw = Math.max(4, Math.min(22, Math.floor(420 / T)));
    view.innerHTML = '<div class="cols"><div><h2>The next token: softmax(logits / temperature), then top-k and top-p</h2>' +
      '<div class="controls"><label>temperature <input id="temp" type="range" min="0" max="2" step="0.05" value="' + S.temperature + '"><output id="temp-out"></output></label>' +
      '<label>top-p <input id="topp" type="range" min="0.05" max="1" step="0.05" value="' + S.topP + '"><output id="topp-out"></output></label>' +
      '<label>top-k <input id="topk" type="number" min="0" max="' + vocab.length + '" value="' + S.topK + '" style="width:4.5em"></label></div>' +
      '<div id="probs" class="bars"></div><h3>The continuation (model.generate: temperature ' + D.generation.temperature + ", top-k " + D.generation.top_k + ", seed " + D.generation.seed + ')</h3>' +
      '<div class="panel continuation">' + esc(D.generation.prompt_text) + '<span class="gen">' + esc(D.generation.text) + "</span></div></div>" +
      '<div><h2>Layer by layer: the logit lens at one position</h2>' + chips("lens", S.lens) + '<div id="lens"></div>' +
      "<h3>MLP activations: mean |hook_post| per layer (rows) and position (columns), " + p.d_ff + " units, " + esc(p.ffn) + "</h3>" +
      '<svg id="mlp" class="fit" width="' + (T * cw) + '" height="' + (L * 18) + '" viewBox="0 0 ' + (T * cw) + " " + (L * 18) + '">' + heatmap(mm, VIRIDIS, mr[0], mr[1], cw, 18, ' class="mcell"') + "</svg>" +
      legend(VIRIDIS, mr[0], mr[1], "mean |activation|:") + '<p class="readout mono" id="mlp-read">Hover a cell: the most active units there.</p></div></div>';
    var upd = function () {
      S.temperature = +$("#temp").value; S.topP = +$("#topp").value; S.topK = Math.max(0, Math.min(vocab.length, Math.round(+$("#topk").value) || 0));
      $("#temp-out").textContent = S.temperature.toFixed(2); $("#topp-out").textContent = S.topP.toFixed(2);
      showProbs();
    };
    ["#temp", "#topp", "#topk"].forEach(function (s) { $(s).addEventListener("input", upd); });
    upd(); showLens(S.lens);
    $("#mlp").addEventListener("mousemove", function (e) {
      var c = e.target.closest("rect.mcell"); if (!c) return;
      var l = +c.getAttribute("data-i"), t = +c.getAttribute("data-j");
      $("#mlp-read").textContent = "layer " + l + ", position " + t + " " + q(ids[t]) + ": mean |a| " + mm[l][t] + "; strongest units " +
        p.mlp_top[l][t].map(function (u) { return "#" + u[0] + " (" + u[1] + ")"; }).join(", ");
    });
  }
  function showProbs() {
    var p = probabilities(D.processing.logits, S.temperature, S.topK, S.topP), order = p.map(function (_, i) { return i; }).sort(function (a, b) { return p[b] - p[a]; });
    var kept = p.filter(function (v) { return v > 0; }).length;
    $("#probs").innerHTML = order.slice(0, 12).map(function (i) {
      return '<div class="bar" data-id="' + i + '" data-p="' + p[i] + '"><span class="lab">' + esc(lab(i)) + '</span><span class="track"><span class="fill" style="display:block;width:' +
        (100 * p[i]).toFixed(2) + "%;background:" + colour(VIRIDIS, 0.15 + 0.85 * p[i]) + '"></span></span><span class="val">' + pct(p[i]) + "</span></div>";
    }).join("") + '<p class="muted small">' + kept + " of " + p.length + " tokens can be drawn" + (S.temperature === 0 ? " (temperature 0: greedy)" : "") + ".</p>";
  }
  function showLens(t) {
    S.lens = t;
    $$(".tok[data-lens]").forEach(function (b) { b.classList.toggle("sel", +b.getAttribute("data-lens") === t); });
    var rows = D.processing.lens[t];
    $("#lens").innerHTML = '<table class="lens"><tr><th></th><th colspan="5">top guesses for the token after ' + esc(q(ids[t])) + " (the last block is the model\u2019s own output)</th></tr>" + rows.map(function (r, l) {
      return '<tr><th title="after block ' + l + '">L' + l + "</th>" + r[0].map(function (id, k) {
        var v = r[1][k]; return '<td style="background:' + colour(VIRIDIS, v) + ";color:" + ink(v) + '">' + esc(lab(id)) + "<br><small>" + (100 * v).toFixed(1) + "%</small></td>";
      }).join("") + "</tr>";
    }).join("") + "</table>";
  }
  onPoint("lens", function (t) { if (S.step === 5 && t !== S.lens) showLens(t); });

  go(stepFromHash(), true);
})();
