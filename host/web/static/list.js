// The task list: every task grouped by host, live; error records; the
// schedule preview.
import { el, fillBody, fmtTime, followState, stateBadge } from "./common.js";

const filter = document.getElementById("filter");
const hosts = document.getElementById("hosts");
const counts = document.getElementById("counts");
const errors = document.getElementById("errors");
let last = null;

filter.value = new URLSearchParams(location.search).get("path") ?? "";

// A path filter matches as the user types: "h1/po" holds h1/porch.
function matches(path, f) {
  return path.startsWith(f);
}

function render(state) {
  last = state;
  const f = filter.value.trim();
  const tasks = state.tasks.filter((t) => matches(t.path, f));
  const byHost = new Map();
  for (const t of tasks) {
    if (!byHost.has(t.host)) byHost.set(t.host, []);
    byHost.get(t.host).push(t);
  }
  const sections = [];
  for (const [host, list] of [...byHost].sort(([a], [b]) => a < b ? -1 : 1)) {
    const sec = el("section", { cls: "host", attrs: { "data-host": host } });
    sec.append(el("h2", {}, host));
    const table = el("table", { cls: "tasks" });
    const head = el("tr");
    for (const h of ["Task", "State", "Since", "Message", "Script", "Version", "Runs seen"]) {
      head.append(el("th", {}, h));
    }
    const thead = el("thead");
    thead.append(head);
    table.append(thead);
    const body = el("tbody");
    for (const t of list) {
      const tr = el("tr", { attrs: { "data-path": t.path } });
      const a = el("a", { attrs: { href: `/task?path=${encodeURIComponent(t.path)}` } }, t.path);
      tr.append(el("td", { cls: "path" }));
      tr.lastChild.append(a);
      const st = el("td", { cls: "state-cell" });
      st.append(stateBadge(t.state));
      tr.append(st);
      tr.append(el("td", {}, fmtTime(t.since, state.zone)));
      tr.append(el("td", { cls: "message" }, t.gone ? `${t.message} (task deleted)` : t.message));
      tr.append(el("td", {}, t.script));
      tr.append(
        el(
          "td",
          {},
          t.version
            ? fmtTime(t.version, state.zone) + (t.current !== "current" ? ` (${t.current})` : "")
            : "-",
        ),
      );
      tr.append(el("td", { cls: "num" }, t.restarts));
      body.append(tr);
    }
    table.append(body);
    sec.append(table);
    sections.push(sec);
  }
  hosts.replaceChildren(...sections);
  counts.textContent = `${tasks.length} of ${state.tasks.length} tasks`;
  fillBody(
    errors,
    state.errors.filter((r) => matches(r.loc, f)).map((r) => {
      const tr = el("tr", { attrs: { "data-loc": r.loc } });
      tr.append(el("td", {}, r.loc), el("td", {}, r.tag), el("td", { cls: "num" }, r.counter));
      tr.append(
        el("td", {}, fmtTime(r.timestamp, state.zone)),
        el("td", { cls: "message" }, r.msg),
      );
      return tr;
    }),
  );
  document.getElementById("zone").textContent = state.zone
    ? `Times in the installation's zone, ${state.zone}.`
    : "Times in the zone of the host running moat web (no /config/timezone).";
}

filter.addEventListener("input", () => {
  const u = new URL(location.href);
  if (filter.value.trim()) u.searchParams.set("path", filter.value.trim());
  else u.searchParams.delete("path");
  history.replaceState(null, "", u);
  if (last) render(last);
});

followState(render);

document.getElementById("schedule").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const spec = document.getElementById("spec").value;
  const count = document.getElementById("count").value;
  const out = document.getElementById("times");
  const err = document.getElementById("time-error");
  const r = await fetch(
    `/api/time?spec=${encodeURIComponent(spec)}&count=${encodeURIComponent(count)}`,
  );
  const body = await r.json();
  if (!r.ok) {
    out.replaceChildren();
    err.textContent = body.error;
    return;
  }
  err.textContent = "";
  out.replaceChildren(...body.times.map((t) => {
    const li = el("li", { cls: "time", attrs: { "data-unix": String(t.unix) } });
    li.append(el("span", { cls: "iso" }, t.time), el("span", { cls: "unix" }, ` ${t.unix}`));
    return li;
  }));
  out.setAttribute("data-zone", body.times[0]?.zone ?? "");
});
