// Look inside, explorable: the network as a row of layers (input, every conv layer's feature maps, the dense
// layers' strongest units, the output); choose a map to enlarge it beside the kernels that made it; point at one
// of its pixels (or move over them with the arrow keys) to mark the input pixels it sees (its receptive field,
// computed on the server from kernels, strides and paddings). It follows the drawing while the panel is open.
const MAPS = 8;  // feature maps per layer in the row (and kernels listed for them)
const inside = { open: false, net: null, data: null, sel: null, unit: null, seq: 0 };

function el(tag, props = {}, ...children) {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}
function png(b64, alt) { return el("img", { src: `data:image/png;base64,${b64}`, alt }); }
function fmt(v) { return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3); }

async function network() {
  const name = $("model").value;
  if (!inside.net || inside.net.asked !== name) {
    const res = await api(`/api/network?model=${model()}&max_maps=${MAPS}`);
    inside.net = { asked: name, layers: res.ok ? res.data.layers : [], inputShape: res.ok ? res.data.input_shape : [1, 28, 28] };
  }
  return inside.net;
}

async function refreshInside() {
  const id = ++inside.seq;
  const blob = view.blob || await canvasBlob();
  const [, res] = await Promise.all([network(), api(`/api/inspect?model=${model()}&max_maps=${MAPS}`, { method: "POST", headers: { "Content-Type": blob.type || "image/png" }, body: blob })]);
  if (id !== inside.seq) return;
  if (!res.ok) { inside.data = null; $("inside").replaceChildren(el("p", { className: "status error", textContent: res.error })); $("detail").hidden = true; return; }
  inside.data = res.data;
  if (inside.sel && !res.data.layers[inside.sel.layer]) inside.sel = null;
  renderRow();
  renderDetail();
}

function column(title, sub, body, cls = "") {
  return el("div", { className: `layer ${cls}` }, el("h3", { textContent: title }), el("p", { className: "sub", textContent: sub }), body);
}

function convColumn(layer, li) {
  const maps = el("div", { className: "maps" });
  layer.maps.forEach((b64, i) => {
    const [lo, hi] = layer.ranges[i];
    const img = png(b64, t("mapAlt", { i: i + 1, layer: layer.name, lo: fmt(lo), hi: fmt(hi) }));
    const pressed = inside.sel && inside.sel.layer === li && inside.sel.i === i;
    const b = el("button", { type: "button", className: "map" }, img);
    b.setAttribute("aria-pressed", String(!!pressed));
    b.onclick = () => { inside.sel = { layer: li, i }; inside.unit = null; renderRow(); renderDetail(); $("zoom-map").focus(); };
    maps.appendChild(b);
  });
  const total = layer.shape[0];
  return column(layer.name, `${layer.shape.join("×")}${total > layer.maps.length ? ` · ${t("shown", { n: layer.maps.length, total })}` : ""}`, maps);
}

function denseColumn(d) {
  const most = Math.max(...d.top.map(([, v]) => Math.abs(v)), 1e-9);
  const list = el("ol", { className: "units" });
  list.setAttribute("aria-label", t("denseTop", { name: d.name }));
  for (const [unit, v] of d.top) {
    const bar = el("span", { className: v >= 0 ? "ubar" : "ubar neg" }); bar.style.width = `${100 * Math.abs(v) / most}%`;
    list.appendChild(el("li", {}, el("span", { className: "uname", textContent: d.output ? unit : t("unit", { u: unit }) }), bar, el("span", { textContent: fmt(v) })));
  }
  return column(d.output ? `${d.name} (${t("output")})` : d.name, `${d.size}`, list, "dense");
}

function renderRow() {
  const d = inside.data, row = [];
  row.push(column(t("input"), inside.net.inputShape.join("×"), el("div", { className: "maps" }, png(d.input, t("inputAlt"))), "input"));
  d.layers.forEach((layer, li) => row.push(convColumn(layer, li)));
  d.dense.forEach((dense) => row.push(denseColumn(dense)));
  $("inside").replaceChildren(...row);
}

function kernelCanvas(weights, most, channel) {
  const h = weights.length, w = weights[0].length, c = el("canvas", { width: w, height: h, className: "kernel" });
  const g = c.getContext("2d"), img = g.createImageData(w, h);
  weights.flat().forEach((v, i) => {
    const a = Math.min(1, Math.abs(v) / most);
    img.data.set(v >= 0 ? [255, 255 - 200 * a, 255 - 210 * a, 255] : [255 - 210 * a, 255 - 150 * a, 255, 255], 4 * i);
  });
  g.putImageData(img, 0, 0);
  const flat = weights.flat();
  c.setAttribute("role", "img");
  c.setAttribute("aria-label", t("kernelAlt", { c: channel, lo: fmt(Math.min(...flat)), hi: fmt(Math.max(...flat)) }));
  return el("figure", {}, c, el("figcaption", { textContent: t("fromChannel", { c: channel }) }));
}

