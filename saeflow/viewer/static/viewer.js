// saeflow feature viewer: plain JavaScript over the JSON API, no build step.
// Every page of data comes from the server; the browser never holds a whole table.
"use strict";

const $ = (sel) => document.querySelector(sel);
const PAGE = { headlines: 25, features: 50 };
const state = {
  meta: null,
  hl: { layer: null, only: "all", q: "", offset: 0, total: 0 },
  ft: { model: "finetuned", layer: null, metric: "specialization", order: "desc", offset: 0, total: 0, selected: null },
};

// Build DOM nodes; text always goes through textContent (never innerHTML).
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

const fmt = (v, d = 3) => (v == null ? "—" : Number(v).toFixed(d));
const pct = (v) => (v == null ? "—" : (100 * v).toFixed(1) + " %");

async function api(path, params) {
  const url = path + "?" + new URLSearchParams(params).toString();
  const resp = await fetch(url);
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

function showError(err) {
  const box = $("#error");
  box.textContent = err ? String(err.message || err) : "";
  box.hidden = !err;
}

function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, label]) => el("option", { value: v, text: label })));
  select.value = String(value);
}

// ---- tabs and routing (#headlines, #feature/<model>/<layer>/<id>) ----------
function showTab(name) {
  for (const t of ["headlines", "features"]) {
    $("#" + t).hidden = t !== name;
    $("#tab-" + t).classList.toggle("active", t === name);
  }
}

function route() {
  const parts = location.hash.slice(1).split("/");
  if (parts[0] === "feature" && parts.length === 4) {
    openFeature(parts[1], Number(parts[2]), parts[3], false);
  } else if (parts[0] === "features") {
    showTab("features");
  } else {
    showTab("headlines");
  }
}

// ---- headlines tab ---------------------------------------------------------
// An unlabelled feature's chip names the token it peaks on in this headline.
function chip(layer, f) {
  const what = f.label || (f.token ? `fires on “${f.token}”` : "unlabelled");
  const name = `Feature ${f.id}: ${what}`;
  return el("button", {
    class: "chip", title: `activation ${fmt(f.act, 2)}`, text: name,
    onclick: () => openFeature("finetuned", layer, f.id, true),
  });
}

function headlineItem(layer, h) {
  const verdict = h.correct == null ? "unknown" : h.correct ? "right" : "wrong";
  const predText = h.prediction == null ? "no prediction" : `predicted ${h.prediction}` +
    (h.confidence == null ? "" : ` (${(100 * h.confidence).toFixed(0)} %)`);
  const chips = el("div", { class: "chips" });
  const shown = 3;
  h.features.forEach((f, i) => {
    const c = chip(layer, f);
    if (i >= shown) c.hidden = true;
    chips.append(c);
  });
  if (h.features.length > shown) {
    const more = el("button", { class: "linkish", text: `show all ${h.features.length}` });
    more.addEventListener("click", () => {
      const hidden = [...chips.querySelectorAll(".chip")].slice(shown);
      const open = hidden.some((c) => c.hidden);
      hidden.forEach((c) => (c.hidden = !open));
      more.textContent = open ? "show fewer" : `show all ${h.features.length}`;
    });
    chips.append(more);
  }
  return el("li", { class: "headline " + verdict },
    el("div", { class: "text", text: h.text }),
    el("div", { class: "meta" },
      el("span", { class: "badge " + verdict, text: predText }),
      el("span", { class: "badge truth", text: `true: ${h.label ?? "none"}` }),
      h.held_out ? el("span", { class: "muted", text: "held out from fine-tuning" }) : null,
      el("span", { class: "muted", text: h.doc_id })),
    chips);
}

async function loadHeadlines() {
  const s = state.hl;
  try {
    const page = await api("/api/headlines", {
      layer: s.layer, only: s.only, q: s.q, offset: s.offset, limit: PAGE.headlines,
    });
    s.total = page.total;
    $("#hl-list").replaceChildren(...page.items.map((h) => headlineItem(page.layer, h)));
    $("#hl-range").textContent = page.total
      ? ` ${page.offset + 1}–${page.offset + page.items.length} of ${page.total} `
      : " none ";
    const acc = page.accuracy == null ? "no classifier predictions"
      : `fine-tuned classifier accuracy ${pct(page.accuracy)} over all labelled headlines`;
    $("#hl-summary").textContent =
      `${page.n_all} headlines · ${acc} · chips: top features of the fine-tuned model's SAE, layer ${page.layer}, by max activation over the headline`;
    showError(null);
  } catch (err) { showError(err); }
}

