/* mip6mon dashboard client.
 * Every string that came from a packet is untrusted: it is only ever put in the page with
 * textContent (never parsed as markup), and this file is the page's only script (strict CSP). */
"use strict";

(function () {
  const MAX_ROWS = 200000;      // rows kept in memory for filtering
  const OVERSCAN = 8;           // rows rendered above and below the visible window
  const PERF_MAX = 50000;       // latency samples kept for the benchmark

  const $ = (id) => document.getElementById(id);
  const token = document.querySelector('meta[name="mip6mon-token"]').content;
  const live = document.querySelector('meta[name="mip6mon-live"]').content === "yes";

  const state = {
    t0: null, lastSeq: 0, resync: null, rows: [], visible: [], rowHeight: 17, rowHeightMeasured: false, byFrame: new Map(), lastFrame: 0, evicted: 0,
    paused: false, queue: [], incoming: [], rafPending: false,
    dfFrames: null, dfText: "", quick: { node: "", path: "", msg: "" },
    frameNodes: new Map(), names: {}, nodeAddrs: new Map(),
    displayed: 0, selected: null, procedures: {},
    snapshot: null, plotKeys: { coa: "", link: "" }, selectedProfile: null,
  };

  // Latency probe read by benchmarks/bench_latency.py, epoch ms per row:
  // [frame, due in the replay, received by this page, rendered, batch sent by the server].
  const perf = [];
  window.mip6monPerf = perf;
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
      const owner = state.frameNodes.get(row.n);
      if (owner !== q.node) {
        const addrs = state.nodeAddrs.get(q.node) || new Set([q.node]);
        if (!row.addrs.some((a) => addrs.has(a))) return false;
      }
    }
    return true;
  }

  const PROC_OK = new Set(["home", "rr", "cn", "error", "prefix", "data", "tunnel", "esp", "other"]);

  function rowElement(row) {
    const tr = document.createElement("tr");
    tr.className = "proc-" + (PROC_OK.has(row.proc) ? row.proc : "other") + (row.mal ? " malformed" : "");
    tr.dataset.frame = String(row.n);
    const procName = state.procedures[row.proc] || row.proc;
    for (const v of [row.n, fmtTime(row.t), row.src, row.dst, procName, row.msg, row.path, row.len, row.info]) {
      const td = el("td", v);
      td.title = String(v);
      tr.appendChild(td);
    }
    if (state.selected === row.n) tr.classList.add("selected");
    return tr;
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
    const fresh = [];
    for (const row of rows) {
      if (state.t0 === null) state.t0 = row.t;
      state.rows.push(row);
      state.byFrame.set(row.n, row);
      noteMessageType(row.msg);
      fresh.push(row);
    }
    if (state.rows.length > MAX_ROWS) {
      const gone = state.rows.splice(0, state.rows.length - MAX_ROWS);
      for (const old of gone) state.byFrame.delete(old.n);
      state.evicted += gone.length;
      const keep = new Set(state.rows.map((r) => r.n));
      state.visible = state.visible.filter((r) => keep.has(r.n));
    }
    return fresh;
  }

  // The list is virtual, like Wireshark's: `state.visible` holds every matching row and the
  // table holds only those in the scrolled window (plus OVERSCAN), between two spacer rows
  // that give the scrollbar its true length. Layout cost stays flat at 200,000 rows.
  const topSpacer = document.createElement("tr");
  const bottomSpacer = document.createElement("tr");
  topSpacer.className = bottomSpacer.className = "spacer";
  topSpacer.appendChild(el("td")); bottomSpacer.appendChild(el("td"));
  topSpacer.firstChild.colSpan = bottomSpacer.firstChild.colSpan = 9;

  function renderList(stick) {
    const wrap = $("list-wrap");
    const body = $("packet-rows");
    const total = state.visible.length;
    const h = state.rowHeight;
    const window_ = Math.ceil(wrap.clientHeight / h) + 2 * OVERSCAN;
    let start = stick ? Math.max(0, total - window_ + OVERSCAN)
                      : Math.max(0, Math.floor(wrap.scrollTop / h) - OVERSCAN);
    start = Math.min(start, Math.max(0, total - 1));
    const end = Math.min(total, start + window_);
    topSpacer.firstChild.style.height = (start * h) + "px";
    bottomSpacer.firstChild.style.height = ((total - end) * h) + "px";
    const frag = document.createDocumentFragment();
    frag.appendChild(topSpacer);
    for (let i = start; i < end; i++) frag.appendChild(rowElement(state.visible[i]));
    frag.appendChild(bottomSpacer);
    body.replaceChildren(frag);
    if (end > start && !state.rowHeightMeasured) {
      const measured = body.children[1].getBoundingClientRect().height;
      if (measured > 0) { state.rowHeight = measured; state.rowHeightMeasured = true; }
    }
    if (stick) wrap.scrollTop = wrap.scrollHeight;
    state.displayed = total;
    updateCounts();
  }

  function appendRows(rows, arrivals) {
    const fresh = store(rows);
    const stick = atBottom();
    for (const row of fresh) if (matches(row)) state.visible.push(row);
    if (fresh.length) renderList(stick);
    const rendered = now();
    // arrivals: [[count, received ms, sent ms]...] in order, one per socket message
    let k = 0, left = arrivals.length ? arrivals[0][0] : 0;
    for (const row of rows) {
      while (left === 0 && k < arrivals.length - 1) left = arrivals[++k][0];
      left--;
      const a = arrivals[k] || [0, rendered, 0];
      if (perf.length >= PERF_MAX) perf.shift();
      perf.push([row.n, row.ts, a[1], rendered, a[2] || 0]);
    }
    updateCounts();
  }

  function rebuildList() {
    state.visible = state.rows.filter(matches);
    renderList(true);
  }

  function reveal(frame) {
    const i = state.visible.findIndex((r) => r.n === frame);
    if (i < 0) return false;
    const wrap = $("list-wrap");
    const h = state.rowHeight;
    const head = $("packet-list").tHead.getBoundingClientRect().height;
    if (i * h < wrap.scrollTop || (i + 1) * h > wrap.scrollTop + wrap.clientHeight - head) {
      wrap.scrollTop = Math.max(0, i * h - wrap.clientHeight / 2);
    }
    renderList(false);
    return true;
  }

  function updateCounts() {
    $("st-displayed").textContent = String(state.displayed);
    $("st-total").textContent = String(state.rows.length + state.evicted);
    const q = $("queued");
    q.hidden = !state.paused;
    q.textContent = state.queue.length + " queued";
  }

  // Rows are rendered in batches at most every RENDER_MS: at 1,000 packets a second that is
  // ten layouts a second instead of sixty, which leaves the page's one thread free to take
  // the next socket message at once (latency budget: 250 ms from event to screen).
  const RENDER_MS = 80;
  let lastRender = 0;
  function schedule() {
    if (state.rafPending) return;
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

  function select(frame) {
    state.selected = frame;
    for (const tr of $("packet-rows").querySelectorAll("tr.selected")) tr.classList.remove("selected");
    const tr = $("packet-rows").querySelector('tr[data-frame="' + frame + '"]');
    if (tr) tr.classList.add("selected");
    $("detail-frame").textContent = "frame " + frame;
    socket.emit("detail", { frame: frame }, (reply) => {
      if (state.selected !== frame) return;
      const box = $("detail-tree");
      if (!reply || reply.error) {
        box.replaceChildren(el("p", reply ? reply.error : "no answer", "muted"));
        return;
      }
      box.replaceChildren(renderTree(reply.tree));
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
  function exportFrames(frames, filterText) {
    if (live) { showMessage("Export needs a capture file: not available in live mode.", true); return; }
    if (frames && !frames.length) { showMessage("Nothing to export: no packet displayed or selected.", true); return; }
    $("export-token").value = token;
    $("export-frames").value = frames ? frames.join(",") : "";
    $("export-filter").value = filterText || "";
    $("export-form").submit();
    document.querySelector("details.export").open = false;
  }

  // ---------------------------------------------------------------- keyed pane
  function nodeLabel(hoa) {
    if (!hoa) return "";
    const name = state.names[hoa];
    return name ? hoa + " (" + name + ")" : hoa;
  }

  // Tables are rebuilt only when their content changed: snapshots come twice a second and
  // the browser's time belongs to the packet list first.
  const tableKeys = new Map();
  function fillTable(id, rows, cells, extraKey) {
    const body = $(id).querySelector("tbody");
    const key = JSON.stringify(rows) + (extraKey || "");
    if (tableKeys.get(id) === key) return null;
    tableKeys.set(id, key);
    const frag = document.createDocumentFragment();
    for (const row of rows) {
      const tr = document.createElement("tr");
      for (const [value, cls] of cells(row)) {
        const td = el("td", value === null || value === undefined ? "–" : value, cls);
        td.title = td.textContent;
        tr.appendChild(td);
      }
      frag.appendChild(tr);
    }
    body.replaceChildren(frag);
    return body;
  }

  function findingText(f) {
    if (typeof f !== "object" || f === null) return String(f);
    const head = f.kind || f.type || f.code || f.id || "";
    const rest = Object.entries(f).filter(([k]) => !["kind", "type", "code", "id"].includes(k))
      .map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v));
    return (head ? head + ": " : "") + rest.join(", ");
  }

  function renderKeyed(snap) {
    const k = snap.keyed;
    $("keyed-note").textContent = snap.status.keyed ? "(keyring loaded)" : "(no keyring: only what the wire shows)";
    $("home-count").textContent = "(" + k.home_total + ")";
    fillTable("home-table", k.home_bindings, (b) => [
      [b.home_agent], [nodeLabel(b.home_address), "hoa"], [b.pseudo_home_address],
      [b.care_of_address], [b.sequence], [b.lifetime], [b.frame]]);
    $("cn-count").textContent = "(" + k.correspondent_total + ")";
    fillTable("cn-table", k.correspondent_bindings, (b) => [
      [b.correspondent], [nodeLabel(b.home_address), "hoa"], [b.pseudo_home_address],
      [b.care_of_address], [b.sequence],
      [b.authenticator_valid === null || b.authenticator_valid === undefined ? "?" : (b.authenticator_valid ? "valid" : "INVALID")],
      [b.frame]]);
    $("findings-count").textContent = "(" + k.findings_total + ")";
    const ul = $("findings");
    const frag = document.createDocumentFragment();
    for (const f of k.findings) frag.appendChild(el("li", findingText(f)));
    if (!k.findings.length) frag.appendChild(el("li", "none", "muted"));
    ul.replaceChildren(frag);
    renderCoaPlot(snap.trails || {});
  }

  const PLOT_LAYOUT = {
    margin: { l: 150, r: 10, t: 22, b: 28 }, font: { size: 10 }, showlegend: true,
    legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom" },
    paper_bgcolor: "#fff", plot_bgcolor: "#fafbfc",
  };
  const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["toImage"] };

  // Plotly redraws cost tens of ms: at most one per plot every PLOT_MIN_MS, the last one
  // deferred rather than dropped.
  const PLOT_MIN_MS = 3000;
  const plotTimes = {}, plotTimers = {};
  function throttled(name, draw) {
    const wait = (plotTimes[name] || 0) + PLOT_MIN_MS - Date.now();
    clearTimeout(plotTimers[name]);
    if (wait > 0) { plotTimers[name] = setTimeout(() => throttled(name, draw), wait); return; }
    plotTimes[name] = Date.now();
    draw();
  }

  function renderCoaPlot(trails) {
    if (!window.Plotly) return;
    const key = JSON.stringify(trails);
    if (key === state.plotKeys.coa) return;
    throttled("coa", () => drawCoaPlot(trails, key));
  }

  function drawCoaPlot(trails, key) {
    state.plotKeys.coa = key;
    const traces = Object.entries(trails).map(([hoa, pts]) => ({
      type: "scatter", mode: "lines+markers", line: { shape: "hv" }, name: nodeLabel(hoa),
      x: pts.map((p) => new Date(p[0] * 1000)), y: pts.map((p) => p[1]),
      text: pts.map((p) => "frame " + p[2]), hoverinfo: "x+y+text",
    }));
    const layout = Object.assign({}, PLOT_LAYOUT, {
      yaxis: { type: "category", automargin: true }, xaxis: { type: "date" } });
    if (!traces.length) {
      layout.annotations = [{ text: "no care-of addresses tied to a node yet (needs the keyring)",
        showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }];
      layout.xaxis = { visible: false }; layout.yaxis = { visible: false };
    }
    Plotly.react("coa-plot", traces, layout, PLOT_CONFIG);
  }

  // ---------------------------------------------------------------- attacker pane
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

  const KPIS = [
    ["link_precision", "link precision"], ["link_recall", "link recall"],
    ["followed_fraction", "trail followed"], ["care_of_tied_fraction", "CoAs tied to node"],
    ["home_address_exposed", "HoA exposed"], ["anonymity_set_mean", "anonymity set"],
    ["entropy_bits_mean", "entropy (bits)"], ["profiles", "profiles"], ["frames_scored", "frames scored"],
  ];

  function fmtValue(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(3);
    return listText(v);
  }

  function renderPrivacy(p) {
    const box = $("privacy");
    const frag = document.createDocumentFragment();
    p = p || {};
    for (const [key, label] of KPIS) {
      if (!(key in p)) continue;
      const d = el("div", null, "kpi");
      d.title = key;
      d.appendChild(el("span", label));
      d.appendChild(el("b", fmtValue(p[key])));
      frag.appendChild(d);
    }
    if (p.note || p.error) frag.appendChild(el("div", p.note || p.error, "kpi-note"));
    box.replaceChildren(frag);
  }

  function evidenceText(list) {
    if (!Array.isArray(list)) return listText(list);
    return list.map((e) => (typeof e === "object" && e !== null)
      ? (e.rule + " " + fmtValue(e.confidence) + " ×" + (e.frame_count !== undefined ? e.frame_count : (e.frames || []).length))
      : String(e)).join("; ");
  }

  function renderAttacker(snap) {
    const a = snap.attacker;
    renderPrivacy(snap.privacy);
    $("profile-count").textContent = "(" + a.profiles_total + ")";
    const body = fillTable("profile-table", a.profiles, (p) => [
      [p.id], [listText(p.care_of_addresses, 12)], [listText(p.addresses, 12)], [listText(p.correspondents, 12)],
      [Array.isArray(p.frames) ? p.frames.length : p.frames], [evidenceText(p.evidence)]],
      "|" + state.selectedProfile);
    if (!body) return;
    Array.from(body.children).forEach((tr, i) => {
      const p = a.profiles[i];
      tr.dataset.profile = String(p.id);
      if (String(p.id) === state.selectedProfile) tr.classList.add("selected");
      tr.addEventListener("click", () => { state.selectedProfile = String(p.id); renderAttacker(state.snapshot); });
    });
    const chosen = a.profiles.find((p) => String(p.id) === state.selectedProfile) || a.profiles[0];
    renderTrail(chosen);
    renderLinkPlot(a.profiles);
  }

  function renderTrail(profile) {
    const ol = $("trail");
    const frag = document.createDocumentFragment();
    if (!profile) {
      $("trail-title").textContent = "(no profile)";
      ol.replaceChildren();
      return;
    }
    $("trail-title").textContent = "of profile " + profile.id;
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
  const GRAPH_ADDRESSES = 24;
  function graphAddresses(list) {
    return (Array.isArray(list) ? list : []).filter((a) => typeof a === "string").slice(-GRAPH_ADDRESSES);
  }

  function renderLinkPlot(profiles) {
    if (!window.Plotly) return;
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
  function updateNodes(snap) {
    state.names = snap.names || {};
    for (const [f, hoa] of Object.entries(snap.frame_nodes || {})) state.frameNodes.set(Number(f), hoa);
    // A node is its home address plus every pseudo and care-of address the keyed view tied to it.
    const addrs = new Map();
    const add = (hoa, a) => { if (!hoa || !a) return; if (!addrs.has(hoa)) addrs.set(hoa, new Set([hoa])); addrs.get(hoa).add(a); };
    for (const b of snap.keyed.home_bindings.concat(snap.keyed.correspondent_bindings)) {
      add(b.home_address, b.pseudo_home_address); add(b.home_address, b.care_of_address);
    }
    for (const [hoa, pts] of Object.entries(snap.trails || {})) for (const p of pts) add(hoa, p[1]);
    for (const hoa of Object.keys(state.names)) add(hoa, hoa);
    state.nodeAddrs = addrs;
    const sel = $("q-node");
    const have = new Set(Array.from(sel.options).map((o) => o.value));
    for (const hoa of addrs.keys()) {
      if (have.has(hoa)) continue;
      const opt = el("option", nodeLabel(hoa));
      opt.value = hoa;
      sel.appendChild(opt);
    }
  }

  function renderStatus(s) {
    $("st-source").textContent = s.source;
    $("st-state").textContent = s.state + (s.error ? ": " + s.error : "") + (s.speed === "max" ? " (max speed)" : " (x" + s.speed + ")");
    $("st-read").textContent = String(s.read);
    $("st-analysed").textContent = String(s.analysed);
    $("st-malformed").textContent = String(s.malformed);
    $("st-dropped").textContent = String(s.dropped);
    $("st-esp").textContent = String(s.esp_decrypted);
    $("st-rate").textContent = String(s.rate);
  }

  function receiveSnapshot(snap) {
    state.snapshot = snap;
    state.procedures = snap.procedures || state.procedures;
    renderStatus(snap.status);
    updateNodes(snap);
    renderKeyed(snap);
    renderAttacker(snap);
    if (state.quick.node && Object.keys(snap.frame_nodes || {}).length) rebuildList();
    renderLegend();
  }

  let legendDone = false;
  function renderLegend() {
    if (legendDone || !Object.keys(state.procedures).length) return;
    legendDone = true;
    const box = $("legend");
    for (const [k, name] of Object.entries(state.procedures)) {
      if (!PROC_OK.has(k) || k === "other") continue;
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
    if (scrollPending) return;
    scrollPending = true;
    requestAnimationFrame(() => { scrollPending = false; renderList(false); });
  });
  window.addEventListener("resize", () => renderList(atBottom()));
  // For tests and the benchmark: the displayed frames, and bringing one into view.
  window.mip6mon = {
    displayed: () => state.visible.map((r) => r.n),
    reveal: (frame) => reveal(Number(frame)),
  };
  $("packet-rows").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr");
    if (tr && tr.dataset.frame) select(Number(tr.dataset.frame));
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
    $("export-report").href = "/api/report.json?vantage=" + encodeURIComponent($("vantage").value);
    socket.emit("vantage", { vantage: $("vantage").value });
  });
  $("export-filtered").addEventListener("click", () => {
    const frames = state.rows.filter(matches).map((r) => r.n);
    exportFrames(frames, "");
  });
  $("export-selected").addEventListener("click", () => {
    exportFrames(state.selected ? [state.selected] : [], "");
  });
  // plotly.js (1.2 MB) is added by this script rather than the page, so the page is
  // usable at once; the socket follows it (or its failure: the list works without plots).
  const plotly = document.createElement("script");
  plotly.src = "/plotly.min.js";
  plotly.addEventListener("load", () => {
    state.plotKeys = { coa: "", link: "" };
    if (state.snapshot) { renderCoaPlot(state.snapshot.trails || {}); renderLinkPlot(state.snapshot.attacker.profiles); }
    socket.connect();
  });
  plotly.addEventListener("error", () => socket.connect());
  document.head.appendChild(plotly);
  if (live) $("display-filter").placeholder = "Display filters need a capture file (live: use the quick filters)";
})();
