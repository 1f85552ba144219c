// digitlab's page: draw (or upload) a digit or a number, the model answers while you draw (debounced); why it
// answered so (occlusion heat-map), a correction when it is wrong, and the network's insides (inside.js).
const $ = (id) => document.getElementById(id);
const pad = $("pad"), ctx = pad.getContext("2d", { willReadFrequently: true });
const SIZE = { single: [280, 280], multi: [840, 280] };
const history = [];  // canvas snapshots, one per stroke, for undo
const seq = { predict: 0, why: 0 };  // a reply older than the latest request is dropped
const view = { last: null, blob: null, photo: false, why: null, corrections: false, roundTrip: null };
let drawing = false, pen = null, timer = null;

// ---- talking to the server: one error path for every call ----
async function api(url, options = {}) {
  let r;
  try { r = await fetch(url, options); } catch (err) { return { ok: false, error: t("cannotReach", { err: err.message }) }; }
  const text = await r.text();
  let data = null;
  try { data = JSON.parse(text); } catch { /* not JSON: a proxy's error page, say */ }
  if (r.ok && data !== null) return { ok: true, data };
  const detail = data && typeof data.detail === "string" ? data.detail : t("httpError", { status: r.status, text: r.statusText }).trim();
  return { ok: false, status: r.status, error: detail };
}
function model() { return encodeURIComponent($("model").value); }
function multi() { return $("multi").checked; }
function pct(p) { return (100 * p).toFixed(1); }

// ---- drawing ----
function blank() { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, pad.width, pad.height); }
function point(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}
function stroke(a, b) {
  ctx.strokeStyle = "#000"; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.lineWidth = +$("brush").value;
  ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
}
function snapshot() { history.push(ctx.getImageData(0, 0, pad.width, pad.height)); }
pad.addEventListener("pointerdown", (e) => {
  pad.setPointerCapture(e.pointerId); snapshot();
  drawing = true; pen = point(e); stroke(pen, pen);
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const p = point(e); stroke(pen, p); pen = p; schedule(120);
});
for (const ev of ["pointerup", "pointercancel"]) pad.addEventListener(ev, () => { if (drawing) { drawing = false; schedule(0); } });
// the keyboard draws too: arrows draw a line from the pen, Shift+arrows move the pen without ink
pad.addEventListener("keydown", (e) => {
  const step = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0] }[e.key];
  if (!step) return;
  e.preventDefault();
  pen = pen || [pad.width / 2, pad.height / 2];
  const next = [Math.min(pad.width, Math.max(0, pen[0] + 10 * step[0])), Math.min(pad.height, Math.max(0, pen[1] + 10 * step[1]))];
  if (!e.shiftKey) { if (!e.repeat) snapshot(); stroke(pen, next); schedule(300); }
  pen = next;
});

function usePad() { view.photo = false; $("photo").hidden = true; pad.hidden = false; }
function resize() {
  const [w, h] = SIZE[multi() ? "multi" : "single"];
  pad.width = w; pad.height = h; history.length = 0; pen = null;
  pad.classList.toggle("wide", multi()); $("stage").closest(".card").classList.toggle("wide", multi());
  $("why").hidden = multi();  // the heat-map explains one digit
  $("draw-title").dataset.i18n = multi() ? "drawNumber" : "draw"; $("draw-title").textContent = t($("draw-title").dataset.i18n);
  usePad(); blank(); reset();
}
$("multi").onchange = resize;
$("clear").onclick = () => { snapshot(); usePad(); blank(); reset(); };
$("undo").onclick = () => { if (history.length) { usePad(); ctx.putImageData(history.pop(), 0, 0); schedule(0); } };

function reset() {
  seq.predict++; seq.why++;
  view.last = null; view.blob = null; view.why = null;
  $("answer").textContent = "–"; $("bars").replaceChildren(); $("seen").replaceChildren(); $("boxes").replaceChildren();
  $("teach").hidden = true; $("heat").hidden = true; $("why-status").textContent = "";
  status(t("start"));
}
function status(text, error = false) { $("status").textContent = text; $("status").className = error ? "status error" : "status"; }
function schedule(ms) { clearTimeout(timer); timer = setTimeout(sendCanvas, ms); }
function canvasBlob() { return new Promise((ok) => pad.toBlob(ok, "image/png")); }
async function sendCanvas() { send(await canvasBlob()); }