// ---- features tab ----------------------------------------------------------
async function loadFeatures() {
  const s = state.ft;
  try {
    const page = await api("/api/features", {
      model: s.model, layer: s.layer, metric: s.metric, order: s.order, offset: s.offset, limit: PAGE.features,
    });
    s.total = page.total;
    $("#ft-metric-head").textContent = s.metric.replaceAll("_", " ");
    $("#ft-sae").textContent = saeQuality(state.meta.saes[`${s.model}/layer_${s.layer}`]);
    $("#ft-effect").textContent = effectLine(s.layer, (state.meta.comparison || {})[s.layer]);
    $("#ft-table tbody").replaceChildren(...page.items.map((f) => {
      const tr = el("tr", { "data-id": f.feature, onclick: () => openFeature(s.model, s.layer, f.feature, true) },
        el("td", { text: f.feature }),
        labelCell(f),
        el("td", { class: "num", text: fmt(f[s.metric]) }));
      if (f.feature === s.selected) tr.classList.add("selected");
      return tr;
    }));
    $("#ft-range").textContent = ` ${page.offset + 1}–${page.offset + page.items.length} of ${page.total} `;
    showError(null);
  } catch (err) { showError(err); }
}

// The features table's label: the LLM label where it scores at least its token
// pattern (embedding AUROC shown beside the pattern's), the token pattern otherwise.
function labelCell(f) {
  const auroc = (v) => (v == null ? "–" : fmt(v, 2));
  const scores = f.embedding_auroc == null ? "" :
    `embedding AUROC ${auroc(f.embedding_auroc)} vs pattern ${auroc(f.pattern_label_embedding_auroc)}`;
  const pattern = f.pattern_label ? el("span", { class: "muted", text: f.pattern_label }) : null;
  if (f.label && f.shown_label_source !== "pattern") {
    return el("td", { title: scores }, el("span", { text: f.label }),
      pattern ? el("div", {}, pattern) : null);
  }
  const lost = f.label ? el("div", { class: "muted", text: `LLM: ${f.label} (lost)`, title: scores }) : null;
  return el("td", { title: scores }, pattern, lost);
}

// One line on how good this SAE is: reconstruction, and the model run with it.
function saeQuality(s) {
  if (!s) return "";
  const out = [`SAE: ${s.n_latents} latents, k ${s.k}, held-out FVU ${fmt(s.fvu, 3)}`];
  if (s.spliced_recovered != null) {
    out.push(`spliced into its model: ${pct(s.spliced_recovered)} ${s.splice_metric.replace("fraction of ", "of ")} (mean ablation ${pct(s.mean_ablation_recovered)})`);
  } else if (s.splice_kind) {
    out.push("spliced into its model: nothing to recover (zeroing this layer changes no output)");
  }
  if (s.in_finetuned_recovered != null) out.push(`in the fine-tuned model: ${pct(s.in_finetuned_recovered)} of loss recovered`);
  if (s.source && s.source !== "trained") out.push(`imported from ${s.source}`);
  return out.join(" · ");
}

// One line on what fine-tuning did at this layer, against the seed floor.
function effectLine(layer, e) {
  if (!e) return "";
  const byChance = e.n_changed_expected_by_seed == null ? ""
    : ` (≈${Math.round(e.n_changed_expected_by_seed)} from seed noise${e.changed_beyond_seed_noise ? "" : ": within it"})`;
  const counts = `${e.n_new} new, ${e.n_unstable} unstable, ${e.n_changed} changed${byChance}, ${e.n_lost} lost`;
  if (e.effect == null) return `Layer ${layer}, base vs fine-tuned: no seed floor (one SAE per model) · ${counts}`;
  const [lo, hi] = e.effect_ci;
  const verdict = e.beyond_seed_floor ? "beyond the seed floor" : "within the seed floor (seed noise)";
  return `Layer ${layer}, fine-tuning effect ${fmt(e.effect, 3)} [${fmt(lo, 3)}, ${fmt(hi, 3)}]: ${verdict} · ${counts}`;
}

