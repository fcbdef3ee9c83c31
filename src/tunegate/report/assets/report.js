/* tunegate report: row browser. Data comes from the JSON block #tg-data; every value is written
   with textContent (never innerHTML), so model outputs are shown as text and can never run. */
(function () {
  "use strict";
  var t0 = performance.now();
  var D = JSON.parse(document.getElementById("tg-data").textContent);
  var EV = D.evaluators, ROWS = D.rows;
  var state = { filter: "all", cohort: "", sort: "", q: "", page: 0, size: 50 };
  var hay = null;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function pt(x) { return x === null || x === undefined ? "—" : (x >= 0 ? "+" : "") + (x * 100).toFixed(1); }
  function sc(x) { return x === null || x === undefined ? "—" : (Math.round(x * 1000) / 1000).toString(); }

  function pretty(side) {
    var parts = [];
    var o = side.o;
    if (o !== null && o !== undefined && String(o) !== "") {
      var s = String(o), tr = s.trim();
      if ((tr[0] === "{" || tr[0] === "[") && tr.length < 200000) {
        try { s = JSON.stringify(JSON.parse(tr), null, 2); } catch (e) { /* not JSON: keep text */ }
      }
      parts.push(s);
    }
    if (side.t && side.t.length) {
      var calls = side.t.map(function (c) {
        var c2 = {};
        for (var k in c) { if (Object.prototype.hasOwnProperty.call(c, k)) c2[k] = c[k]; }
        if (typeof c2.arguments === "string") { try { c2.arguments = JSON.parse(c2.arguments); } catch (e) { } }
        return c2;
      });
      parts.push("tool calls:\n" + JSON.stringify(calls, null, 2));
    }
    if (side.e) parts.push("ERROR: " + side.e);
    return parts.join("\n\n");
  }

  function tokens(s) { return s.match(/\s+|\w+|[^\s\w]/g) || []; }

  /* word-level LCS diff; returns [[op, text]] with op 0 same, -1 only in a, 1 only in b */
  function diff(a, b) {
    var A = tokens(a), B = tokens(b), n = A.length, m = B.length;
    var pre = 0;
    while (pre < n && pre < m && A[pre] === B[pre]) pre++;
    var suf = 0;
    while (suf < n - pre && suf < m - pre && A[n - 1 - suf] === B[m - 1 - suf]) suf++;
    var a2 = A.slice(pre, n - suf), b2 = B.slice(pre, m - suf), N = a2.length, M = b2.length;
    var out = [];
    if (pre) out.push([0, A.slice(0, pre).join("")]);
    if (N * M > 4000000) { // too large to align here: show both middles as changed
      if (N) out.push([-1, a2.join("")]);
      if (M) out.push([1, b2.join("")]);
    } else {
      var W = M + 1, L = new Uint32Array((N + 1) * W);
      for (var i = N - 1; i >= 0; i--) for (var j = M - 1; j >= 0; j--)
        L[i * W + j] = a2[i] === b2[j] ? L[(i + 1) * W + j + 1] + 1 : Math.max(L[(i + 1) * W + j], L[i * W + j + 1]);
      var x = 0, y = 0;
      while (x < N && y < M) {
        if (a2[x] === b2[y]) { out.push([0, a2[x]]); x++; y++; }
        else if (L[(x + 1) * W + y] >= L[x * W + y + 1]) { out.push([-1, a2[x]]); x++; }
        else { out.push([1, b2[y]]); y++; }
      }
      while (x < N) out.push([-1, a2[x++]]);
      while (y < M) out.push([1, b2[y++]]);
    }
    if (suf) out.push([0, A.slice(n - suf).join("")]);
    return out;
  }

  function diffPane(ops, keep, cls) {
    var pre = el("pre", "out " + cls);
    var buf = "", last = null;
    function flush() {
      if (!buf) return;
      if (last === 0) pre.appendChild(document.createTextNode(buf));
      else pre.appendChild(el(last < 0 ? "del" : "ins", null, buf));
      buf = "";
    }
    ops.forEach(function (op) {
      if (op[0] !== 0 && op[0] !== keep) return;
      if (op[0] !== last) { flush(); last = op[0]; }
      buf += op[1];
    });
    flush();
    return pre;
  }

  function scoreTable(r) {
    var t = el("table", "grid scores"), h = el("tr");
    ["evaluator", "baseline", "candidate", "Δ", "baseline reason", "candidate reason"].forEach(function (c) { h.appendChild(el("th", null, c)); });
    var th = el("thead"); th.appendChild(h); t.appendChild(th);
    var tb = el("tbody");
    EV.forEach(function (ev, i) {
      var b = r.b.s[i] || [], c = r.c.s[i] || [], tr = el("tr", r.f[i] ? "flip " + r.f[i] : "");
      tr.appendChild(el("td", null, ev + (r.f[i] ? " (" + r.f[i] + ")" : "")));
      tr.appendChild(el("td", "num " + (b[1] || ""), b[1] && b[1] !== "ok" ? b[1] : sc(b[0])));
      tr.appendChild(el("td", "num " + (c[1] || ""), c[1] && c[1] !== "ok" ? c[1] : sc(c[0])));
      tr.appendChild(el("td", "num", pt(r.d[i])));
      tr.appendChild(el("td", "reason", b[2] || ""));
      tr.appendChild(el("td", "reason", c[2] || ""));
      tb.appendChild(tr);
    });
    t.appendChild(tb);
    return t;
  }

  function detail(r, box) {
    if (box.dataset.filled) return;
    box.dataset.filled = "1";
    if (r.in !== null && r.in !== undefined) { box.appendChild(el("h4", null, "input")); box.appendChild(el("pre", "out", r.in)); }
    if (r.ex !== null && r.ex !== undefined) { box.appendChild(el("h4", null, "expected")); box.appendChild(el("pre", "out", r.ex)); }
    if (r.xt) { box.appendChild(el("h4", null, "expected tool calls")); box.appendChild(el("pre", "out", JSON.stringify(r.xt, null, 2))); }
    var a = pretty(r.b), b = pretty(r.c), ops = diff(a, b);
    var grid = el("div", "sides");
    var l = el("div", "side"), rt = el("div", "side");
    l.appendChild(el("h4", null, "baseline")); rt.appendChild(el("h4", null, "candidate"));
    l.appendChild(diffPane(ops, -1, "base")); rt.appendChild(diffPane(ops, 1, "cand"));
    grid.appendChild(l); grid.appendChild(rt);
    box.appendChild(grid);
    box.appendChild(scoreTable(r));
    if (r.xc) box.appendChild(el("p", "warn", "excluded from the comparison: " + r.xc));
  }

  function rowEl(r) {
    var d = el("details", "row");
    d.dataset.id = r.id;
    d.dataset.kind = r.k;
    var s = el("summary");
    s.appendChild(el("code", "rid", r.id));
    r.co.forEach(function (c) { s.appendChild(el("span", "tag", c)); });
    if (r.k.indexOf("b") >= 0) s.appendChild(el("span", "pill fail", "broke"));
    if (r.k.indexOf("f") >= 0) s.appendChild(el("span", "pill pass", "fixed"));
    if (r.k.indexOf("x") >= 0) s.appendChild(el("span", "pill undecided", "errored"));
    var ds = el("span", "deltas");
    EV.forEach(function (ev, i) {
      if (r.d[i] !== null && r.d[i] !== 0) ds.appendChild(el("span", r.d[i] < 0 ? "neg" : "posv", ev + " " + pt(r.d[i])));
    });
    s.appendChild(ds);
    var preview = r.in === null || r.in === undefined ? "" : String(r.in);
    s.appendChild(el("span", "preview", preview.length > 120 ? preview.slice(0, 119) + "…" : preview));
    d.appendChild(s);
    var box = el("div", "detail");
    d.appendChild(box);
    d.addEventListener("toggle", function () { if (d.open) detail(r, box); });
    return d;
  }

  function haystack() {
    if (hay) return hay;
    hay = ROWS.map(function (r) {
      return [r.id, r.co.join(" "), r.in || "", r.b.o || "", r.c.o || "", JSON.stringify(r.b.t || ""),
              JSON.stringify(r.c.t || ""), r.b.e || "", r.c.e || ""].join("\n").toLowerCase();
    });
    return hay;
  }

  function selected() {
    var q = state.q.toLowerCase(), H = q ? haystack() : null, out = [];
    for (var i = 0; i < ROWS.length; i++) {
      var r = ROWS[i];
      if (state.filter !== "all" && r.k.indexOf(state.filter) < 0) continue;
      if (state.cohort && r.co.indexOf(state.cohort) < 0) continue;
      if (q && H[i].indexOf(q) < 0) continue;
      out.push(r);
    }
    if (state.sort !== "") {
      var k = +state.sort;
      out.sort(function (x, y) {
        var a = x.d[k], b = y.d[k];
        return (a === null ? Infinity : a) - (b === null ? Infinity : b);
      });
    }
    return out;
  }

  var list = document.getElementById("row-list"), status = document.getElementById("rows-status");
  function render() {
    var sel = selected(), pages = Math.max(1, Math.ceil(sel.length / state.size));
    if (state.page >= pages) state.page = pages - 1;
    var start = state.page * state.size, frag = document.createDocumentFragment();
    sel.slice(start, start + state.size).forEach(function (r) { frag.appendChild(rowEl(r)); });
    list.textContent = "";
    list.appendChild(frag);
    status.textContent = sel.length + " of " + ROWS.length + " rows · page " + (state.page + 1) + " of " + pages;
    status.dataset.matched = String(sel.length);
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page >= pages - 1;
  }

  var counts = { all: ROWS.length, b: 0, f: 0, x: 0, c: 0 };
  ROWS.forEach(function (r) { for (var j = 0; j < r.k.length; j++) counts[r.k[j]]++; });
  Array.prototype.forEach.call(document.querySelectorAll("[data-count]"), function (s) { s.textContent = "(" + counts[s.dataset.count] + ")"; });
  Array.prototype.forEach.call(document.querySelectorAll("[data-filter]"), function (b) {
    b.addEventListener("click", function () {
      Array.prototype.forEach.call(document.querySelectorAll("[data-filter]"), function (x) {
        x.classList.remove("on"); x.setAttribute("aria-pressed", "false");
      });
      b.classList.add("on"); b.setAttribute("aria-pressed", "true");
      state.filter = b.dataset.filter; state.page = 0; render();
    });
  });
  function bind(id, key, ev, num) {
    document.getElementById(id).addEventListener(ev, function (e) {
      state[key] = num ? +e.target.value : e.target.value; state.page = 0; render();
    });
  }
  bind("cohort", "cohort", "change");
  bind("sort", "sort", "change");
  bind("pagesize", "size", "change", true);
  var timer = null;
  document.getElementById("search").addEventListener("input", function (e) {
    clearTimeout(timer);
    timer = setTimeout(function () { state.q = e.target.value.trim(); state.page = 0; render(); }, 120);
  });
  document.getElementById("prev").addEventListener("click", function () { state.page--; render(); });
  document.getElementById("next").addEventListener("click", function () { state.page++; render(); });
  render();
  document.body.dataset.ready = "1";
  window.__tunegateReadyMs = performance.now() - t0;  // script start → first page of rows drawn
  window.__tunegateReadyAt = performance.now();         // navigation start → interactive
})();
