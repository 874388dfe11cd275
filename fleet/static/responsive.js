// Tablet and phone widths (console.css, "Tablet and phone"): every table is shown as cards, one card per row, each
// cell headed by its column's name. This module gives the cells those names (td[data-label], from the table's header
// row) for every table a page renders into #page, now and whenever a page redraws one; the CSS shows them
// (td::before { content: attr(data-label) }). The pages need not know.
// It also gives the table's parts their ARIA roles: a table laid out as blocks would lose them in some browsers.
"use strict";

const norm = text => text.replace(/\s+/g, " ").trim();

function setAttr(el, name, value) {
  if (value === null) { if (el.hasAttribute(name)) el.removeAttribute(name); }
  else if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

// The label of each column (a header spanning two columns names both), from the table's last header row.
export function columnLabels(table) {
  const head = table.tHead;
  const row = head && head.rows[head.rows.length - 1];
  if (!row) return null;
  const labels = [];
  for (const th of row.cells) {
    const text = norm(th.textContent);
    for (let i = 0; i < Math.max(1, th.colSpan); i++) labels.push(text);
  }
  return labels;
}

function labelRow(tr, labels) {
  setAttr(tr, "role", "row");
  let col = 0;
  for (const cell of tr.cells) {
    const span = Math.max(1, cell.colSpan);
    if (cell.tagName === "TH") {
      setAttr(cell, "role", cell.closest("thead") ? "columnheader" : "rowheader");
    } else {
      setAttr(cell, "role", "cell");
      // A cell across the whole row (a group heading, "Nothing to show.") needs no label.
      setAttr(cell, "data-label", labels && span < labels.length ? (labels[col] ?? "") : null);
    }
    col += span;
  }
}

export function labelTable(table) {
  const labels = columnLabels(table);
  setAttr(table, "role", "table");
  for (const section of [table.tHead, ...table.tBodies, table.tFoot]) {
    if (!section) continue;
    setAttr(section, "role", "rowgroup");
    for (const tr of section.rows) labelRow(tr, labels);
  }
}

const tablesIn = node => (node.nodeType !== Node.ELEMENT_NODE ? []
  : node.tagName === "TABLE" ? [node] : [...node.querySelectorAll("table")]);

// Label the tables under `root` and keep labelling them as pages add, redraw or refill them. Returns a stop function.
export function startResponsive(root = document.getElementById("page")) {
  const observer = new MutationObserver(records => {
    const touched = new Set();
    for (const record of records) {
      const target = record.target.nodeType === Node.ELEMENT_NODE ? record.target : record.target.parentElement;
      const inTable = target && target.closest("table");
      if (inTable) touched.add(inTable);
      for (const node of record.addedNodes) for (const t of tablesIn(node)) touched.add(t);
    }
    for (const t of touched) if (t.isConnected) labelTable(t);
  });
  observer.observe(root, {childList: true, subtree: true, characterData: true});
  for (const t of tablesIn(root)) labelTable(t);
  return () => observer.disconnect();
}