function histogram(h) {
  const w = 420, ht = 120, pad = 18;
  const n = h.domain.length;
  const top = Math.max(1, ...h.domain, ...h.general);
  const bw = (w - pad) / n;
  const g = svg("svg", { width: w, height: ht + 16, class: "hist", role: "img" });
  h.domain.forEach((c, i) => {
    for (const [series, color, off] of [[h.domain, "#3b6fd8", 0], [h.general, "#9aa3b5", bw / 2]]) {
      const v = series[i], bh = (ht * v) / top;
      const r = svg("rect", { x: pad + i * bw + off, y: ht - bh, width: Math.max(1, bw / 2 - 1), height: bh, fill: color });
      const tip = svg("title");
      tip.textContent = `${fmt((i * h.max) / n, 2)}–${fmt(((i + 1) * h.max) / n, 2)}: ${v}`;
      r.append(tip);
      g.append(r);
    }
  });
  g.append(svg("line", { x1: pad, y1: ht, x2: w, y2: ht, stroke: "#888" }));
  const lo = svg("text", { x: pad, y: ht + 13, "font-size": 11 }); lo.textContent = "0";
  const hi = svg("text", { x: w - 40, y: ht + 13, "font-size": 11 }); hi.textContent = fmt(h.max, 2);
  g.append(lo, hi);
  return el("div", {}, g, el("div", { class: "legend" },
    el("span", { class: "sw domain" }), "domain", el("span", { class: "sw general" }), "general",
    el("span", { class: "muted", text: " · counts of non-zero activations per bin" })));
}

function context(ex, scale) {
  const line = el("div", { class: "context" });
  ex.tokens.forEach((t, i) => {
    const glued = t.startsWith("##");
    const a = ex.acts[i];
    const tok = el("span", { class: "tok" + (i === ex.peak ? " peak" : ""), title: `activation ${fmt(a, 2)}`,
      text: glued ? t.slice(2) : (i ? " " : "") + t });
    if (a > 0) tok.style.backgroundColor = `rgba(240, 120, 0, ${Math.min(1, a / scale).toFixed(3)})`;
    line.append(tok);
  });
  line.prepend(el("span", { class: "act", text: fmt(ex.activation, 2) +
    (ex.quantile == null ? "" : ` · q${fmt(ex.quantile, 2)}`) + ` · ${ex.corpus}` }));
  return line;
}

function notBuilt(stage) {
  return el("p", { class: "muted", text: `Not built yet: activate the ${stage} stage in the config and rerun the workflow.` });
}

const STATUS_TEXT = {
  new: "new: stable across seeds, in no base seed, absent from the base model (Latent Scaling)",
  unstable: "unstable: no other seed of its own model has it (seed noise, not new)",
  present_in_base: "present in base: unmatched, but the base model carries its direction (Latent Scaling)",
  matched_other_seed: "matched in another base seed",
  silent: "silent: never fires on the compared text",
};

function partnerBox(info) {
  if (!state.meta.parts.compare) return notBuilt("compare");
  const st = info.stats.status;
  const matched = st === "matched" || st === "changed";
  if (!info.partner) {
    return el("p", { class: "partner", text: STATUS_TEXT[st]
      || `No matched partner in the other model (${st || "unmatched"}).` });
  }
  const p = info.partner;
  const what = matched ? `${st} · partner in ${p.model}: `
    : `${STATUS_TEXT[st] || st} · nearest ${p.model} feature (not a match): `;
  return el("div", { class: "partner" },
    el("span", { text: what }),
    el("button", { class: "chip", id: "partner-link", text: `Feature ${p.id}: ${p.label || "unlabelled"}`,
      onclick: () => openFeature(p.model, p.layer, p.id, true) }),
    el("span", { text: ` · decoder cosine ${fmt(p.decoder_cosine)} · activation correlation ${fmt(p.activation_correlation)}` }));
}

const CLASS_TEXT = {
  shared: "shared: both models' decoders carry it",
  finetuned_only: "fine-tuned only: the base decoder half is near zero",
  base_only: "base only: the fine-tuned decoder half is near zero",
  finetuned_only_artifact: "fine-tuned only by decoder norm, but Latent Scaling finds it in the base model (an artifact)",
  base_only_artifact: "base only by decoder norm, but Latent Scaling finds it in the fine-tuned model (an artifact)",
};

