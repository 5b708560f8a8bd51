// archbench results site: sortable and filterable tables, and the Vega-Lite charts drawn from the specs
// each page carries inline (no fetch: browsers refuse it from file://). Plain script, no module, no build.
"use strict";

// -- tables -----------------------------------------------------------------------------------------
// A cell's sort value: data-v (the number the report printed, in SI units) when it has one, else its text.
// Numbers come before text in either direction, so "n/a", "-" and failed cells stay at the bottom.
function compareCells(a, b) {
  if (a.dataset.v !== undefined && b.dataset.v !== undefined) return Number(a.dataset.v) - Number(b.dataset.v);
  return a.textContent.localeCompare(b.textContent, undefined, { numeric: true });
}

function sortBy(table, col, th) {
  const dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
  table.querySelectorAll("th[aria-sort]").forEach((h) => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", dir);
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((r1, r2) => {
    const a = r1.cells[col], b = r2.cells[col];
    if (!a || !b) return 0;
    const na = a.dataset.v !== undefined, nb = b.dataset.v !== undefined;
    if (na !== nb) return na ? -1 : 1;  // numbers first in either direction
    const c = compareCells(a, b);
    return dir === "ascending" ? c : -c;
  });
  rows.forEach((r) => body.appendChild(r));
}

// Text columns with a handful of values that rows share (mode, backend, class) get a drop-down; every
// table a search box. A column of numbers, or of one value per row, is left to the box.
const MAX_CHOICES = 12;

function addFilters(table) {
  const rows = Array.from(table.tBodies[0].rows);
  const heads = Array.from(table.tHead.rows[0].cells);
  const bar = document.createElement("div");
  bar.className = "filters";
  const box = document.createElement("input");
  box.type = "search";
  box.placeholder = "filter rows";
  box.setAttribute("aria-label", "filter rows");
  bar.appendChild(box);
  const selects = [];
  heads.forEach((th, col) => {
    const cells = rows.map((r) => r.cells[col]).filter(Boolean);
    const values = Array.from(new Set(cells.map((c) => c.textContent)));
    const numbers = cells.filter((c) => c.dataset.v !== undefined).length;
    if (values.length < 2 || values.length > MAX_CHOICES || values.length >= rows.length || numbers) return;
    const sel = document.createElement("select");
    sel.setAttribute("aria-label", "only rows whose " + th.textContent + " is");
    sel.appendChild(new Option(th.textContent + ": all", ""));
    values.sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))
      .forEach((v) => sel.appendChild(new Option(v, v)));
    sel.dataset.col = col;
    selects.push(sel);
    bar.appendChild(sel);
  });
  const count = document.createElement("span");
  count.className = "count";
  bar.appendChild(count);
  function apply() {
    const words = box.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    rows.forEach((r) => {
      const text = r.textContent.toLowerCase();
      const ok = words.every((w) => text.includes(w)) && selects.every((s) =>
        !s.value || (r.cells[s.dataset.col] && r.cells[s.dataset.col].textContent === s.value));
      r.hidden = !ok;
      shown += ok ? 1 : 0;
    });
    count.textContent = shown + " of " + rows.length + " rows";
  }
  box.addEventListener("input", apply);
  selects.forEach((s) => s.addEventListener("change", apply));
  apply();
  table.parentElement.before(bar);
}

function setUpTable(table) {
  Array.from(table.tHead.rows[0].cells).forEach((th, col) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = th.textContent;
    button.title = "sort by " + th.textContent;
    th.textContent = "";
    th.appendChild(button);
    button.addEventListener("click", () => sortBy(table, col, th));
  });
  addFilters(table);
}

// -- charts -----------------------------------------------------------------------------------------
// Every chart is drawn on load; data-state says how it went ("drawn" or "failed"), for readers and tests.
function drawCharts() {
  const charts = Array.from(document.querySelectorAll("div.chart[data-spec]"));
  return Promise.all(charts.map((div) => {
    const spec = JSON.parse(document.getElementById(div.dataset.spec).textContent);
    return window.vegaEmbed(div, spec, { actions: false, renderer: "svg", mode: "vega-lite" })
      .then(() => { div.dataset.state = "drawn"; })
      .catch((err) => {
        div.dataset.state = "failed";
        div.classList.add("failed");
        div.textContent = "This chart could not be drawn: " + err;
        console.error("chart " + div.dataset.spec + ": " + err);
      });
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach(setUpTable);
  const done = document.querySelector("div.chart[data-spec]") ? drawCharts() : Promise.resolve();
  done.then(() => { document.body.dataset.ready = "true"; });
});
