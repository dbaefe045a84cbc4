// difflab studio: one panel per task. Each panel builds a form, posts it to /api/runs, follows the run by long
// polling (progress bar, x0_hat preview, cancel) and shows the run's files. The server checks every value with
// sample.py's own code; its messages are shown in the panel.
"use strict";

const TABS = {
  generate: { title: "generate", fields: ["cond", "n"], n: 8 },
  sdedit: { title: "SDEdit", fields: ["cond", "strength", "n"], editor: "paint", n: 4,
            hint: "Paint strokes on a blank or uploaded canvas; SDEdit turns them into an image." },
  inpaint: { title: "inpaint", fields: ["cond", "method", "n"], editor: "mask", n: 4,
             hint: "Paint the region to fill (red)." },
  outpaint: { title: "outpaint", fields: ["cond", "pad", "method", "n"], editor: "image", n: 4,
              hint: "The image is shrunk by the padding and the border is painted in." },
  diffedit: { title: "DiffEdit", fields: ["diffcond", "encode_ratio", "mask_threshold"], editor: "mask",
              hint: "Compute the mask from the two conditions, correct it with the brush, then run the edit." },
  zoom: { title: "zoom", fields: ["cond", "frames", "direction", "scale", "method", "use_image"], editor: "image",
          hint: "Frames of an infinite zoom, from the image (or a generated first frame)." },
  anagram: { title: "anagram", fields: ["views", "conds", "n"], n: 2, sampler: "ddpm", steps: 100 },
  hybrid: { title: "hybrid", fields: ["kind", "sigma", "conds", "n"], n: 2, sampler: "ddpm", steps: 100 },
};
let INFO = null;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function field(label, input) { return el("label", {}, label, input); }
function num(name, value, step = "1", min = null, max = null) {
  const a = { type: "number", name, value, step };
  if (min !== null) a.min = min;
  if (max !== null) a.max = max;
  return el("input", a);
}
function text(name, value = "", placeholder = "") { return el("input", { type: "text", name, value, placeholder }); }
function select(name, options, value) {
  const s = el("select", { name });
  for (const o of options) s.append(el("option", { value: o }, o));
  s.value = value;
  return s;
}

// ---- the canvas editor: an image (paintable in "paint" mode) and a mask drawn over it ("mask" mode) ----------

class Editor {
  constructor(mode, size) {
    this.mode = mode;
    this.size = size;
    this.image = el("canvas", { class: "image", width: size, height: size });
    this.mask = el("canvas", { class: "mask", width: size, height: size });
    this.strokes = el("canvas", { width: size, height: size });  // where paint went (SDEdit's "only there")
    this.brush = num("brush", Math.max(1, Math.round(size / 10)), "1", 1, 64);
    this.colour = el("input", { type: "color", name: "colour", value: "#e53935" });
    this.erase = el("input", { type: "checkbox", name: "erase" });
    this.sampleIndex = num("sample", 0, "1", 0, INFO.samples - 1);
    const file = el("input", { type: "file", accept: "image/*", name: "upload" });
    file.addEventListener("change", () => file.files[0] && this.upload(file.files[0]));
    const stage = el("div", { class: "stage" }, this.image);
    const tools = el("div", { class: "tools" },
      field("brush", this.brush),
      el("button", { type: "button", onclick: () => this.loadSample() }, "sample"), this.sampleIndex, file);
    if (mode === "paint") {
      this.image.classList.add("paintable");
      tools.append(field("colour", this.colour),
        el("button", { type: "button", onclick: () => this.blank("#ffffff") }, "blank"));
      this.attach(this.image);
    } else if (mode === "mask") {
      stage.append(this.mask);
      tools.append(field("erase", this.erase),
        el("button", { type: "button", onclick: () => this.clearMask() }, "clear mask"));
      this.attach(this.mask);
    }
    this.root = el("div", { class: "editor" }, stage, tools);
    if (mode === "paint") this.blank("#ffffff"); else this.loadSample();
  }

