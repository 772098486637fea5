// Progressive enhancement only: every page works without this file.
// - the overview polls its JSON twin and redraws cards, charts and backend state in place;
// - cooldown countdowns tick; - copy buttons; - confirmation of destructive forms.
// Text goes in with textContent and SVG with createElementNS: no markup from data, ever.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function lookup(view, path) {
  return path.split(".").reduce((value, key) => (value == null ? value : value[key]), view);
}

function drawChart(chart) {
  const svg = document.querySelector(`svg[data-chart="${chart.id}"]`);
  if (!svg) return;
  svg.setAttribute("viewBox", `0 0 ${chart.width} ${chart.height}`);
  svg.setAttribute("aria-label", chart.summary);
  const rects = svg.querySelector("g.rects");
  const texts = svg.querySelector("g.texts");
  rects.replaceChildren(...chart.rects.map((r) => {
    const rect = svgEl("rect", { x: r.x, y: r.y, width: r.w, height: r.h, class: r.cls });
    if (r.title) {
      const title = svgEl("title", {});
      title.textContent = r.title;
      rect.appendChild(title);
    }
    return rect;
  }));
  texts.replaceChildren(...chart.texts.map((t) => {
    const text = svgEl("text", { x: t.x, y: t.y, "text-anchor": t.anchor });
    text.textContent = t.text;
    return text;
  }));
  const legend = document.querySelector(`[data-legend="${chart.id}"]`);
  if (legend) {
    legend.replaceChildren(...chart.legend.map((item) => {
      const li = el("li");
      li.appendChild(el("span", { class: `swatch ${item.cls}` }));
      li.appendChild(document.createTextNode(item.name));
      if (item.total) {
        li.appendChild(document.createTextNode(" "));
        li.appendChild(el("span", { class: "muted" }, item.total));
      }
      return li;
    }));
  }
}

function stateCell(b) {
  const td = el("td");
  td.appendChild(el("span", { class: `badge state-${b.state}` }, b.state_label));
  if (b.remaining_display) {
    td.appendChild(document.createTextNode(" "));
    td.appendChild(el("span", { class: "countdown", "data-until": b.cooldown_until }, b.remaining_display));
  }
  if (b.reason && b.state !== "disabled") {
    td.appendChild(document.createTextNode(" "));
    td.appendChild(el("span", { class: "muted" }, `(${b.reason.replaceAll("_", " ")})`));
  }
  return td;
}

function drawBackends(backends) {
  const body = document.getElementById("live-backends");
  if (!body) return;
  if (!backends.length) return; // keep the server's "no backends yet" row
  body.replaceChildren(...backends.map((b) => {
    const tr = el("tr");
    tr.appendChild(el("td", {}, b.name));
    tr.appendChild(el("td", {}, b.pool));
    tr.appendChild(stateCell(b));
    tr.appendChild(el("td", { class: "num" }, b.tokens_left_display));
    tr.appendChild(el("td", { class: "num" }, b.in_flight));
    tr.appendChild(el("td", { class: "num" }, b.success_display));
    return tr;
  }));
}

function applyOverview(view) {
  for (const card of view.cards) {
    const node = document.querySelector(`[data-card="${card.id}"]`);
    if (!node) continue;
    for (const part of node.querySelectorAll("[data-part]")) {
      part.textContent = card[part.dataset.part];
    }
    const trend = node.querySelector(".trend");
    if (trend) trend.className = `trend ${card.trend}`;
  }
  const month = document.querySelector('[data-card="month"] [data-part="display"]');
  if (month) month.textContent = view.month.display;
  for (const node of document.querySelectorAll("[data-field]")) {
    const value = lookup(view, node.dataset.field);
    if (node.dataset.field === "generated_at") node.textContent = String(value).slice(0, 19).replace("T", " ");
    else node.textContent = typeof value === "number" ? value.toLocaleString("en-US") : value;
  }
  for (const node of document.querySelectorAll("[data-show-if]")) {
    node.hidden = !lookup(view, node.dataset.showIf);
  }
  for (const chart of Object.values(view.charts)) drawChart(chart);
  drawBackends(view.backends);
  const list = document.getElementById("in-flight");
  if (list) {
    list.replaceChildren(...view.in_flight.by_backend.map((r) => el("li", {}, `${r.backend}: ${r.in_flight}`)));
  }
}

function startPolling() {
  const url = document.body.dataset.pollUrl;
  if (!url) return;
  const every = Math.max(1000, Number(document.body.dataset.pollMs) || 3000);
  let busy = false;
  const poll = async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } });
      if (response.status === 401) {
        window.location.assign("/login?next=%2F");
        return;
      }
      if (response.ok) {
        applyOverview(await response.json());
        document.body.dataset.refreshed = String((Number(document.body.dataset.refreshed) || 0) + 1);
      }
    } catch (e) {
      // The gateway may be restarting: try again at the next tick.
    } finally {
      busy = false;
    }
  };
  setInterval(poll, every);
}

function formatRemaining(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function tickCountdowns() {
  for (const node of document.querySelectorAll("[data-until]")) {
    const until = Date.parse(node.dataset.until);
    if (!Number.isNaN(until)) node.textContent = formatRemaining((until - Date.now()) / 1000);
  }
}

function wireCopyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.querySelector(button.dataset.copy);
      if (!source) return;
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        button.textContent = "Copied";
      } catch (e) {
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Press Ctrl+C";
      }
    });
  }
}

function wireConfirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  wireCopyButtons();
  wireConfirmations();
  startPolling();
  setInterval(tickCountdowns, 1000);
});