// A crosscoder latent in each model, side by side: how much of it each model's
// decoder carries, and that model's nearest SAE feature with its activations.
function modelsBox(info) {
  const s = info.stats;
  const head = el("p", { class: "partner", id: "cc-class",
    text: `${CLASS_TEXT[s.status] || s.status} · relative decoder norm ${fmt(s.relative_norm, 3)}`
      + ` · ${s.stable ? "stable across crosscoder seeds" : "not found in the other crosscoder seed"}` });
  const rows = [["decoder norm", (m) => fmt(m.decoder_norm, 3)],
    ["nearest SAE feature", (m) => m.feature == null ? "–" : el("button", { class: "chip",
      text: `Feature ${m.feature}: ${m.label || "unlabelled"}`, onclick: () => openFeature(m.model, info.layer, m.feature, true) })],
    ["decoder cosine to it", (m) => fmt(m.cosine, 3)],
    ["its fraction active (domain)", (m) => fmt(m.frac_active_domain, 4)],
    ["its fraction active (general)", (m) => fmt(m.frac_active_general, 4)],
    ["its mean activation (domain)", (m) => fmt(m.mean_activation_domain, 4)],
    ["its specialization", (m) => fmt(m.specialization, 4)]];
  const cell = (v) => (typeof v === "string" ? el("td", { text: v }) : el("td", {}, v));
  const table = el("table", { class: "stats", id: "cc-models" },
    el("tr", {}, el("td"), ...info.models.map((m) => el("td", { text: m.model }))),
    ...rows.map(([name, f]) => el("tr", {}, el("td", { text: name }), ...info.models.map((m) => cell(f(m))))));
  return el("div", {}, head, table);
}

function renderDetail(info) {
  const s = info.stats;
  const label = s.label
    ? el("p", {}, el("strong", { text: s.label }), el("span", { class: "muted", text: ` · label score ${fmt(s.label_score)}` }))
    : state.meta.parts.labels ? el("p", { class: "muted", text: "No label for this feature." }) : notBuilt("labels");
  const stats = el("table", { class: "stats" },
    el("tr", {}, el("td"), el("td", { text: "domain" }), el("td", { text: "general" })),
    ...[["mean activation", "mean_activation"], ["max activation", "max_activation"], ["fraction active", "frac_active"]]
      .map(([name, key]) => el("tr", {}, el("td", { text: name }),
        el("td", { text: fmt(s[key + "_domain"], 4) }), el("td", { text: fmt(s[key + "_general"], 4) }))),
    el("tr", {}, el("td", { text: "specialization" }), el("td", { text: fmt(s.specialization, 4) })),
    // A crosscoder latent has no base partner: its panel below compares the models.
    ...(info.models ? [] : [el("tr", {}, el("td", { text: "delta vs base" }), el("td", { text: fmt(s.delta_vs_base, 4) }))]));
  const parts = [
    el("h2", { text: `Feature ${info.id}` }),
    el("p", { class: "muted", text: `${info.model} model · layer ${info.layer} · ${info.n_features} features` }),
    label, stats,
    ...(info.models ? [el("h3", { text: "In each model" }), modelsBox(info)]
      : [el("h3", { text: "Matched feature" }), partnerBox(info)]),
    el("h3", { text: "Activation histogram" }), histogram(info.histogram),
  ];
  const ex = info.examples;
  parts.push(el("h3", { text: "Top activating contexts" }));
  if (!ex) parts.push(notBuilt("examples"));
  else {
    const scale = Math.max(1e-6, ...ex.top.map((e) => e.activation));
    parts.push(ex.top.length ? el("div", { id: "contexts" }, ...ex.top.map((e) => context(e, scale)))
      : el("p", { class: "muted", text: "This feature never fired." }));
    parts.push(el("h3", { text: "Examples from activation quantiles" }));
    parts.push(ex.quantile.length ? el("div", {}, ...ex.quantile.map((e) => context(e, scale)))
      : el("p", { class: "muted", text: "None." }));
    const neg = [...ex.negative_similar, ...ex.negative_random];
    if (neg.length) {
      parts.push(el("h3", { text: "Non-activating examples" }));
      parts.push(el("div", {}, ...neg.map((e) => context(e, scale))));
    }
  }
  $("#detail").replaceChildren(...parts);
}