  attach(canvas) {
    let last = null;
    const at = (e) => {
      const r = canvas.getBoundingClientRect();
      return [(e.clientX - r.left) * this.size / r.width, (e.clientY - r.top) * this.size / r.height];
    };
    const draw = (p, q) => {
      const targets = this.mode === "paint" ? [[this.image, this.colour.value], [this.strokes, "#ffffff"]]
        : [[this.mask, "#ff0000"]];
      for (const [c, colour] of targets) {
        const g = c.getContext("2d");
        g.globalCompositeOperation = this.mode === "mask" && this.erase.checked ? "destination-out" : "source-over";
        g.strokeStyle = colour;
        g.fillStyle = colour;
        g.lineWidth = Number(this.brush.value);
        g.lineCap = "round";
        g.beginPath();
        g.moveTo(p[0], p[1]);
        g.lineTo(q[0], q[1]);
        g.stroke();
      }
    };
    canvas.addEventListener("pointerdown", (e) => { last = at(e); draw(last, last); canvas.setPointerCapture(e.pointerId); });
    canvas.addEventListener("pointermove", (e) => { if (last) { const p = at(e); draw(last, p); last = p; } });
    const stop = () => { last = null; };
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
  }

  blank(colour) {
    const g = this.image.getContext("2d");
    g.fillStyle = colour;
    g.fillRect(0, 0, this.size, this.size);
    this.strokes.getContext("2d").clearRect(0, 0, this.size, this.size);
    this.source = null;
  }
  clearMask() { this.mask.getContext("2d").clearRect(0, 0, this.size, this.size); }

  draw(img) {  // shorter side to the canvas, centre-cropped (as sample.py reads an image file)
    const s = Math.min(img.width, img.height);
    const g = this.image.getContext("2d");
    g.drawImage(img, (img.width - s) / 2, (img.height - s) / 2, s, s, 0, 0, this.size, this.size);
    this.strokes.getContext("2d").clearRect(0, 0, this.size, this.size);
  }
  loadSample() {
    const img = new Image();
    img.onload = () => { this.draw(img); this.clearMask(); };
    img.src = `/api/sample/${Number(this.sampleIndex.value) || 0}.png`;
  }
  upload(file) {
    const img = new Image();
    img.onload = () => { this.draw(img); this.clearMask(); URL.revokeObjectURL(img.src); };
    img.src = URL.createObjectURL(file);
  }
  setMask(url) {  // a mask PNG (white = edit) into the red overlay
    const img = new Image();
    img.onload = () => {
      const tmp = el("canvas", { width: this.size, height: this.size });
      const t = tmp.getContext("2d");
      t.drawImage(img, 0, 0, this.size, this.size);
      const d = t.getImageData(0, 0, this.size, this.size);
      for (let i = 0; i < d.data.length; i += 4) {
        const on = d.data[i] > 127;
        d.data[i] = 255; d.data[i + 1] = 0; d.data[i + 2] = 0; d.data[i + 3] = on ? 255 : 0;
      }
      this.clearMask();
      this.mask.getContext("2d").putImageData(d, 0, 0);
    };
    img.src = url;
  }
  imageURL() { return this.image.toDataURL("image/png"); }
  maskFrom(canvas) {  // white where painted (alpha > half), black elsewhere
    const d = canvas.getContext("2d").getImageData(0, 0, this.size, this.size);
    const out = el("canvas", { width: this.size, height: this.size });
    const o = out.getContext("2d");
    const m = o.createImageData(this.size, this.size);
    for (let i = 0; i < d.data.length; i += 4) {
      const v = d.data[i + 3] > 127 ? 255 : 0;
      m.data[i] = m.data[i + 1] = m.data[i + 2] = v;
      m.data[i + 3] = 255;
    }
    o.putImageData(m, 0, 0);
    return out.toDataURL("image/png");
  }
  maskURL() { return this.maskFrom(this.mask); }
  strokeMaskURL() { return this.maskFrom(this.strokes); }
}

// ---- a panel: the inputs of one task, its run button and its results -----------------------------------------

