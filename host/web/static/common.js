// Helpers shared by the pages. Every text from the server goes into the
// page with textContent, never as markup.

/** An element with classes, attributes and text. */
export function el(tag, opts = {}, text) {
  const e = document.createElement(tag);
  if (opts.cls) e.className = opts.cls;
  for (const [k, v] of Object.entries(opts.attrs ?? {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = String(text);
  return e;
}

/** Unix seconds as a local date-time in `zone` (the installation's), or "-". */
export function fmtTime(unix, zone) {
  if (!unix) return "-";
  const opts = {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
  };
  try {
    if (zone) opts.timeZone = zone;
    return new Intl.DateTimeFormat("sv-SE", opts).format(new Date(unix * 1000));
  } catch {
    return new Date(unix * 1000).toISOString();
  }
}

/** A state cell: the word, with a class that gives it its colour. */
export function stateBadge(state) {
  return el("span", { cls: `state state-${state}`, attrs: { "data-state": state } }, state);
}

/** Follow the page state; `render` gets every snapshot. */
export function followState(render) {
  const live = document.getElementById("live");
  const es = new EventSource("/api/events");
  es.addEventListener("state", (ev) => {
    live.textContent = "live";
    live.className = "live on";
    render(JSON.parse(ev.data));
  });
  es.addEventListener("error", () => {
    live.textContent = "reconnecting…";
    live.className = "live off";
  });
  return es;
}

/** Replace the rows of a table body. */
export function fillBody(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
}