async function openFeature(model, layer, id, push) {
  showTab("features");
  const s = state.ft;
  const changed = s.model !== model || s.layer !== layer;
  s.model = model; s.layer = layer; s.selected = Number(id);
  $("#ft-model").value = model; $("#ft-layer").value = String(layer);
  if (push) history.pushState(null, "", `#feature/${model}/${layer}/${id}`);
  try {
    renderDetail(await api("/api/feature_info", { model, layer, id }));
    showError(null);
  } catch (err) { showError(err); }
  if (changed) { s.offset = 0; }
  loadFeatures();
}

// ---- start -----------------------------------------------------------------
function bind() {
  for (const t of ["headlines", "features"]) {
    $("#tab-" + t).addEventListener("click", () => { history.pushState(null, "", "#" + t); showTab(t); });
  }
  const hl = state.hl, ft = state.ft;
  $("#hl-layer").addEventListener("change", (e) => { hl.layer = Number(e.target.value); loadHeadlines(); });
  $("#hl-only").addEventListener("change", (e) => { hl.only = e.target.value; hl.offset = 0; loadHeadlines(); });
  let timer;
  $("#hl-q").addEventListener("input", (e) => {
    clearTimeout(timer);
    timer = setTimeout(() => { hl.q = e.target.value; hl.offset = 0; loadHeadlines(); }, 250);
  });
  $("#hl-prev").addEventListener("click", () => { hl.offset = Math.max(0, hl.offset - PAGE.headlines); loadHeadlines(); });
  $("#hl-next").addEventListener("click", () => {
    if (hl.offset + PAGE.headlines < hl.total) { hl.offset += PAGE.headlines; loadHeadlines(); }
  });
  const reload = (key) => (e) => { ft[key] = key === "layer" ? Number(e.target.value) : e.target.value; ft.offset = 0; loadFeatures(); };
  for (const key of ["model", "layer", "metric", "order"]) $("#ft-" + key).addEventListener("change", reload(key));
  $("#ft-prev").addEventListener("click", () => { ft.offset = Math.max(0, ft.offset - PAGE.features); loadFeatures(); });
  $("#ft-next").addEventListener("click", () => {
    if (ft.offset + PAGE.features < ft.total) { ft.offset += PAGE.features; loadFeatures(); }
  });
  $("#ft-search").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("#ft-id").value.trim();
    if (id) openFeature(ft.model, ft.layer, id, true);
  });
  window.addEventListener("popstate", route);
}

function notes(meta) {
  const n = meta.notes || {}, out = [];
  if (n.domain_synthetic_fraction > 0) out.push(`${pct(n.domain_synthetic_fraction)} of the domain corpus is SYNTHETIC (generated headlines).`);
  if (n.finetune_accuracy != null) out.push(`Fine-tuned classifier: held-out accuracy ${pct(n.finetune_accuracy)} (majority baseline ${pct(n.finetune_majority_baseline)}).`);
  const missing = ["labels", "compare", "examples"].filter((p) => !meta.parts[p]);
  if (missing.length) out.push(`Not built in this run: ${missing.join(", ")}.`);
  if (!meta.parts.classifier) out.push("The fine-tuned model has no classification head: no predictions.");
  return out.join(" ");
}

async function start() {
  bind();
  try {
    const meta = (state.meta = await api("/api/meta", {}));
    $("#run-name").textContent = meta.run;
    $("#notes").textContent = notes(meta);
    const layers = meta.layers.map((l) => [l, `layer ${l}`]);
    state.hl.layer = state.ft.layer = meta.layers[0];
    fillSelect($("#hl-layer"), layers, state.hl.layer);
    fillSelect($("#ft-layer"), layers, state.ft.layer);
    fillSelect($("#ft-model"), meta.models.map((m) => [m, m]), state.ft.model);
    fillSelect($("#ft-metric"), Object.entries(meta.metrics), state.ft.metric);
    await loadHeadlines();
    route();
    if (!location.hash.startsWith("#feature/")) loadFeatures();
  } catch (err) { showError(err); }
}

start();