class Panel {
  constructor(tab, spec) {
    this.tab = tab;
    this.spec = spec;
    this.form = el("div", { class: "form" });
    this.inputs = {};
    this.editor = spec.editor ? new Editor(spec.editor, INFO.size) : null;
    const left = el("div", { class: "inputs" });
    if (spec.hint) left.append(el("p", { class: "hint" }, spec.hint));
    if (this.editor) left.append(this.editor.root);
    left.append(this.buildFields(), this.buildSettings());
    this.runButton = el("button", { class: "run", type: "button", onclick: () => this.start() },
      tab === "diffedit" ? "run the edit" : "run");
    this.cancelButton = el("button", { class: "cancel", type: "button", disabled: "", onclick: () => this.cancel() },
      "cancel");
    const buttons = el("div", { class: "buttons" });
    if (tab === "diffedit") {
      this.maskButton = el("button", { class: "go compute-mask", type: "button",
        onclick: () => this.start("diffedit_mask") }, "compute the mask");
      buttons.append(this.maskButton);
    }
    buttons.append(this.runButton, this.cancelButton);
    left.append(buttons);
    this.bar = el("progress", { max: 1, value: 0 });
    this.statusLine = el("div", { class: "status" });
    this.errorBox = el("div", { class: "error", role: "alert" });
    this.previewBox = el("div", { class: "preview" });
    this.resultBox = el("div", { class: "result" });
    const right = el("div", { class: "outputs" }, this.bar, this.statusLine, this.errorBox, this.previewBox,
      this.resultBox);
    this.root = el("section", { class: "panel", id: `panel-${tab}` }, left, right);
  }

  add(name, label, input) { this.inputs[name] = input; return field(label, input); }

  buildFields() {
    const box = el("fieldset", {}, el("legend", {}, "task"));
    const cond = INFO.cond;
    const label0 = (i) => String(i % Math.max(1, INFO.num_classes || 1));
    for (const f of this.spec.fields) {
      if (f === "cond") {
        if (cond === "text") box.append(this.add("prompt", "prompt", text("prompt", "", "a red circle")));
        if (cond === "label") box.append(this.add("label", "label", num("label", 0, "1", 0, INFO.num_classes - 1)));
      } else if (f === "conds") {
        for (const i of [0, 1]) {
          if (cond === "text") box.append(this.add(`prompt${i}`, `prompt ${i + 1}`, text(`prompt${i}`)));
          else box.append(this.add(`label${i}`, `label ${i + 1}`, num(`label${i}`, label0(i + 1), "1", 0)));
        }
      } else if (f === "diffcond") {
        if (cond === "text") {
          box.append(this.add("query", "query (the edit)", text("query", "", "a blue square")));
          box.append(this.add("reference", "reference (the image)", text("reference", "", "a red circle")));
        } else {
          box.append(this.add("source", "source label", num("source", 0, "1", 0)));
          box.append(this.add("target", "target label", num("target", 1, "1", 0)));
        }
      } else if (f === "n") box.append(this.add("n", "images", num("n", this.spec.n || 4, "1", 1, 64)));
      else if (f === "strength") box.append(this.add("strength", "strength", num("strength", 0.6, "0.05", 0, 1)));
      else if (f === "method") box.append(this.add("method", "method", select("method", ["replacement", "repaint"], "replacement")));
      else if (f === "pad") box.append(this.add("pad", "pad (left top right bottom)", text("pad", `${INFO.size / 4} 0 ${INFO.size / 4} 0`)));
      else if (f === "encode_ratio") box.append(this.add("encode_ratio", "encode ratio", num("encode_ratio", 0.5, "0.05", 0, 1)));
      else if (f === "mask_threshold") box.append(this.add("mask_threshold", "mask threshold", num("mask_threshold", 0.5, "0.05", 0, 1)));
      else if (f === "frames") box.append(this.add("frames", "frames", num("frames", 4, "1", 2, 64)));
      else if (f === "direction") box.append(this.add("direction", "direction", select("direction", ["out", "in"], "out")));
      else if (f === "scale") box.append(this.add("scale", "scale", num("scale", 0.75, "0.05", 0.1, 0.95)));
      else if (f === "use_image") box.append(this.add("use_image", "start from the image", el("input", { type: "checkbox", name: "use_image", checked: "" })));
      else if (f === "views") {
        box.append(this.add("view0", "view 1", select("view0", INFO.views, "identity")));
        box.append(this.add("view1", "view 2", select("view1", INFO.views, "rot180")));
      } else if (f === "kind") box.append(this.add("kind", "components", select("kind", ["low_high", "grey_colour"], "low_high")));
      else if (f === "sigma") box.append(this.add("sigma", "low-pass sigma", num("sigma", 2, "0.5", 0.5, 8)));
    }
    if (this.tab === "sdedit") box.append(this.add("only_strokes", "change only where painted", el("input", { type: "checkbox", name: "only_strokes" })));
    return box;
  }

