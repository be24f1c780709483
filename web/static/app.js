/* mip6mon dashboard client.
 * Every string that came from a packet is untrusted: it is only ever put in the page with
 * textContent (never parsed as markup), and this file is the page's only script (strict CSP). */
"use strict";

(function () {
  const OVERSCAN = 6;           // rows rendered above and below the visible window
  const PERF_MAX = 50000;       // latency samples kept for the benchmark

  const $ = (id) => document.getElementById(id);
  // The access token, as the server put it in this page. No cookie carries it (a cookie on
  // 127.0.0.1 reaches every port of 127.0.0.1): it goes in this header on every request the
  // page makes, and in the socket's auth.
  const token = document.querySelector('meta[name="mip6mon-token"]').content;
  const TOKEN_HEADER = "X-Mip6mon-Token";
  const live = document.querySelector('meta[name="mip6mon-live"]').content === "yes";

  const state = {
    t0: null, lastSeq: 0, resync: null, rows: [], visible: [], evicted: 0,
    rowHeight: 17, rowHeightMeasured: false, viewHeight: 0, follow: true, epoch: 0,
    paused: false, queue: [], incoming: [], rafPending: false,
    dfFrames: null, dfText: "", quick: { node: "", path: "", msg: "" },
    frameNodes: new Map(), names: {}, nodeAddrs: new Map(),
    displayed: 0, selected: null, classes: {},
    // the panes as the server declares them (web/panes.py), from the first snapshot: the
    // page builds them then, and draws no row before
    layout: null,
    // the panes as the snapshots built them up: each snapshot carries only what is new
    // (the keyed tables' rows live in the DOM only: they are never read back)
    panes: { trails: new Map(), attacker: null, privacy: null },
    plotKeys: { coa: "", link: "" }, selectedProfile: null,
  };
  const INFO_CHARS = 200;       // the Info cell shows this much; the tooltip and tree all of it

  // Latency probe read by benchmarks/bench_latency.py, epoch ms per row:
  // [frame, due in the replay, received by this page, rendered, batch sent by the server].
  const perf = [];
  window.mip6monPerf = perf;
  const plotPerf = [];            // [plot, ms] per redraw: the page's longest tasks
  window.mip6monPlots = plotPerf;
  const now = () => performance.timeOrigin + performance.now();

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function showMessage(text, isError) {
    const box = $("message");
    box.textContent = text || "";
    box.hidden = !text;
    box.classList.toggle("error", !!isError);
  }

  // Wireshark's default time column: seconds since the first packet.
  function fmtTime(t) {
    if (state.t0 === null) state.t0 = t;    // store() sets it to the first packet's time
    return (t - state.t0).toFixed(6);
  }

  function clock(t) {
    const d = new Date(t * 1000);
    return d.toISOString().substring(11, 23);
  }

  // ---------------------------------------------------------------- packet list
  function matches(row) {
    if (state.dfFrames && !state.dfFrames.has(row.n)) return false;
    const q = state.quick;
    if (q.path && row.path !== q.path) return false;
    if (q.msg && row.msg !== q.msg) return false;
    if (q.node) {
      const owner = row.node || state.frameNodes.get(row.n);
      if (owner !== q.node) {
        const addrs = state.nodeAddrs.get(q.node) || new Set([q.node]);
        if (!row.addrs.some((a) => addrs.has(a))) return false;
      }
    }
    return true;
  }

  // The packet list is text: one line per packet, in fixed-width columns of a monospace font,
  // like a terminal's tshark. A row is a <div> holding one text node, and the rows are a pool
  // reused from render to render: a render rewrites text and creates no element. (A table of
  // nine cells per row, rebuilt ten times a second, took most of the page's one thread at
  // 1,000 rows/s; one text node lays out several times faster: issue 5's 250 ms budget.)
  // Its columns come from the packets pane (web/panes.py): [heading, width in characters (0:
  // the rest of the line), row key, writer, format], the writer one of LIST_FORMATS.
  const LIST_FORMATS = {
    text: (v) => v,
    reltime: (t) => fmtTime(t),
    class: (c) => state.classes[c] || c,
    info: (v) => (v.length > INFO_CHARS ? v.substring(0, INFO_CHARS) + "…" : v),
  };
  let COLUMNS = [];
  let MAX_ROWS = 0;             // rows kept in memory for filtering (the packets pane's rows)

  function layoutPacketList(pane) {
    COLUMNS = pane.columns.map((c) => [c.heading, c.width || 0, c.key, LIST_FORMATS[c.format] || LIST_FORMATS.text, c.format]);
    MAX_ROWS = pane.rows;
    $("list-head").textContent = rowText(COLUMNS.map(([heading]) => heading));
  }

  // One column's text: cut (with "…") to leave at least one blank before the next column.
  function cell(value, width) {
    let text = String(value);
    if (!width) return text;
    if (text.length > width - 1) text = text.substring(0, width - 2) + "…";
    return text.padEnd(width);
  }

  function rowValues(row) {
    const values = new Array(COLUMNS.length);
    for (let c = 0; c < COLUMNS.length; c++) values[c] = COLUMNS[c][3](row[COLUMNS[c][2]]);
    return values;
  }

  function rowText(values) {
    let text = "";
    for (let c = 0; c < COLUMNS.length; c++) text += cell(values[c], COLUMNS[c][1]);
    return text;
  }

  const pool = [];
  function poolRow(i) {
    while (pool.length <= i) {
      const div = document.createElement("div");
      div.setAttribute("role", "listitem");
      pool.push({ div: div, text: div.appendChild(document.createTextNode("")), row: null, epoch: -1 });
    }
    return pool[i];
  }

  function fillRow(slot, row) {
    const cls = "row proc-" + (state.classes[row.proc] !== undefined ? row.proc : "other") + (row.mal ? " malformed" : "")
      + (state.selected === row.n ? " selected" : "");
    if (slot.div.className !== cls) slot.div.className = cls;
    if (slot.row === row && slot.epoch === state.epoch) return;
    slot.row = row;
    slot.epoch = state.epoch;
    slot.div.dataset.frame = String(row.n);
    slot.text.data = rowText(rowValues(row));
  }

  // The column under the pointer, from the character it is over.
  let charWidth = 0;
  function columnAt(div, clientX) {
    if (!charWidth) {
      const probe = el("span", "0".repeat(100));
      $("list-head").appendChild(probe);
      charWidth = probe.getBoundingClientRect().width / 100;
      probe.remove();
    }
    const x = (clientX - div.getBoundingClientRect().left - 5) / charWidth;
    let edge = 0;
    for (let c = 0; c < COLUMNS.length; c++) {
      edge += COLUMNS[c][1];
      if (!COLUMNS[c][1] || x < edge) return c;
    }
    return COLUMNS.length - 1;
  }

  const msgSeen = new Set();
  function noteMessageType(msg) {
    if (msgSeen.has(msg)) return;
    msgSeen.add(msg);
    const opt = el("option", msg);
    opt.value = msg;
    $("q-msg").appendChild(opt);
  }

  function atBottom() {
    const w = $("list-wrap");
    return w.scrollHeight - w.scrollTop - w.clientHeight < 2 * state.rowHeight;
  }

  function store(rows) {
    for (const row of rows) {
      if (state.t0 === null) state.t0 = row.t;
      state.rows.push(row);
      noteMessageType(row.msg);
    }
    // evict in chunks of a tenth: one splice now and then, not one per batch
    // (MAX_ROWS is 0 until the first snapshot gives the layout; rows can come before it, the
    // connect backlog does: nothing is evicted then)
    if (MAX_ROWS > 0 && state.rows.length > MAX_ROWS * 1.1) {
      const gone = state.rows.length - MAX_ROWS;
      const firstKept = state.rows[gone].seq;
      state.rows.splice(0, gone);
      state.evicted += gone;
      let k = 0;
      while (k < state.visible.length && state.visible[k].seq < firstKept) k++;
      state.visible.splice(0, k);
    }
    return rows;
  }

  // The list is virtual, like Wireshark's: `state.visible` holds every matching row and the
  // page holds only those in the scrolled window (plus OVERSCAN), between two spacers that
  // give the scrollbar its true length. Layout cost stays flat at 200,000 rows.
  const topSpacer = el("div", null, "spacer");
  const bottomSpacer = el("div", null, "spacer");

  // Renders never read the layout first: whether the list follows the newest row is
  // state.follow (changed by the user's scrolling), the window's height is measured on resize.
  function renderList() {
    const wrap = $("list-wrap");
    const body = $("packet-rows");
    const total = state.visible.length;
    const h = state.rowHeight;
    if (!state.viewHeight) state.viewHeight = wrap.clientHeight;
    const window_ = Math.ceil(state.viewHeight / h) + 2 * OVERSCAN;
    let start = state.follow ? Math.max(0, total - window_ + OVERSCAN)
                             : Math.max(0, Math.floor(wrap.scrollTop / h) - OVERSCAN);
    start = Math.min(start, Math.max(0, total - 1));
    const end = Math.min(total, start + window_);
    const count = end - start;
    const top = (start * h) + "px", bottom = ((total - end) * h) + "px";
    if (topSpacer.style.height !== top) topSpacer.style.height = top;
    if (bottomSpacer.style.height !== bottom) bottomSpacer.style.height = bottom;
    for (let i = 0; i < count; i++) fillRow(poolRow(i), state.visible[start + i]);
    if (body.childElementCount !== count + 2) {
      const divs = [topSpacer];
      for (let i = 0; i < count; i++) divs.push(pool[i].div);
      divs.push(bottomSpacer);
      body.replaceChildren(...divs);
    }
    if (count && !state.rowHeightMeasured) {
      const measured = pool[0].div.getBoundingClientRect().height;
      if (measured > 0) { state.rowHeight = measured; state.rowHeightMeasured = true; }
    }
    if (state.follow) wrap.scrollTop = 1e9;        // the browser clamps it to the end
    state.displayed = total;
    updateCounts();
  }

  function appendRows(rows, arrivals) {
    const fresh = store(rows);
    for (const row of fresh) if (matches(row)) state.visible.push(row);
    if (fresh.length) renderList();
    listPainted();
    const rendered = now();
    // arrivals: [[count, received ms, sent ms]...] in order, one per socket message
    let k = 0, left = arrivals.length ? arrivals[0][0] : 0;
    for (const row of rows) {
      while (left === 0 && k < arrivals.length - 1) left = arrivals[++k][0];
      left--;
      const a = arrivals[k] || [0, rendered, 0];
      if (perf.length >= PERF_MAX) perf.splice(0, PERF_MAX / 2);
      perf.push([row.n, row.ts, a[1], rendered, a[2] || 0]);
    }
  }

  function rebuildList() {
    state.visible = state.rows.filter(matches);
    state.follow = true;
    renderList();
  }

  function reveal(frame) {
    const i = state.visible.findIndex((r) => r.n === frame);
    if (i < 0) return false;
    const wrap = $("list-wrap");
    const h = state.rowHeight;
    if (i * h < wrap.scrollTop || (i + 1) * h > wrap.scrollTop + wrap.clientHeight) {
      wrap.scrollTop = Math.max(0, i * h - wrap.clientHeight / 2);
    }
    state.follow = atBottom();
    renderList();
    return true;
  }

  // Status texts are written only when they change (each write is a style and layout pass).
  const shown = new Map();
  function setText(id, value) {
    const text = String(value);
    if (shown.get(id) === text) return;
    shown.set(id, text);
    $(id).textContent = text;
  }

  function updateCounts() {
    setText("st-displayed", state.displayed);
    setText("st-total", state.rows.length + state.evicted);
    const q = $("queued");
    if (q.hidden === state.paused) q.hidden = !state.paused;
    setText("queued", state.queue.length + " queued");
  }

  // Rows are rendered in batches at most every RENDER_MS: at 1,000 packets a second that is
  // ten layouts a second instead of sixty, which leaves the page's one thread free to take
  // the next socket message at once (latency budget: 250 ms from event to screen).
  const RENDER_MS = 80;
  let lastRender = 0;
  function schedule() {
    if (state.rafPending || !state.layout) return;     // rows wait for the panes' layout
    state.rafPending = true;
    setTimeout(() => {
      state.rafPending = false;
      lastRender = performance.now();
      const batch = state.incoming;
      state.incoming = [];
      const rows = [];
      for (const [r] of batch) for (const x of r) rows.push(x);
      if (!rows.length) return;
      // one render for the whole batch; each row keeps the time its own message arrived
      appendRows(rows, batch.map(([r, t, sent]) => [r.length, t, sent]));
    }, Math.max(0, lastRender + RENDER_MS - performance.now()));
  }

  // Rows carry the server's sequence numbers. Batches can overlap (the backlog sent at
  // connect and the first broadcasts) or, in a race at connect, miss a batch: a gap is
  // filled by asking the server ("resync") before anything later is shown, so the list is
  // always complete and in order.
  function receiveRows(rows, recvTs) {
    recvTs = recvTs || now();
    if (state.resync) { state.resync.push([rows, recvTs]); return; }
    const fresh = rows.filter((r) => r.seq > state.lastSeq);
    if (!fresh.length) return;
    if (fresh[0].seq > state.lastSeq + 1) {
      const first = state.lastSeq + 1, last = fresh[0].seq - 1;
      state.resync = [[fresh, recvTs]];
      socket.emit("resync", { from: first, to: last }, (reply) => {
        const waiting = state.resync;
        state.resync = null;
        const missed = (reply && reply.rows ? reply.rows : []).filter((r) => r.seq > state.lastSeq);
        if (missed.length) accept(missed, now());
        state.lastSeq = Math.max(state.lastSeq, last);   // rows the server no longer holds
        for (const [r, t] of waiting) receiveRows(r, t);
      });
      return;
    }
    accept(fresh, recvTs);
  }

  function accept(rows, recvTs) {
    state.lastSeq = rows[rows.length - 1].seq;
    if (state.paused) {
      for (const row of rows) state.queue.push(row);
      updateCounts();
      return;
    }
    state.incoming.push([rows, recvTs, state.lastSent]);
    schedule();
  }

  function togglePause() {
    state.paused = !state.paused;
    const b = $("pause");
    b.textContent = state.paused ? "Resume" : "Pause";
    b.classList.toggle("paused", state.paused);
    if (state.paused && state.incoming.length) {
      // rows received but not drawn yet are held too: the list stays as it was at the click
      for (const [rows] of state.incoming) for (const row of rows) state.queue.push(row);
      state.incoming = [];
    }
    if (!state.paused && state.queue.length) {
      const rows = state.queue;
      state.queue = [];
      state.incoming.push([rows, now(), 0]);
      schedule();
    }
    updateCounts();
  }

  // ---------------------------------------------------------------- selection and details
  function renderTree(nodes, annotated) {
    const ul = el("ul");
    for (const node of nodes) {
      const li = el("li");
      if (node.children && node.children.length) {
        const det = el("details");
        det.open = true;
        det.appendChild(el("summary", node.label));
        det.appendChild(renderTree(node.children));
        if (node.label.startsWith("Keyed view")) li.className = "annot";
        li.appendChild(det);
      } else {
        li.textContent = node.label;
        li.className = "leaf";
      }
      ul.appendChild(li);
    }
    return ul;
  }

  // The detail pane shows one frame at a time, in one of three states: "loading" from the
  // selection until the server's answer, then "shown" (its tree) or "error". The header and
  // the tree change together, so the pane never shows one frame's tree under another's
  // number; an answer for an earlier selection is dropped.
  let detailRequest = 0;
  function showDetail(frame, phase, content) {
    const pane = $("detail");
    pane.dataset.frame = String(frame);
    pane.dataset.state = phase;
    pane.setAttribute("aria-busy", phase === "loading" ? "true" : "false");
    $("detail-frame").textContent = "frame " + frame + (phase === "loading" ? " (loading…)" : "");
    $("detail-tree").replaceChildren(content);
  }

  function select(frame) {
    state.selected = frame;
    renderList();
    const request = ++detailRequest;
    showDetail(frame, "loading", el("p", "Loading frame " + frame + "…", "muted"));
    socket.emit("detail", { frame: frame }, (reply) => {
      if (request !== detailRequest) return;          // another packet was selected since
      if (!reply || reply.error || reply.frame !== frame) {
        showDetail(frame, "error", el("p", reply && reply.error ? reply.error : "no answer", "muted"));
        return;
      }
      showDetail(frame, "shown", renderTree(reply.tree));
    });
  }

  function moveSelection(delta) {
    const rows = state.visible;
    if (!rows.length) return;
    let i = rows.findIndex((r) => r.n === state.selected);
    i = i < 0 ? (delta > 0 ? 0 : rows.length - 1) : Math.max(0, Math.min(rows.length - 1, i + delta));
    reveal(rows[i].n);
    select(rows[i].n);
  }

  // ---------------------------------------------------------------- filters
  function applyDisplayFilter(ev) {
    if (ev) ev.preventDefault();
    const input = $("display-filter");
    const text = input.value.trim();
    input.classList.remove("bad", "good");
    if (!text) { clearDisplayFilter(); return; }
    socket.emit("filter", { filter: text }, (reply) => {
      if (!reply || reply.error) {
        input.classList.add("bad");
        showMessage(reply ? reply.error : "no answer from the server", true);
        return;
      }
      input.classList.add("good");
      showMessage("");
      state.dfText = text;
      state.dfFrames = reply.frames ? new Set(reply.frames) : null;
      rebuildList();
    });
  }

  function clearDisplayFilter() {
    const input = $("display-filter");
    input.value = "";
    input.classList.remove("bad", "good");
    state.dfFrames = null;
    state.dfText = "";
    showMessage("");
    rebuildList();
  }

  function quickChanged() {
    state.quick = { node: $("q-node").value, path: $("q-path").value, msg: $("q-msg").value };
    rebuildList();
  }

  // ---------------------------------------------------------------- export
  // A download is fetched with the token in its header and saved from a blob, under the name
  // the server gives it (Content-Disposition): a plain link would need a cookie or the token
  // in a URL.
  function download(url, init) {
    document.querySelector("details.export").open = false;
    const options = Object.assign({ cache: "no-store" }, init || {});
    options.headers = Object.assign({ [TOKEN_HEADER]: token }, options.headers || {});
    fetch(url, options).then((resp) => {
      if (!resp.ok) {
        return resp.text().then((text) => showMessage(text.trim() || "export failed: HTTP " + resp.status, true));
      }
      const named = /filename="([^"]+)"/.exec(resp.headers.get("Content-Disposition") || "");
      return resp.blob().then((blob) => {
        const a = document.createElement("a");
        a.href = URL.createObjectURL(blob);
        a.download = named ? named[1] : "mip6mon-export";
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(a.href), 60000);
        showMessage("");
      });
    }).catch((err) => showMessage("export failed: " + (err && err.message), true));
  }

  function exportFrames(frames, filterText) {
    if (live) { showMessage("Export needs a capture file: not available in live mode.", true); return; }
    if (frames && !frames.length) { showMessage("Nothing to export: no packet displayed or selected.", true); return; }
    const body = new URLSearchParams({ frames: frames ? frames.join(",") : "", filter: filterText || "" });
    download("/api/export.pcapng", { method: "POST", body: body });
  }

  // ---------------------------------------------------------------- panes
  // Every pane as web/panes.py declares it, from the first snapshot: built once into its panel
  // (PANE_KINDS: one builder and updater per kind), then updated from each snapshot that
  // carries its feed. A column's values are written by its format (FORMATS), as text only.
  // PANE_CODE holds what a pane needs beyond its kind: a plot's drawing, the profile
  // selection, the trail of the selected profile.
  function nodeLabel(hoa) {
    if (!hoa) return "";
    const name = state.names[hoa];
    return name ? hoa + " (" + name + ")" : hoa;
  }

  function tableRow(cells) {
    const tr = document.createElement("tr");
    for (const [value, cls] of cells) {
      const td = el("td", value === null || value === undefined ? "–" : value, cls);
      td.title = td.textContent;
      tr.appendChild(td);
    }
    return tr;
  }

  // A news pane shows its newest `limit` entries, newest first. A snapshot brings only the
  // entries that are new: they go on top, the oldest leave at the bottom, the rest stay put.
  function prependRows(body, items, make, limit) {
    if (!items.length) return;
    const frag = document.createDocumentFragment();
    for (let i = items.length - 1; i >= 0 && items.length - i <= limit; i--) frag.appendChild(make(items[i]));
    body.insertBefore(frag, body.firstChild);
    while (body.children.length > limit) body.lastChild.remove();
  }

  function keep(list, items, limit) {
    for (const x of items) list.push(x);
    if (list.length > limit) list.splice(0, list.length - limit);
  }

  const FORMATS = {
    text: (v) => [v],
    node: (v) => [nodeLabel(v), "hoa"],
    auth: (v) => [v === null || v === undefined ? "?" : (v ? "valid" : "INVALID")],
    list: (v) => [listText(v, 12)],
    count: (v) => [Array.isArray(v) ? v.length : v],
    evidence: (v) => [evidenceText(v)],
    could_be: (v) => [couldBeText(v)],
    number: (v) => [fmtValue(v)],
  };

  function cells(pane, item) {
    return pane.columns.map((c) => (FORMATS[c.format] || FORMATS.text)(item[c.key]));
  }

  // A list pane's line: its first column, then "key=value" for the others it has.
  function lineText(pane, item) {
    if (typeof item !== "object" || item === null) return String(item);
    const [head, ...rest] = pane.columns;
    const parts = rest.filter((c) => item[c.key] !== undefined)
      .map((c) => c.key + "=" + (typeof item[c.key] === "object" ? JSON.stringify(item[c.key]) : item[c.key]));
    return (item[head.key] ? item[head.key] + ": " : "") + parts.join(", ");
  }

  // Where a pane's entries are in a snapshot (undefined: this snapshot does not carry them).
  function feed(snap, path) {
    let v = snap;
    for (const k of path) {
      if (v === null || v === undefined) return undefined;
      v = v[k];
    }
    return v;
  }

  const PANE_KINDS = {
    table: {
      build(pane, box) {
        const table = el("table");
        table.id = pane.id + "-table";
        const head = el("tr");
        for (const c of pane.columns) head.appendChild(el("th", c.heading));
        table.createTHead().appendChild(head);
        table.createTBody();
        box.appendChild(el("div", null, "tbl")).appendChild(table);
      },
      update(pane, items) {
        const body = $(pane.id + "-table").tBodies[0];
        const code = PANE_CODE[pane.id];
        const make = (item) => {
          const tr = tableRow(cells(pane, item));
          if (code && code.row) code.row(tr, item);
          return tr;
        };
        if (!pane.whole) { prependRows(body, items, make, pane.rows); return; }
        const frag = document.createDocumentFragment();
        for (const item of items.slice(0, pane.rows)) frag.appendChild(make(item));
        body.replaceChildren(frag);
      },
    },
    list: {
      build(pane, box) {
        const ul = box.appendChild(el("ul", null, "list"));
        ul.id = pane.id + "-list";
      },
      update(pane, items) {
        const ul = $(pane.id + "-list");
        if (items.length && ul.firstChild && ul.firstChild.classList.contains("muted")) ul.replaceChildren();
        prependRows(ul, items, (item) => el("li", lineText(pane, item)), pane.rows);
        if (!ul.firstChild) ul.appendChild(el("li", "none", "muted"));
      },
    },
    kpis: {
      build(pane, box) { box.appendChild(el("div", null, "kpis")).id = pane.id + "-kpis"; },
      update(pane, p) {
        const frag = document.createDocumentFragment();
        p = p || {};
        for (const c of pane.columns) {
          if (!(c.key in p)) continue;
          const d = el("div", null, "kpi");
          d.title = c.key;
          d.appendChild(el("span", c.heading));
          d.appendChild(el("b", (FORMATS[c.format] || FORMATS.text)(p[c.key])[0]));
          frag.appendChild(d);
        }
        if (p.note || p.error) frag.appendChild(el("div", p.note || p.error, "kpi-note"));
        $(pane.id + "-kpis").replaceChildren(frag);
      },
    },
    plot: {
      build(pane, box) { box.appendChild(el("div", null, "plot")).id = pane.id + "-plot"; },
    },
    trail: {
      build(pane, box) { box.appendChild(el("ol", null, "trail")).id = pane.id + "-list"; },
    },
  };

  function buildPanes(layout) {
    state.layout = layout;
    for (const pane of layout) {
      if (pane.kind === "packets") { layoutPacketList(pane); continue; }
      const box = el("div", null, "pane-" + pane.kind);
      box.id = pane.id + "-pane";
      if (pane.title) {
        const h3 = box.appendChild(el("h3", pane.title + " "));
        if (pane.total.length) h3.appendChild(el("span", null, "muted")).id = pane.id + "-count";
        h3.appendChild(document.createTextNode(" "));
        h3.appendChild(el("span", null, "muted")).id = pane.id + "-note";
      }
      PANE_KINDS[pane.kind].build(pane, box);
      $(pane.panel).appendChild(box);
      const code = PANE_CODE[pane.id];
      if (code && code.built) code.built(pane);
    }
  }

  function renderPanes(snap) {
    for (const pane of state.layout) {
      const items = feed(snap, pane.feed);
      if (items === undefined || pane.kind === "packets") continue;
      if (pane.total.length) setText(pane.id + "-count", "(" + feed(snap, pane.total) + ")");
      const kind = PANE_KINDS[pane.kind], code = PANE_CODE[pane.id];
      if (kind.update) kind.update(pane, items);
      if (code && code.update) code.update(pane, items, snap);
    }
  }

  // The plots and the attacker's trail: what their panes need beyond their kind.
  const PANE_CODE = {
    coa: {
      update(pane, trails) {
        let moved = false;
        for (const [hoa, news] of Object.entries(trails)) {
          if (!state.panes.trails.has(hoa) || news.reset) state.panes.trails.set(hoa, []);
          keep(state.panes.trails.get(hoa), news.points, pane.rows);
          moved = true;
        }
        if (moved || !state.plotKeys.coa) renderCoaPlot();
      },
      predraw: () => drawCoaPlot(),
    },
    profile: {
      built(pane) {
        $(pane.id + "-table").tBodies[0].addEventListener("click", (ev) => {
          const tr = ev.target.closest("tr");
          if (!tr || !tr.dataset.profile || !state.panes.attacker) return;
          state.selectedProfile = tr.dataset.profile;
          for (const id of ["profile", "trail"]) {
            const p = state.layout.find((x) => x.id === id);
            if (p) renderPane(p, state.panes.attacker.profiles);
          }
        });
      },
      row(tr, p) {
        tr.dataset.profile = String(p.id);
        if (String(p.id) === state.selectedProfile) tr.classList.add("selected");
      },
      update(pane, profiles, snap) {
        const a = snap.attacker;
        if (!a) return;
        setText(pane.id + "-note", a.window && a.forgotten
          ? "over the newest " + a.window + " packets (" + a.forgotten + " older ones forgotten)" : "");
      },
    },
    trail: {
      built(pane) { setText(pane.id + "-note", "(select a profile)"); },
      update(pane, profiles) {
        const chosen = profiles.find((p) => String(p.id) === state.selectedProfile) || profiles[0];
        renderTrail(pane, chosen);
      },
    },
    link: {
      update: () => renderLinkPlot(),
      predraw: () => drawLinkPlot([], "[]"),
    },
  };

  // One pane again from entries already had (the profile selection).
  function renderPane(pane, items) {
    const kind = PANE_KINDS[pane.kind], code = PANE_CODE[pane.id];
    if (kind.update) kind.update(pane, items);
    if (code && code.update) code.update(pane, items, {});
  }

  const PLOT_LAYOUT = {
    margin: { l: 150, r: 10, t: 22, b: 28 }, font: { size: 10 }, showlegend: true,
    legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom" },
    paper_bgcolor: "#fff", plot_bgcolor: "#fafbfc",
  };
  const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["toImage"] };

  // Plotly redraws are the page's longest tasks (tens of ms, hundreds on a busy machine), and
  // rows that arrive during one wait for it. So a plot is redrawn at most once per PLOT_SHARE
  // times what its last draw took (it gets 2 % of the page's thread), between PLOT_MIN_MS and
  // PLOT_MAX_MS; a request is deferred, never dropped (the draw reads the newest data); one
  // plot draws per turn, and a turn starts just after the packet list was painted, when the
  // next list render is furthest away (or after PLOT_IDLE_MS when no rows come).
  const PLOT_MIN_MS = 3000, PLOT_MAX_MS = 15000, PLOT_SHARE = 50, PLOT_IDLE_MS = 300;
  const plots = {};
  const plotQueue = [];
  let plotTurn = null;
  function throttled(name, draw) {
    const p = plots[name] || (plots[name] = { last: -Infinity, cost: 0, timer: null, draw: null });
    p.draw = draw;
    if (p.timer !== null || plotQueue.includes(name)) return;
    const interval = Math.min(PLOT_MAX_MS, Math.max(PLOT_MIN_MS, PLOT_SHARE * p.cost));
    p.timer = setTimeout(() => {
      p.timer = null;
      plotQueue.push(name);
      if (plotTurn === null) plotTurn = setTimeout(drawNextPlot, PLOT_IDLE_MS);
    }, Math.max(0, p.last + interval - performance.now()));
  }

  function listPainted() {
    if (!plotQueue.length || plotTurn === -1) return;
    clearTimeout(plotTurn);
    plotTurn = -1;
    requestAnimationFrame(() => setTimeout(drawNextPlot, 0));   // after this frame
  }

  function drawNextPlot() {
    plotTurn = null;
    const name = plotQueue.shift();
    if (name === undefined) return;
    const p = plots[name];
    const t0 = performance.now();
    p.draw();
    p.last = performance.now();
    p.cost = p.last - t0;
    if (plotPerf.length < PERF_MAX) plotPerf.push([name, Math.round(p.cost)]);
    if (plotQueue.length) plotTurn = setTimeout(drawNextPlot, PLOT_IDLE_MS);
  }

  function renderCoaPlot() {
    if (!window.Plotly) return;
    throttled("coa", drawCoaPlot);
  }

  function drawCoaPlot() {
    state.plotKeys.coa = "drawn";
    // a step per move: a re-registration at the same care-of address adds nothing to the
    // picture. Lines without markers: each marker is an SVG element plotly lays out on every
    // redraw (200 points with markers took 100-200 ms a draw, lines alone 30; hover still
    // names every point).
    const traces = Array.from(state.panes.trails).map(([hoa, all]) => {
      const pts = all.filter((p, i) => i === 0 || i === all.length - 1 || p[1] !== all[i - 1][1]);
      return {
        type: "scatter", mode: "lines", line: { shape: "hv" }, name: nodeLabel(hoa),
        x: pts.map((p) => new Date(p[0] * 1000)), y: pts.map((p) => p[1]),
        text: pts.map((p) => "frame " + p[2]), hoverinfo: "x+y+text",
      };
    });
    // the left margin from the longest care-of address (10 px font), not plotly's automargin,
    // which draws the whole plot a second time
    let longest = 0;
    for (const t of traces) for (const y of t.y) longest = Math.max(longest, String(y).length);
    const layout = Object.assign({}, PLOT_LAYOUT, {
      margin: Object.assign({}, PLOT_LAYOUT.margin, { l: Math.min(280, 16 + Math.ceil(6.2 * longest)) }),
      yaxis: { type: "category" }, xaxis: { type: "date" } });
    if (!traces.length) {
      layout.annotations = [{ text: "no care-of addresses tied to a node yet (needs the keyring)",
        showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }];
      layout.xaxis = { visible: false }; layout.yaxis = { visible: false };
    }
    Plotly.react("coa-plot", traces, layout, PLOT_CONFIG);
  }

  // ---------------------------------------------------------------- the attacker's values
  function listText(v, limit) {
    if (v === null || v === undefined) return "";
    if (Array.isArray(v)) {
      const cut = limit && v.length > limit ? v.slice(0, limit) : v;
      const text = cut.map((x) => (typeof x === "object" ? JSON.stringify(x) : String(x))).join(", ");
      return cut.length < v.length ? text + ", … (" + v.length + " in all)" : text;
    }
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function fmtValue(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(3);
    return listText(v);
  }

  // One rule per entry: "spi-increment ≥0.9994 ×3 over P7 0.0003" (links: the weakest
  // confidence and the strongest candidate they ruled out), "esp-sequence-continues ≤0.41 ×2".
  function evidenceText(list) {
    if (!Array.isArray(list)) return listText(list);
    return list.map((e) => {
      if (typeof e !== "object" || e === null) return String(e);
      const n = e.pieces !== undefined ? e.pieces : 1;
      let text = e.rule + " " + (e.links ? "≥" : "≤") + fmtValue(e.confidence) + " ×" + n;
      if (e.over && e.over.profile) text += " over " + e.over.profile + " " + fmtValue(e.over.probability);
      return text;
    }).join("; ");
  }

  // The profiles the attacker could not tell this one apart from (its anonymity set).
  function couldBeText(anon) {
    if (!anon || typeof anon !== "object" || !(anon.size > 1)) return "–";
    const who = (Array.isArray(anon.could_be) ? anon.could_be : [])
      .map((c) => c.profile + " " + fmtValue(c.probability)).join(", ");
    return who + " (set " + anon.size + ", " + fmtValue(anon.entropy_bits) + " bits)";
  }

  function renderTrail(pane, profile) {
    const ol = $(pane.id + "-list");
    const frag = document.createDocumentFragment();
    if (!profile) {
      setText(pane.id + "-note", "(no profile)");
      ol.replaceChildren();
      return;
    }
    setText(pane.id + "-note", "of profile " + profile.id);
    const steps = Array.isArray(profile.trail) ? profile.trail : (profile.care_of_addresses || []);
    for (const step of steps) {
      if (step && typeof step === "object" && step.care_of_address) {
        frag.appendChild(el("li", step.care_of_address + "  " + clock(step.first_time) + " – " +
          clock(step.last_time) + "  (" + step.frames + " frames from #" + step.first_frame + ")"));
      } else {
        frag.appendChild(el("li", listText(step)));
      }
    }
    ol.replaceChildren(frag);
  }

  // The graph shows at most the newest GRAPH_ADDRESSES addresses of each kind per profile:
  // a long replay ties hundreds of pseudo addresses to one profile, unreadable as dots.
  const GRAPH_ADDRESSES = 12;
  function graphAddresses(list) {
    return (Array.isArray(list) ? list : []).filter((a) => typeof a === "string").slice(-GRAPH_ADDRESSES);
  }

  function renderLinkPlot() {
    if (!window.Plotly || !state.panes.attacker) return;
    const profiles = state.panes.attacker.profiles;
    const key = JSON.stringify(profiles.map((p) => [p.id, p.care_of_addresses, p.addresses, p.correspondents]));
    if (key === state.plotKeys.link) return;
    throttled("link", () => drawLinkPlot(profiles, key));
  }

  function drawLinkPlot(profiles, key) {
    state.plotKeys.link = key;
    // Profiles on an inner circle, the addresses each one ties together on an outer one:
    // care-of addresses (where the node was) and home / pseudo home addresses (who it is).
    const addrIndex = new Map();
    const kind = new Map();
    const n = profiles.length;
    const radius = n > 1 ? 1 : 0;
    const px = [], py = [], ptext = [];
    profiles.forEach((p, i) => {
      const ang = (2 * Math.PI * i) / Math.max(n, 1);
      px.push(radius * Math.cos(ang)); py.push(radius * Math.sin(ang)); ptext.push(String(p.id));
      for (const a of graphAddresses(p.care_of_addresses)) { if (!kind.has(a)) kind.set(a, "coa"); }
      for (const a of graphAddresses(p.addresses)) { if (!kind.has(a)) kind.set(a, "home"); }
    });
    for (const a of kind.keys()) addrIndex.set(a, addrIndex.size);
    const m = Math.max(addrIndex.size, 1);
    const pos = new Map();
    for (const [a, j] of addrIndex) {
      const ang = (2 * Math.PI * j) / m + 0.2;
      pos.set(a, [2.2 * Math.cos(ang), 2.2 * Math.sin(ang)]);
    }
    const ex = [], ey = [];
    profiles.forEach((p, i) => {
      for (const a of graphAddresses(p.care_of_addresses).concat(graphAddresses(p.addresses))) {
        const xy = pos.get(a);
        if (!xy) continue;
        ex.push(px[i], xy[0], null); ey.push(py[i], xy[1], null);
      }
    });
    const addrTrace = (which, name, color) => {
      const list = Array.from(kind).filter(([, k]) => k === which).map(([a]) => a);
      return { type: "scatter", mode: "markers", name: name, text: list, hoverinfo: "text+name",
               x: list.map((a) => pos.get(a)[0]), y: list.map((a) => pos.get(a)[1]),
               marker: { size: 7, color: color } };
    };
    const traces = [
      { type: "scatter", mode: "lines", x: ex, y: ey, line: { color: "#9aa4b2", width: 1 },
        hoverinfo: "skip", name: "tie", showlegend: false },
      addrTrace("coa", "care-of address", "#2f6fd6"),
      addrTrace("home", "home / pseudo home address", "#1a9c4a"),
      { type: "scatter", mode: "markers+text", x: px, y: py, text: ptext, textposition: "top center",
        hoverinfo: "text", name: "profile", marker: { size: 13, color: "#d6452f" } },
    ];
    const layout = Object.assign({}, PLOT_LAYOUT, {
      margin: { l: 10, r: 10, t: 22, b: 10 },
      xaxis: { visible: false, range: [-2.8, 2.8] }, yaxis: { visible: false, range: [-2.6, 2.6] } });
    Plotly.react("link-plot", traces, layout, PLOT_CONFIG);
  }

  // ---------------------------------------------------------------- snapshots and status
  // The node quick filter: a node is its home address plus every pseudo and care-of address
  // the keyed view tied to it, learnt from the new entries of each snapshot.
  function noteNode(hoa, address) {
    if (!hoa) return;
    if (!state.nodeAddrs.has(hoa)) {
      state.nodeAddrs.set(hoa, new Set([hoa]));
      const opt = el("option", nodeLabel(hoa));
      opt.value = hoa;
      $("q-node").appendChild(opt);
    }
    if (address) state.nodeAddrs.get(hoa).add(address);
  }

  function updateNodes(snap) {
    if (snap.names) {
      state.names = snap.names;
      for (const hoa of Object.keys(state.names)) noteNode(hoa, hoa);
    }
    for (const b of snap.keyed.home_bindings.concat(snap.keyed.correspondent_bindings)) {
      noteNode(b.home_address, b.pseudo_home_address); noteNode(b.home_address, b.care_of_address);
    }
    for (const [hoa, news] of Object.entries(snap.trails || {})) for (const p of news.points) noteNode(hoa, p[1]);
    // frames the keys tied to a node only after their row came (the rows carry the rest)
    const late = snap.late_nodes || [];
    for (const [f, hoa] of late) state.frameNodes.set(Number(f), hoa);
    if (late.length && state.quick.node) rebuildList();
  }

  function renderStatus(s) {
    setText("st-source", s.source);
    // a live capture's restarts and gaps (issue 12): what was missed, always in sight
    const sup = s.supervision;
    const missed = sup && (sup.restarts || sup.gaps_total)
      ? " [dumpcap restarts: " + sup.restarts + ", capture gaps: " + sup.gaps_total + "]" : "";
    // rows this page was not sent while it was behind (fetched again when it caught up)
    const behind = s.client && s.client.rows_held_back
      ? " [rows held back while this page was behind: " + s.client.rows_held_back + "]" : "";
    setText("st-state", s.state + (s.error ? ": " + s.error : "") + (s.speed === "max" ? " (max speed)" : " (x" + s.speed + ")") + missed + behind);
    setText("st-read", s.read);
    setText("st-analysed", s.analysed);
    setText("st-malformed", s.malformed);
    setText("st-dropped", s.dropped);
    setText("st-esp", s.esp_decrypted);
    setText("st-rate", s.rate);
    if (s.sensors) renderSensors(s.sensors, s.redis);
  }

  // `mip6mon serve`: Redis's state and each sensor (name, vantage point, rate, lag, drops,
  // last seen), one line each in a tooltip, a summary in the bar (textContent only: sensor
  // names come from the stream)
  function renderSensors(sensors, redis) {
    const box = $("st-sensors");
    box.hidden = false;
    const lines = sensors.map((x) => x.name + " (" + x.vantage + "): " + x.state + ", " +
      x.rate + "/s, lag " + x.lag + " s, drops " + x.drops + ", seen " + x.last_seen + " s ago");
    const down = redis && redis.down_since ? "Redis unreachable (" + redis.reason + "); " : "";
    const drops = sensors.reduce((n, x) => n + x.drops, 0);
    box.textContent = down + "Sensors " + sensors.length + " (drops " + drops + "): " +
      (lines.join(" · ") || "none yet");
    box.title = lines.join("\n");
  }

  // The first snapshot carries the panes' layout: the page builds them, draws its plots empty
  // (their costliest draw), and says it is ready, which starts a paced replay; rows received
  // before wait for the layout.
  function receiveSnapshot(snap) {
    if (snap.panes && !state.layout) {
      buildPanes(snap.panes);
      if (window.Plotly) for (const pane of snap.panes) {
        const code = PANE_CODE[pane.id];
        if (code && code.predraw) code.predraw();
      }
      socket.emit("ready");
      schedule();
    }
    if (snap.packet_classes && Object.keys(snap.packet_classes).length) {
      state.classes = snap.packet_classes;
      state.epoch++;                           // rows drawn before the names came: redraw
      renderList();
    }
    renderStatus(snap.status);
    updateNodes(snap);
    setText("keyed-note", snap.status.keyed ? "(keyring loaded)" : "(no keyring: only what the wire shows)");
    if (snap.attacker) state.panes.attacker = snap.attacker;
    renderPanes(snap);
    // the vantage the attacker panes now show (set with them, in this same task)
    if (snap.attacker) $("attacker").dataset.vantage = snap.attacker.vantage || "";
    renderLegend();
  }

  let legendDone = false;
  function renderLegend() {
    if (legendDone || !Object.keys(state.classes).length) return;
    legendDone = true;
    const box = $("legend");
    for (const [k, name] of Object.entries(state.classes)) {
      if (k === "other") continue;
      box.appendChild(el("span", name, "proc-" + k));
    }
  }

  // ---------------------------------------------------------------- wiring
  // The socket connects once plotly.js is compiled (below): a paced replay starts when the
  // first page connects, and compiling plotly.js would otherwise stall its first second.
  const socket = io({ auth: { token: token }, transports: ["websocket", "polling"], autoConnect: false });
  window.mip6monSocket = socket;

  socket.on("connect", () => { $("st-conn").textContent = "connected"; $("st-conn").className = "conn ok"; });
  socket.on("disconnect", () => { $("st-conn").textContent = "disconnected"; $("st-conn").className = "conn bad"; });
  socket.on("connect_error", (err) => {
    $("st-conn").textContent = "refused: " + (err && err.message ? err.message : "error");
    $("st-conn").className = "conn bad";
  });
  socket.on("backlog", (data) => { state.evicted = data.evicted || 0; receiveRows(data.rows || []); });
  socket.on("rows", (batch) => { state.lastSent = batch.sent; receiveRows(batch.rows); });
  socket.on("snapshot", receiveSnapshot);
  socket.on("server_error", (d) => showMessage("server: " + (d && d.message), true));

  let scrollPending = false;
  $("list-wrap").addEventListener("scroll", () => {
    // our own move to the newest row: nothing to do (and no extra frame to ask for)
    if (state.follow && atBottom()) return;
    if (scrollPending) return;
    scrollPending = true;
    requestAnimationFrame(() => {
      scrollPending = false;
      state.follow = atBottom();        // the user scrolled up (or back down to the end)
      renderList();
    });
  });
  // the list's height: measured when it changes, never read during a render
  new ResizeObserver(() => { state.viewHeight = $("list-wrap").clientHeight; renderList(); })
    .observe($("list-wrap"));
  // tooltips are set when the pointer comes: the whole value of the column under it
  $("packet-rows").addEventListener("mousemove", (ev) => {
    const div = ev.target.closest(".row");
    const slot = div && pool.find((x) => x.div === div);
    if (!slot || !slot.row) return;
    const c = columnAt(div, ev.clientX);
    // the whole value: the Info column is cut in the row
    const title = String(COLUMNS[c][4] === "info" ? slot.row[COLUMNS[c][2]] : rowValues(slot.row)[c]);
    if (div.title !== title) div.title = title;
  });
  // For tests and the benchmark: what the packet list shows, column by column.
  function shownColumns() {
    return Array.from($("packet-rows").children).filter((d) => d.classList.contains("row")).map((d) => {
      const text = d.textContent;
      const out = [];
      let at = 0;
      for (const [, width] of COLUMNS) {
        out.push((width ? text.substring(at, at + width) : text.substring(at)).trimEnd());
        at += width;
      }
      return out;
    });
  }
  window.mip6mon = {
    displayed: () => state.visible.map((r) => r.n),
    reveal: (frame) => reveal(Number(frame)),
    shown: shownColumns,
    // the filters the list was last rebuilt with
    filters: () => ({ display: state.dfText, node: state.quick.node, path: state.quick.path, msg: state.quick.msg }),
  };
  $("packet-rows").addEventListener("click", (ev) => {
    const div = ev.target.closest(".row");
    if (div && div.dataset.frame) select(Number(div.dataset.frame));
  });
  $("list-wrap").tabIndex = 0;
  $("list-wrap").addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown") { moveSelection(1); ev.preventDefault(); }
    if (ev.key === "ArrowUp") { moveSelection(-1); ev.preventDefault(); }
  });
  $("filter-form").addEventListener("submit", applyDisplayFilter);
  $("filter-clear").addEventListener("click", clearDisplayFilter);
  for (const id of ["q-node", "q-path", "q-msg"]) $(id).addEventListener("change", quickChanged);
  $("pause").addEventListener("click", togglePause);
  $("vantage").addEventListener("change", () => {
    state.selectedProfile = null;
    socket.emit("vantage", { vantage: $("vantage").value });
  });
  for (const button of document.querySelectorAll("button[data-export]")) {
    button.addEventListener("click", () => {
      const vantage = button.hasAttribute("data-vantage") ? "?vantage=" + encodeURIComponent($("vantage").value) : "";
      download(button.dataset.export + vantage);
    });
  }
  $("export-filtered").addEventListener("click", () => {
    const frames = state.rows.filter(matches).map((r) => r.n);
    exportFrames(frames, "");
  });
  $("export-selected").addEventListener("click", () => {
    exportFrames(state.selected ? [state.selected] : [], "");
  });
  // plotly.js (1.2 MB) is added by this script rather than the page, so the page is
  // usable at once; the socket follows it (or its failure: the list works without plots), and
  // the first snapshot has the plots drawn empty before the rows flow (receiveSnapshot).
  const plotly = document.createElement("script");
  plotly.src = "/plotly.min.js?token=" + encodeURIComponent(token);
  plotly.addEventListener("load", () => socket.connect());
  plotly.addEventListener("error", () => socket.connect());
  document.head.appendChild(plotly);
  if (live) $("display-filter").placeholder = "Display filters need a capture file (live: use the quick filters)";
})();
