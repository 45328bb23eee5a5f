// Admin page: progress, new annotators, quality table, export and gold marking.
"use strict";

function fmt(x) { return x === null || x === undefined ? "-" : (typeof x === "number" ? x.toFixed(3).replace(/\.?0+$/, "") : String(x)); }

function fillTable(id, rows) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren(...rows.map((cells) => {
    const tr = el("tr");
    for (const c of cells) tr.append(c instanceof Node ? el("td").appendChild(c).parentNode : el("td", {}, fmt(c)));
    return tr;
  }));
}

async function refreshProgress() {
  const p = await api("GET", "/api/admin/progress");
  $("overall").textContent = `${p.rankings} of ${p.target_rankings} rankings; ${p.complete_items} of ${p.items} items complete (redundancy ${p.redundancy})`;
  fillTable("annotators", p.annotators.map((a) => [a.id, a.name, a.is_admin ? "yes" : "", a.done]));
}

async function refreshQuality() {
  const q = await api("GET", "/api/admin/quality");
  $("alpha").textContent = q.alpha ? `Krippendorff's alpha (${q.alpha.metric}, ${q.alpha.on}) = ${fmt(q.alpha.value)}` : "no rankings yet";
  fillTable("quality", Object.entries(q.annotators).sort().map(([name, s]) => [name, s.n_rankings, s.reliability,
    s.loo_agreement, s.gold_accuracy, s.position_bias, s.length_bias, s.flags.join(", ")]));
}

async function refreshItems() {
  const items = await api("GET", "/api/admin/items?limit=200");
  fillTable("items", items.map((it) => {
    const box = el("input", { "type": "number", "min": "0", "max": String(it.responses.length - 1), "class": "gold" });
    if (it.gold_best !== null) box.value = String(it.gold_best);
    box.addEventListener("change", () => {
      const best = box.value === "" ? null : Number(box.value);
      api("POST", "/api/admin/gold", { prompt_id: it.id, best })
        .then(() => setStatus(`gold for item ${it.id} saved`)).catch((e) => setStatus(e.message, true));
    });
    const preview = it.responses.map((r, i) => i + ": " + r.slice(0, 60)).join("\n");
    return [it.id, it.family, it.prompt.slice(0, 120), el("pre", { "class": "text small" }, preview), it.n_rankings, box];
  }));
}

async function download() {
  const res = await api("GET", "/api/admin/export", undefined, true);
  const url = URL.createObjectURL(await res.blob());
  const a = el("a", { "href": url, "download": "rankings.jsonl" });
  document.body.append(a);
  a.click();
  a.remove();
  URL.revokeObjectURL(url);
}

document.addEventListener("DOMContentLoaded", () => {
  const wrap = (f) => () => f().catch((e) => setStatus(e.message, true));
  $("quality-btn").addEventListener("click", wrap(refreshQuality));
  $("export-btn").addEventListener("click", wrap(download));
  $("new-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    api("POST", "/api/admin/annotators", { name: $("new-name").value, is_admin: $("new-admin").checked })
      .then((a) => { $("new-token").textContent = a.token; return refreshProgress(); })
      .catch((e) => setStatus(e.message, true));
  });
  setupLogin(() => {
    $("admin-view").hidden = false;
    Promise.all([refreshProgress(), refreshItems()]).catch((e) => setStatus(e.message, true));
  }, true);
});
