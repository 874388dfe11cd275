// Run in the page by test_console.py: every problem found (unlabelled controls, nameless buttons and links,
// clickable non-controls, text below WCAG AA contrast), as a list of strings.
() => {
    const problems = [];
    const name = el => (el.getAttribute("aria-label") || (el.labels && [...el.labels].map(l => l.textContent).join(" ")) || el.textContent || el.title || "").trim();
    for (const el of document.querySelectorAll("input, select, textarea")) {
        if (el.type === "hidden" || el.closest("[hidden]")) continue;
        if (!name(el)) problems.push(`unlabelled ${el.tagName} ${el.id || el.name}`);
    }
    for (const el of document.querySelectorAll("button, a[href]")) {
        if (el.closest("[hidden]")) continue;
        if (!name(el)) problems.push(`nameless ${el.tagName}`);
    }
    for (const el of document.querySelectorAll("[onclick], div[tabindex]:not([role=region]), span[tabindex]")) problems.push(`clickable ${el.tagName}`);
    // Text contrast against the nearest opaque background (WCAG AA: 4.5, or 3 for large text).
    const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => { const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
                                  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
    const bgOf = el => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
                          if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3); } return [255, 255, 255]; };
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const seen = new Set();
    while (walker.nextNode()) {
        const el = walker.currentNode.parentElement;
        if (!walker.currentNode.textContent.trim() || seen.has(el) || !el.checkVisibility()) continue;
        seen.add(el);
        const style = getComputedStyle(el);
        if (el.closest("button:disabled")) continue;  // WCAG exempts inactive controls
        const fg = rgb(style.color).slice(0, 3), bg = bgOf(el);
        const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
        const ratio = (a + 0.05) / (b + 0.05);
        const large = parseFloat(style.fontSize) >= 24 || (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
        if (ratio < (large ? 3 : 4.5)) problems.push(`contrast ${ratio.toFixed(2)} for "${el.textContent.trim().slice(0, 30)}"`);
    }
    return problems;
}