// ---- the answer ----
async function send(blob) {
  const id = ++seq.predict, t0 = performance.now();
  view.blob = blob;
  const res = await api(`/api/predict?model=${model()}&multi=${multi()}`, { method: "POST", headers: { "Content-Type": blob.type || "image/png" }, body: blob });
  if (id !== seq.predict) return;  // a newer request is on its way
  view.roundTrip = performance.now() - t0;
  $("answer").dataset.ms = view.roundTrip.toFixed(1);
  if (!res.ok) { status(res.error, true); $("answer").textContent = "?"; $("boxes").replaceChildren(); $("teach").hidden = true; return; }
  view.last = res.data;
  show(res.data);
  explain();
  document.dispatchEvent(new CustomEvent("predicted", { detail: { blob } }));
}

function show(data) {
  $("answer").textContent = data.label;
  const top = data.digits[0].top_k;
  const parts = [t("sure", { answer: data.label, p: pct(data.prob) })];
  if (!data.alternatives && top.length > 1) parts.push(t("runnerUp", { label: top[1][0], p: pct(top[1][1]) }));
  const others = (data.alternatives || []).map((a) => a.label).join(", ");
  if (others) parts.push(t("orMaybe", { others }));
  parts.push(t("server", { ms: data.timing_ms }), t("roundTrip", { ms: view.roundTrip.toFixed(0) }));
  status(parts.join(" · "));
  showBars(data);
  $("seen").replaceChildren(...data.digits.map((d) => {
    const img = new Image(); img.src = `data:image/png;base64,${d.image}`; img.alt = t("seenAlt", { label: d.label }); return img;
  }));
  showBoxes(data);
  $("why-0").textContent = t("whyFor", { label: top[0][0] });
  $("why-1").textContent = top.length > 1 ? t("whatWould", { label: top[1][0] }) : "–";
  $("teach").hidden = !view.corrections || multi() || view.photo;
  $("teach-status").textContent = "";
}

function showBars(data) {
  // one digit: every class in order, the answer and the runner-up marked; a number: each digit's confidence
  const probs = data.probs || Object.fromEntries(data.digits.map((d, i) => [`#${i + 1}: ${d.label}`, d.prob]));
  const ranked = data.probs ? data.digits[0].top_k.map(([name]) => name) : [];
  const rows = [];
  for (const [name, p] of Object.entries(probs)) {
    const kind = ["top", "second"][ranked.indexOf(name)];
    const label = document.createElement("span"); label.textContent = name;
    if (kind) { const tag = document.createElement("em"); tag.textContent = ` ${t(kind === "top" ? "first" : "second")}`; label.appendChild(tag); }
    const cell = document.createElement("div"), bar = document.createElement("div");
    bar.className = kind ? `bar ${kind}` : "bar"; bar.style.width = `${100 * p}%`; cell.appendChild(bar);
    const value = document.createElement("span"); value.textContent = `${pct(p)}%`;
    rows.push(label, cell, value);
  }
  $("bars").replaceChildren(...rows);
}

// each digit's box over the drawing or the photo, with its reading and confidence (numbers, and photos)
function sourceSize() { return view.photo ? [$("photo").naturalWidth, $("photo").naturalHeight] : [pad.width, pad.height]; }
function place(el, [x0, y0, x1, y1]) {
  const [w, h] = sourceSize();
  Object.assign(el.style, { left: `${100 * x0 / w}%`, top: `${100 * y0 / h}%`, width: `${100 * (x1 - x0) / w}%`, height: `${100 * (y1 - y0) / h}%` });
}
function showBoxes(data) {
  const boxes = (multi() || view.photo) ? data.digits.filter((d) => d.box) : [];
  $("boxes").replaceChildren(...boxes.map((d) => {
    const div = document.createElement("div"); div.className = "box"; place(div, d.box);
    const tag = document.createElement("span"); tag.textContent = t("boxLabel", { label: d.label, p: pct(d.prob) }); div.appendChild(tag);
    return div;
  }));
}

