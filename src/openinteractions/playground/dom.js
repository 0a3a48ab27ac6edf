// The few DOM helpers every module uses.

/** An element with attributes (``class``, ``data-*``, properties such as ``open``) and children (text or nodes). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name in node && !name.startsWith("data-") && !name.startsWith("aria-")) node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== undefined && child !== null));
  return node;
}

/** JSON as people read it: strings as they are, everything else indented. */
export function pretty(value) {
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 2);
}

/** Calls ``fn`` at most once per animation frame however often it is asked: a burst of deltas is one render. */
export function throttled(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      fn();
    });
  };
}

export function mediaSource(block) {
  if (block.data) return `data:${block.mime_type || "application/octet-stream"};base64,${block.data}`;
  return block.uri || "";
}
