// Shared by the annotator and admin pages: token storage and the JSON API wrapper.
// All server data is untrusted: pages build DOM nodes and set textContent, never innerHTML.
"use strict";

const TOKEN_KEY = "rlhfkit-token";

function $(id) { return document.getElementById(id); }

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function detailText(data) {
  if (!data || data.detail === undefined) return "";
  if (typeof data.detail === "string") return data.detail;
  if (Array.isArray(data.detail)) {
    return data.detail.map((d) => (d.loc || []).slice(1).join(".") + ": " + d.msg).join("; ");
  }
  return JSON.stringify(data.detail);
}

async function api(method, path, body, raw) {
  const headers = { "Authorization": "Bearer " + (sessionStorage.getItem(TOKEN_KEY) || "") };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (raw && res.ok) return res;
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) {
    const err = new Error(detailText(data) || (res.status + " " + res.statusText));
    err.status = res.status;
    throw err;
  }
  return data;
}

function setStatus(msg, isError) {
  const s = $("status");
  s.textContent = msg || "";
  s.className = isError ? "error" : "";
}

// Sign-in form shared by both pages; `onReady(who)` runs once a token is accepted.
function setupLogin(onReady, needAdmin) {
  async function tryToken(tok) {
    const res = await fetch("/api/login", { method: "POST", headers: { "Content-Type": "application/json" },
                                            body: JSON.stringify({ token: tok }) });
    if (!res.ok) throw new Error("unknown token");
    const who = await res.json();
    if (needAdmin && !who.is_admin) throw new Error("this page needs an admin token");
    sessionStorage.setItem(TOKEN_KEY, tok);
    $("who").textContent = "signed in as " + who.name;
    $("logout").hidden = false;
    $("login-view").hidden = true;
    onReady(who);
  }
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    tryToken($("token").value.trim()).catch((e) => setStatus(e.message, true));
  });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); location.reload(); });
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) tryToken(saved).catch(() => sessionStorage.removeItem(TOKEN_KEY));
}