// ---- why: occlusion saliency as a heat-map over the drawing ----
function whyStatus(text, error = false) { $("why-status").textContent = text; $("why-status").className = error ? "status error" : "status"; }
async function explain() {
  if (!$("why-on").checked || !view.blob || multi()) { $("heat").hidden = true; whyStatus(""); return; }
  const id = ++seq.why;
  whyStatus(t("whyBusy"));
  const res = await api(`/api/saliency?model=${model()}`, { method: "POST", headers: { "Content-Type": view.blob.type || "image/png" }, body: view.blob });
  if (id !== seq.why) return;
  if (!res.ok) { $("heat").hidden = true; whyStatus(res.error, true); return; }
  view.why = res.data;
  drawHeat();
}
function drawHeat() {
  const d = view.why, heat = $("heat");
  if (!d || !$("why-on").checked) { heat.hidden = true; return; }
  const pick = +document.querySelector("input[name=why-class]:checked").value;
  const m = d.maps[Math.min(pick, d.maps.length - 1)], h = m.map.length, w = m.map[0].length;
  heat.width = w; heat.height = h;
  const g = heat.getContext("2d"), img = g.createImageData(w, h), scale = m.scale || 1;  // each map on its own scale
  m.map.flat().forEach((v, i) => {
    const a = Math.min(1, Math.abs(v) / scale);
    img.data.set(v >= 0 ? [215, 38, 30, 200 * a] : [30, 90, 215, 200 * a], 4 * i);
  });
  g.putImageData(img, 0, 0);
  place(heat, d.frame || [0, 0, ...sourceSize()]);
  heat.setAttribute("aria-label", t("heatAlt", { label: m.class }));
  heat.hidden = false;
  whyStatus(t("whyShown", { label: m.class, method: d.method, ms: d.timing_ms.toFixed(0) }));
}
$("why-on").onchange = explain;
for (const radio of document.querySelectorAll("input[name=why-class]")) radio.onchange = drawHeat;

// ---- teach it: "wrong? the right digit is ..." (shown when the server keeps corrections) ----
function pixels28() {
  const small = document.createElement("canvas"); small.width = small.height = 28;
  const g = small.getContext("2d"); g.imageSmoothingEnabled = true; g.imageSmoothingQuality = "high";
  g.drawImage(pad, 0, 0, 28, 28);
  const rgba = g.getImageData(0, 0, 28, 28).data, rows = [];
  for (let y = 0; y < 28; y++) {
    const row = [];
    for (let x = 0; x < 28; x++) { const i = 4 * (28 * y + x); row.push(+(1 - (0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2]) / 255).toFixed(4)); }
    rows.push(row);
  }
  return rows;
}
async function correct(label) {
  const body = { label, pixels: pixels28(), png: pad.toDataURL("image/png").split(",")[1] };
  $("teach-status").className = "status"; $("teach-status").textContent = t("teachSending");
  const res = await api("/api/corrections", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  $("teach-status").className = res.ok ? "status" : "status error";
  $("teach-status").textContent = res.ok ? t("teachSaved", { saved: res.data.saved, count: res.data.count }) : res.error;
}
function teachButtons() {
  $("teach-digits").replaceChildren(...[...Array(10).keys()].map((d) => {
    const b = document.createElement("button"); b.type = "button"; b.textContent = d;
    b.setAttribute("aria-label", t("teachDigit", { d })); b.onclick = () => correct(d); return b;
  }));
}

// ---- photos: upload (keyboard: the file input is visually hidden, not removed) and drag-and-drop ----
function sendPhoto(file) {
  if (!file) return;
  const photo = $("photo");
  photo.onload = () => { if (view.last) { showBoxes(view.last); drawHeat(); } };
  photo.src = URL.createObjectURL(file); photo.alt = file.name;
  view.photo = true; pad.hidden = true; photo.hidden = false; $("boxes").replaceChildren(); $("heat").hidden = true;
  send(file);
}
$("file").onchange = (e) => sendPhoto(e.target.files[0]);
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); sendPhoto(e.dataTransfer.files[0]); });

// ---- language, models, start-up ----
$("lang").value = lang;
$("lang").onchange = () => setLanguage($("lang").value);
document.addEventListener("languagechange", () => {
  $("draw-title").textContent = t($("draw-title").dataset.i18n);
  teachButtons();
  if (view.last) { show(view.last); drawHeat(); } else status(t("start"));
});
applyLanguage(); teachButtons(); blank(); reset();
api("/api/healthz").then((res) => { view.corrections = res.ok && res.data.corrections === true; });
api("/api/models").then((res) => {
  if (!res.ok) { status(res.error, true); return; }
  for (const m of res.data) {
    const o = document.createElement("option"); o.value = m.name;
    o.textContent = `${m.name} (${m.model}, ${m.dataset}${m.accuracy ? `, ${(100 * m.accuracy).toFixed(2)}%` : ""})`;
    $("model").appendChild(o);
  }
  $("model").onchange = () => { if (view.photo && view.blob) send(view.blob); else schedule(0); };
});
