// digitlab's page: draw on a canvas, the model answers while you draw (debounced), look inside the CNN.
const $ = (id) => document.getElementById(id);
const pad = $("pad"), ctx = pad.getContext("2d");
const history = [];  // canvas snapshots, one per stroke, for undo
let drawing = false, last = null, timer = null, inflight = 0;

function blank() { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, pad.width, pad.height); }
blank();

function point(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}
pad.addEventListener("pointerdown", (e) => {
  pad.setPointerCapture(e.pointerId);
  history.push(ctx.getImageData(0, 0, pad.width, pad.height));
  drawing = true; last = point(e); stroke(last, last);
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const p = point(e); stroke(last, p); last = p; schedule(120);
});
for (const ev of ["pointerup", "pointercancel"]) pad.addEventListener(ev, () => { if (drawing) { drawing = false; schedule(0); } });

function stroke(a, b) {
  ctx.strokeStyle = "#000"; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.lineWidth = +$("brush").value;
  ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
}
$("clear").onclick = () => { history.push(ctx.getImageData(0, 0, pad.width, pad.height)); blank(); reset(); };
$("undo").onclick = () => { if (history.length) { ctx.putImageData(history.pop(), 0, 0); schedule(0); } };

function reset() { $("answer").textContent = "–"; $("bars").innerHTML = ""; $("seen").innerHTML = ""; status("Draw a digit: the model answers as you draw."); }
function status(text, error = false) { $("status").textContent = text; $("status").className = error ? "status error" : "status"; }
function schedule(ms) { clearTimeout(timer); timer = setTimeout(sendCanvas, ms); }
function model() { return encodeURIComponent($("model").value); }

function canvasBlob() { return new Promise((ok) => pad.toBlob(ok, "image/png")); }
async function sendCanvas() { send(await canvasBlob(), $("multi").checked); }

async function send(blob, multi) {
  const id = ++inflight;
  try {
    const r = await fetch(`/api/predict?model=${model()}&multi=${multi}`, { method: "POST", headers: { "Content-Type": blob.type || "image/png" }, body: blob });
    const data = await r.json();
    if (id !== inflight) return;  // a newer request is on its way
    if (!r.ok) { status(data.detail || `error ${r.status}`, true); $("answer").textContent = "?"; return; }
    show(data);
  } catch (err) { status(`cannot reach the server (${err})`, true); }
}

function show(data) {
  $("answer").textContent = data.label;
  const others = (data.alternatives || []).map((a) => a.label).join(", ");
  status(`${(100 * data.prob).toFixed(1)}% sure · ${data.timing_ms} ms on the server${others ? ` · or: ${others}` : ""}`);
  const bars = $("bars"); bars.innerHTML = "";
  const probs = data.probs || Object.fromEntries(data.digits.map((d, i) => [`#${i + 1}: ${d.label}`, d.prob]));
  const best = Math.max(...Object.values(probs));
  for (const [name, p] of Object.entries(probs)) {
    const bar = document.createElement("div"); bar.className = p === best ? "bar top" : "bar"; bar.style.width = `${100 * p}%`;
    const label = document.createElement("span"); label.textContent = name;
    const value = document.createElement("span"); value.textContent = `${(100 * p).toFixed(1)}%`;
    const cell = document.createElement("div"); cell.appendChild(bar);
    bars.append(label, cell, value);
  }
  $("seen").innerHTML = "";
  for (const d of data.digits) { const img = new Image(); img.src = `data:image/png;base64,${d.image}`; img.alt = `28x28 seen for ${d.label}`; $("seen").appendChild(img); }
}

// upload and drag-and-drop
$("file").onchange = (e) => { if (e.target.files[0]) send(e.target.files[0], $("multi").checked); };
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files[0]) send(e.dataTransfer.files[0], $("multi").checked); });

// look inside: the input, each conv layer's feature maps, the first layer's filters, the probabilities
$("inspect").onclick = async () => {
  const r = await fetch(`/api/inspect?model=${model()}`, { method: "POST", headers: { "Content-Type": "image/png" }, body: await canvasBlob() });
  const data = await r.json(), out = $("inside");
  out.innerHTML = "";
  if (!r.ok) { out.textContent = data.detail; return; }
  const section = (title, images, cls) => {
    const div = document.createElement("div"); div.className = "layer";
    const h = document.createElement("h3"); h.textContent = title; div.appendChild(h);
    const maps = document.createElement("div"); maps.className = `maps ${cls || ""}`;
    for (const b64 of images) { const img = new Image(); img.src = `data:image/png;base64,${b64}`; maps.appendChild(img); }
    div.appendChild(maps); out.appendChild(div);
  };
  section("input (28x28)", [data.input]);
  if (data.filters.length) section(`first-layer filters (${data.filters.length})`, data.filters, "filters");
  for (const layer of data.layers) section(`${layer.name}: ${layer.shape.join("×")} (showing ${layer.maps.length})`, layer.maps);
  const top = Object.entries(data.probs).sort((a, b) => b[1] - a[1]).slice(0, 3).map(([c, p]) => `${c} ${(100 * p).toFixed(1)}%`).join(", ");
  const h = document.createElement("h3"); h.textContent = `output: ${top}`; out.appendChild(h);
};

fetch("/api/models").then((r) => r.json()).then((models) => {
  for (const m of models) {
    const o = document.createElement("option"); o.value = m.name;
    o.textContent = `${m.name} (${m.model}, ${m.dataset}${m.accuracy ? `, ${(100 * m.accuracy).toFixed(2)}%` : ""})`;
    $("model").appendChild(o);
  }
  $("model").onchange = () => schedule(0);
});
