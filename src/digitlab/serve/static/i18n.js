// The page's words in English and Simplified Chinese. Static text carries data-i18n (text), data-i18n-label
// (aria-label) or data-i18n-title; the scripts ask t(key, {name: value}) for the rest. Messages from the server
// (its {"detail": ...}) stay as the API wrote them.
const I18N = {
  en: {
    title: "digitlab: draw a digit", skip: "Skip to the drawing", model: "Model", language: "Language", api: "API docs",
    draw: "Draw a digit", drawNumber: "Write a number", pad: "Drawing area: draw a digit with a mouse, pen or finger, or upload a photo below",
    brush: "Brush", undo: "Undo", clear: "Clear", drop: "Drop a photo here or", choose: "choose a photo", multi: "a whole number",
    prediction: "Prediction", start: "Draw a digit: the model answers as you draw.",
    sure: "{answer}: {p}% sure", runnerUp: "runner-up {label} ({p}%)", server: "{ms} ms on the server", roundTrip: "{ms} ms round trip",
    orMaybe: "or: {others}", first: "answer", second: "runner-up",
    cannotReach: "Cannot reach the server ({err}).", httpError: "The server answered {status} {text}.",
    seen: "What the model received", seenAlt: "the 28×28 image the model received for {label}",
    why: "Why this digit?", showWhy: "Show a heat-map over the drawing", whyFor: "why {label}", whatWould: "what would make it a {label}",
    whyLegend: "Red: hiding this part makes the class less likely (it speaks for it). Blue: hiding it makes the class more likely (it speaks against it).",
    whyShown: "Heat-map for {label}: {method}, {ms} ms.", whyBusy: "Working out why…",
    heatAlt: "heat-map of the evidence for {label} over the drawing",
    boxLabel: "{label} ({p}%)",
    teachQ: "Wrong? The right digit is:", teachDigit: "The right digit is {d}", teachSaved: "Thank you: saved as {saved} ({count} corrections so far).",
    teachSending: "Sending the correction…",
    inside: "Look inside", show: "Show", hide: "Hide", live: "update while drawing",
    insideHelp: "Each column is a layer with its output shape. Choose a feature map to enlarge it beside the kernels that made it; point at (or move with the arrow keys over) its pixels to see which input pixels they look at.",
    input: "input", inputAlt: "the model's 28×28 input", output: "output", shown: "{n} of {total} shown",
    mapAlt: "feature map {i} of layer {layer}, values {lo} to {hi}", layerShape: "{name}: {shape}",
    unit: "unit {u}", denseTop: "strongest outputs of {name}",
    detailTitle: "{layer}, map {i}", range: "values from {lo} to {hi}", kernels: "kernels that made it",
    kernelAlt: "kernel from input channel {c}, weights from {lo} to {hi}", fromChannel: "from channel {c}",
    noKernels: "(kernels are listed for the first {n} maps)", field: "receptive field on the input",
    fieldAt: "Pixel ({x}, {y}) of this map sees input pixels x {x0}–{x1}, y {y0}–{y1} ({size}×{size}).",
    fieldUnknown: "The receptive field of this layer is not known.", bigAlt: "feature map {i} of {layer}, enlarged",
    fieldAlt: "the model's input with the receptive field marked",
  },
  "zh-CN": {
    title: "digitlab：手写一个数字", skip: "跳到画板", model: "模型", language: "语言", api: "API 文档",
    draw: "写一个数字", drawNumber: "写一个多位数", pad: "画板：用鼠标、手写笔或手指写一个数字，或在下方上传照片",
    brush: "笔刷", undo: "撤销", clear: "清除", drop: "把照片拖到这里，或", choose: "选择照片", multi: "多位数",
    prediction: "识别结果", start: "写一个数字：边写边识别。",
    sure: "{answer}：把握 {p}%", runnerUp: "其次是 {label}（{p}%）", server: "服务器用时 {ms} 毫秒", roundTrip: "往返 {ms} 毫秒",
    orMaybe: "也可能是：{others}", first: "答案", second: "其次",
    cannotReach: "无法连接服务器（{err}）。", httpError: "服务器返回 {status} {text}。",
    seen: "模型看到的图像", seenAlt: "模型为 {label} 收到的 28×28 图像",
    why: "为什么是这个数字？", showWhy: "在画板上显示热力图", whyFor: "为什么是 {label}", whatWould: "怎样会变成 {label}",
    whyLegend: "红色：遮住这部分，该类别的概率下降（支持它）。蓝色：遮住这部分，该类别的概率上升（反对它）。",
    whyShown: "{label} 的热力图：{method}，{ms} 毫秒。", whyBusy: "正在计算原因…",
    heatAlt: "画板上支持 {label} 的证据热力图",
    boxLabel: "{label}（{p}%）",
    teachQ: "识别错了？正确的数字是：", teachDigit: "正确的数字是 {d}", teachSaved: "谢谢：已保存为 {saved}（目前共 {count} 条更正）。",
    teachSending: "正在发送更正…",
    inside: "看看网络内部", show: "显示", hide: "隐藏", live: "边写边更新",
    insideHelp: "每一列是一层及其输出形状。选择一张特征图即可放大，并在旁边显示生成它的卷积核；把指针移到（或用方向键移动到）它的像素上，可以看到这些像素对应输入的哪一块区域。",
    input: "输入", inputAlt: "模型的 28×28 输入", output: "输出", shown: "显示 {n} / {total}",
    mapAlt: "{layer} 层的第 {i} 张特征图，取值 {lo} 到 {hi}", layerShape: "{name}：{shape}",
    unit: "单元 {u}", denseTop: "{name} 最强的输出",
    detailTitle: "{layer}，第 {i} 张特征图", range: "取值从 {lo} 到 {hi}", kernels: "生成它的卷积核",
    kernelAlt: "来自输入通道 {c} 的卷积核，权重从 {lo} 到 {hi}", fromChannel: "来自通道 {c}",
    noKernels: "（只列出前 {n} 张特征图的卷积核）", field: "在输入上的感受野",
    fieldAt: "这张特征图的像素 ({x}, {y}) 看的是输入的 x {x0}–{x1}、y {y0}–{y1}（{size}×{size}）。",
    fieldUnknown: "这一层的感受野未知。", bigAlt: "{layer} 的第 {i} 张特征图（放大）",
    fieldAlt: "标出感受野的模型输入",
  },
};
const LANGS = Object.keys(I18N);
const LANG_KEY = "digitlab.lang";

function pickLanguage() {
  const saved = localStorage.getItem(LANG_KEY);
  if (LANGS.includes(saved)) return saved;
  for (const l of navigator.languages || [navigator.language || "en"]) {
    if (l.toLowerCase().startsWith("zh")) return "zh-CN";
    if (l.toLowerCase().startsWith("en")) return "en";
  }
  return "en";
}

let lang = pickLanguage();

function t(key, params = {}) {
  const text = I18N[lang][key] ?? I18N.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => (k in params ? params[k] : `{${k}}`));
}

function applyLanguage(root = document) {
  document.documentElement.lang = lang;
  document.title = t("title");
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
}

function setLanguage(next) {
  lang = LANGS.includes(next) ? next : "en";
  localStorage.setItem(LANG_KEY, lang);
  applyLanguage();
  document.dispatchEvent(new CustomEvent("languagechange"));
}
