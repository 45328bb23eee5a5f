// Annotator page: show one item, collect a best->worst order of its responses, submit, repeat.
// Positions are display positions; the server maps them back to candidate indices.
"use strict";

const state = { item: null, order: [], flags: {}, shownAt: 0, busy: false };

function showProgress(p) {
  const total = p.done + p.available;
  $("progress").max = Math.max(total, 1);
  $("progress").value = p.done;
  $("progress-text").textContent = `${p.done} ranked by you, ${p.available} more available ` +
    `(${p.rankings} of ${p.target_rankings} rankings overall)`;
}

async function loadNext() {
  const data = await api("GET", "/api/next");
  showProgress(data.progress);
  state.item = data.item;
  state.order = [];
  state.flags = {};
  if (!data.item) {
    $("rank-view").hidden = true;
    $("done-view").hidden = false;
    return;
  }
  $("done-view").hidden = true;
  $("rank-view").hidden = false;
  $("prompt").textContent = data.item.prompt;
  $("family").textContent = data.item.family ? "(" + data.item.family + ")" : "";
  renderCards();
  renderOrder();
  state.shownAt = Date.now();
}

function renderCards() {
  const cards = $("cards");
  cards.replaceChildren();
  state.item.responses.forEach((text, pos) => {
    const card = el("div", { "class": "card", "data-pos": String(pos), "tabindex": "0" });
    const head = el("div", { "class": "card-head" });
    head.append(el("span", { "class": "key" }, String(pos + 1)), el("span", { "class": "badge" }));
    for (const kind of ["harmful", "nonsense"]) {
      const label = el("label", { "class": "flag" });
      const box = el("input", { "type": "checkbox", "data-flag": kind });
      box.addEventListener("change", () => toggleFlag(pos, kind, box.checked));
      label.append(box, document.createTextNode(" " + kind));
      head.append(label);
    }
    card.append(head, el("pre", { "class": "text response-text" }, text));
    card.addEventListener("click", (ev) => { if (!ev.target.closest("label")) toggleRank(pos); });
    cards.append(card);
  });
}

function toggleFlag(pos, kind, on) {
  const kinds = new Set(state.flags[pos] || []);
  if (on) kinds.add(kind); else kinds.delete(kind);
  state.flags[pos] = [...kinds];
}

function toggleRank(pos) {
  const at = state.order.indexOf(pos);
  if (at >= 0) state.order.splice(at, 1); else state.order.push(pos);
  renderOrder();
}

function renderOrder() {
  const k = state.item.responses.length;
  for (const card of document.querySelectorAll(".card")) {
    const rank = state.order.indexOf(Number(card.dataset.pos));
    card.classList.toggle("ranked", rank >= 0);
    card.querySelector(".badge").textContent = rank >= 0 ? "#" + (rank + 1) : "";
  }
  const list = $("order");
  list.replaceChildren();
  state.order.forEach((pos, i) => {
    const chip = el("li", { "class": "chip", "draggable": "true", "data-index": String(i) },
                    (i + 1) + ". Response " + (pos + 1));
    chip.addEventListener("dragstart", (ev) => ev.dataTransfer.setData("text/plain", String(i)));
    chip.addEventListener("dragover", (ev) => ev.preventDefault());
    chip.addEventListener("drop", (ev) => {
      ev.preventDefault();
      const from = Number(ev.dataTransfer.getData("text/plain"));
      const [moved] = state.order.splice(from, 1);
      state.order.splice(i, 0, moved);
      renderOrder();
    });
    list.append(chip);
  });
  $("submit").disabled = state.order.length !== k;
}

async function submit() {
  if (state.busy || !state.item || state.order.length !== state.item.responses.length) return;
  state.busy = true;
  try {
    const flags = {};
    for (const [pos, kinds] of Object.entries(state.flags)) if (kinds.length) flags[pos] = kinds;
    await api("POST", "/api/rankings", { assignment_id: state.item.assignment_id, ranking: state.order,
                                         time_ms: Date.now() - state.shownAt, flags });
    setStatus("Saved.");
    await loadNext();
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    state.busy = false;
  }
}

document.addEventListener("keydown", (ev) => {
  if (!state.item || $("rank-view").hidden || ev.target.tagName === "INPUT") return;
  if (/^[1-9]$/.test(ev.key)) {
    const pos = Number(ev.key) - 1;
    if (pos < state.item.responses.length) toggleRank(pos);
  } else if (ev.key === "Backspace") {
    state.order.pop();
    renderOrder();
    ev.preventDefault();
  } else if (ev.key === "Enter") {
    submit();
  }
});

document.addEventListener("DOMContentLoaded", () => {
  $("submit").addEventListener("click", submit);
  setupLogin(() => loadNext().catch((e) => setStatus(e.message, true)), false);
});