  buildSettings() {
    const box = el("fieldset", {}, el("legend", {}, "sampler"));
    box.append(this.add("sampler", "sampler", select("sampler", INFO.samplers, this.spec.sampler || INFO.default_sampler)));
    box.append(this.add("steps", "steps", num("steps", this.spec.steps || 50, "1", 1, INFO.steps)));
    box.append(this.add("guidance", "guidance", num("guidance", INFO.cond ? 3 : 1, "0.5", 0, 50)));
    box.append(this.add("seed", "seed", num("seed", 0, "1", 0)));
    if (INFO.cond === "text") box.append(this.add("negative_prompt", "negative prompt", text("negative_prompt")));
    return box;
  }

  value(name) {
    const input = this.inputs[name];
    if (!input) return undefined;
    if (input.type === "checkbox") return input.checked;
    return input.value;
  }

  collect(tab) {  // the form the server checks; empty fields are left to sample.py's defaults
    const f = { tab };
    const put = (k, v) => { if (v !== undefined && v !== "") f[k] = v; };
    for (const k of ["sampler", "steps", "guidance", "seed", "negative_prompt", "n", "strength", "encode_ratio",
      "mask_threshold", "frames", "direction", "scale", "kind", "sigma", "label", "prompt", "query", "reference",
      "source", "target"]) put(k, this.value(k));
    if (tab === "diffedit_mask") {  // only what the mask needs
      for (const k of ["sampler", "steps", "n", "encode_ratio"]) delete f[k];
    }
    const method = this.value("method");
    if (method !== undefined) {
      f.method = method;
      if (method === "repaint") delete f.sampler;  // RePaint runs ancestral DDPM steps
    }
    if (this.inputs.pad) f.pad = this.value("pad").trim().split(/[\s,]+/).map(Number);
    if (this.inputs.view0) f.views = [this.value("view0"), this.value("view1")];
    if (this.inputs.prompt0) f.prompts = [this.value("prompt0"), this.value("prompt1")];
    if (this.inputs.label0) f.labels = [this.value("label0"), this.value("label1")];
    if (this.editor && (this.tab !== "zoom" || this.value("use_image"))) f.image = this.editor.imageURL();
    if (this.editor && this.editor.mode === "mask" && tab !== "diffedit_mask") f.mask = this.editor.maskURL();
    if (this.tab === "sdedit" && this.value("only_strokes")) f.mask = this.editor.strokeMaskURL();
    return f;
  }