function kernelsFigure(netLayer, i) {
  const kernels = netLayer && netLayer.kernels[i];
  if (!kernels) return el("figure", {}, el("p", { textContent: t("noKernels", { n: MAPS }) }));
  const most = Math.max(...kernels.flatMap((k) => k.weights.flat().map(Math.abs)), 1e-9);
  return el("figure", {}, el("div", { className: "kernels" }, ...kernels.map((k) => kernelCanvas(k.weights, most, k.input))),
    el("figcaption", { textContent: `${t("kernels")} (${netLayer.kernel.join("×")}, stride ${netLayer.stride[0]})` }));
}

function renderDetail() {
  const box = $("detail");
  if (!inside.sel || !inside.data) { box.hidden = true; return; }
  const { layer: li, i } = inside.sel, layer = inside.data.layers[li], [lo, hi] = layer.ranges[i];
  const netLayer = (inside.net.layers || []).find((n) => n.name === layer.name);
  const zoom = el("div", { className: "zoom map", id: "zoom-map", tabIndex: 0 }, png(layer.maps[i], t("bigAlt", { i: i + 1, layer: layer.name })), el("div", { className: "cell", hidden: true }));
  zoom.setAttribute("role", "img"); zoom.setAttribute("aria-label", t("bigAlt", { i: i + 1, layer: layer.name }));
  const input = el("div", { className: "zoom input" }, png(inside.data.input, t("fieldAlt")), el("div", { className: "rf", hidden: true }));
  box.replaceChildren(
    el("h3", { textContent: t("detailTitle", { layer: layer.name, i: i + 1 }) }),
    el("div", { className: "detail-row" },
      el("figure", {}, zoom, el("figcaption", { textContent: `${layer.shape.slice(1).join("×")} · ${t("range", { lo: fmt(lo), hi: fmt(hi) })}` })),
      kernelsFigure(netLayer, i),
      el("figure", {}, input, el("figcaption", { textContent: t("field") }))),
    el("p", { id: "field-text", className: "status" }));
  $("field-text").setAttribute("aria-live", "polite");
  box.hidden = false;
  const [, h, w] = layer.shape;
  zoom.onmousemove = (e) => { const r = zoom.getBoundingClientRect(); showField(netLayer, w, h, Math.floor((e.clientX - r.left) / r.width * w), Math.floor((e.clientY - r.top) / r.height * h)); };
  zoom.onkeydown = (e) => {
    const step = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0] }[e.key];
    if (!step) return;
    e.preventDefault();
    const [x, y] = inside.unit || [Math.floor(w / 2), Math.floor(h / 2)];
    showField(netLayer, w, h, x + step[0], y + step[1]);
  };
  if (inside.unit) showField(netLayer, w, h, ...inside.unit);
}

// unit (x, y) of a map is centred on input pixel start + x * jump and sees size x size pixels, clipped to the image
function showField(netLayer, w, h, x, y) {
  x = Math.max(0, Math.min(w - 1, x)); y = Math.max(0, Math.min(h - 1, y));
  inside.unit = [x, y];
  const cell = document.querySelector("#detail .cell");
  Object.assign(cell.style, { left: `${100 * x / w}%`, top: `${100 * y / h}%`, width: `${100 / w}%`, height: `${100 / h}%` });
  cell.hidden = false;
  const f = netLayer && netLayer.field, rf = document.querySelector("#detail .rf");
  if (!f) { rf.hidden = true; $("field-text").textContent = t("fieldUnknown"); return; }
  const [, ih, iw] = inside.net.inputShape;
  const span = (c, n) => [Math.max(0, Math.ceil(c - (f.size - 1) / 2)), Math.min(n - 1, Math.floor(c + (f.size - 1) / 2))];
  const [x0, x1] = span(f.start + x * f.jump, iw), [y0, y1] = span(f.start + y * f.jump, ih);
  Object.assign(rf.style, { left: `${100 * x0 / iw}%`, top: `${100 * y0 / ih}%`, width: `${100 * (x1 - x0 + 1) / iw}%`, height: `${100 * (y1 - y0 + 1) / ih}%` });
  rf.hidden = false;
  $("field-text").textContent = t("fieldAt", { x, y, x0, x1, y0, y1, size: f.size });
}

$("inspect").onclick = () => {
  inside.open = !inside.open;
  $("inspect").setAttribute("aria-expanded", String(inside.open));
  $("inspect").dataset.i18n = inside.open ? "hide" : "show"; $("inspect").textContent = t($("inspect").dataset.i18n);
  $("inside-panel").hidden = !inside.open;
  if (inside.open) refreshInside();
};
document.addEventListener("predicted", () => { if (inside.open && $("live").checked) refreshInside(); });
document.addEventListener("languagechange", () => { if (inside.open && inside.data) { renderRow(); renderDetail(); } });
$("model").addEventListener("change", () => { inside.sel = null; inside.unit = null; });