  async start(tab = this.tab) {
    this.t0 = performance.now();  // the page's own clock: click -> result shown (data-seconds)
    delete this.root.dataset.seconds;
    this.errorBox.textContent = "";
    this.resultBox.replaceChildren();
    this.previewBox.replaceChildren();
    this.bar.value = 0;
    let form;
    try { form = this.collect(tab); } catch (e) { this.errorBox.textContent = String(e); return; }
    this.busy(true);
    this.statusLine.textContent = "submitting…";
    let reply;
    try {
      const r = await fetch("/api/runs", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(form) });
      reply = await r.json();
      if (!r.ok) throw new Error(reply.error || `HTTP ${r.status}`);
    } catch (e) {
      this.fail(e.message);
      return;
    }
    this.run = reply.id;
    this.follow(reply);
  }

  async follow(status) {
    let previewAt = -1e9;
    while (true) {
      this.show(status);
      // x0_hat at most once a second: every new picture costs the browser a repaint, and on a 2-core machine that
      // time comes out of the run (scripts/benchmark_studio.py)
      if (status.preview && status.state === "running" && performance.now() - previewAt >= 1000) {
        previewAt = performance.now();
        const img = this.previewBox.querySelector("img") || this.previewBox.appendChild(el("img", { alt: "x0_hat" }));
        img.src = `/api/runs/${status.id}/preview.png?v=${status.version}`;
      }
      if (["done", "error", "cancelled"].includes(status.state)) break;
      try {
        const r = await fetch(`/api/runs/${status.id}?wait=10&after=${status.version}`);
        status = await r.json();
        if (!r.ok) throw new Error(status.error || `HTTP ${r.status}`);
      } catch (e) {
        this.fail(`lost the run: ${e.message}`);
        return;
      }
    }
    this.finish(status);
  }

  show(s) {
    this.bar.value = s.progress;
    const where = s.passes > 1 ? `pass ${s.pass}/${s.passes}, ` : "";
    this.statusLine.textContent = s.state === "running" ? `running: ${where}step ${s.step}/${s.steps}`
      : s.state === "queued" ? "queued: waiting for the run before it (one runs at a time)" : s.state;
  }

  finish(s) {
    this.busy(false);
    if (s.state === "error") { this.fail(s.message); return; }
    if (s.state === "cancelled") { this.statusLine.textContent = "cancelled"; return; }
    this.bar.value = 1;
    this.statusLine.textContent = `done in ${s.seconds.toFixed(2)} s`;
    this.previewBox.replaceChildren();
    const url = (name, download = false) => `/api/runs/${s.id}/files/${name}${download ? "?download=1" : ""}`;
    const loaded = [];
    for (const name of s.shown) {  // small images at 4x, pixelated, so that a 16x16 or 32x32 result can be seen
      const img = el("img", { src: url(name), alt: name, "data-name": name });
      loaded.push(new Promise((resolve) => {
        img.onload = () => {
          const k = Math.max(1, Math.min(4, Math.floor(400 / img.naturalWidth)));
          img.style.width = `${img.naturalWidth * k}px`;
          resolve();
        };
        img.onerror = resolve;
      }));
      this.resultBox.append(img);
    }
    Promise.all(loaded).then(() => {
      const seconds = (performance.now() - this.t0) / 1000;
      this.root.dataset.seconds = seconds.toFixed(4);
      this.statusLine.textContent = `done: ${s.seconds.toFixed(2)} s in the server, ${seconds.toFixed(2)} s in the page`;
    });
    if (s.tab === "diffedit_mask" && this.editor) this.editor.setMask(url("mask.png"));
    const links = el("div", { class: "downloads" });
    for (const name of s.files) links.append(el("a", { href: url(name, true), download: name, "data-name": name }, name));
    links.append(el("a", { href: `/api/runs/${s.id}/bundle.zip`, download: `${s.id}.zip` }, "everything (.zip)"));
    this.resultBox.append(links);
    const notes = [...s.notes, `reproduce: ${s.command} out=rerun`];
    this.resultBox.append(el("div", { class: "notes" }, notes.join("\n")));
  }

  fail(message) {
    this.busy(false);
    this.statusLine.textContent = "";
    this.errorBox.textContent = message;
  }

  busy(on) {
    this.runButton.disabled = on;
    if (this.maskButton) this.maskButton.disabled = on;
    this.cancelButton.disabled = !on;
  }

  async cancel() {
    if (this.run) await fetch(`/api/runs/${this.run}/cancel`, { method: "POST" });
  }
}

async function boot() {
  INFO = await (await fetch("/api/info")).json();
  const cond = INFO.cond === "text" ? "text prompts" : INFO.cond === "label" ? `labels 0..${INFO.num_classes - 1}` : "unconditional";
  document.getElementById("model-info").textContent =
    `${INFO.ckpt} · ${INFO.size}×${INFO.size}×${INFO.channels} · ${cond} · ${INFO.device}`;
  const nav = document.getElementById("tabs");
  const panels = document.getElementById("panels");
  const buttons = {};
  const choose = (tab) => {
    for (const [t, b] of Object.entries(buttons)) {
      b.classList.toggle("active", t === tab);
      document.getElementById(`panel-${t}`).classList.toggle("active", t === tab);
    }
  };
  for (const tab of INFO.tabs) {
    if (!TABS[tab]) continue;
    const panel = new Panel(tab, TABS[tab]);
    panels.append(panel.root);
    buttons[tab] = el("button", { id: `tab-${tab}`, type: "button", onclick: () => choose(tab) }, TABS[tab].title);
    nav.append(buttons[tab]);
  }
  choose(location.hash.slice(1) in buttons ? location.hash.slice(1) : "generate");
  document.body.dataset.ready = "1";
}

boot();
