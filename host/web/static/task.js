// One task: its state live, data values, error records, debug object, and
// its log following live.
import { el, fillBody, fmtTime, followState, stateBadge } from "./common.js";

const path = new URLSearchParams(location.search).get("path") ?? "";
document.getElementById("title").textContent = path;
document.title = `MoaT task ${path}`;
let zone = "";

function kv(table, obj) {
  fillBody(
    table,
    Object.entries(obj).map(([k, v]) => {
      const tr = el("tr");
      tr.append(el("td", {}, k), el("td", { cls: "value" }, v));
      return tr;
    }),
  );
}

function show(t) {
  const st = document.getElementById("state");
  st.replaceWith(Object.assign(stateBadge(t.state), { id: "state" }));
  document.getElementById("since").textContent = fmtTime(t.since, zone);
  document.getElementById("message").textContent = t.gone
    ? `${t.message} (task deleted)`
    : t.message;
  document.getElementById("script").textContent = t.script +
    (t.version ? ` @ ${fmtTime(t.version, zone)}` : "") +
    (t.current !== "current" ? ` (${t.current})` : "");
  document.getElementById("restarts").textContent = String(t.restarts);
  document.getElementById("runner").textContent = t.runner || "-";
}

async function details() {
  const r = await fetch(`/api/task?path=${encodeURIComponent(path)}`);
  const d = await r.json();
  if (!r.ok) {
    document.getElementById("message").textContent = d.error;
    return;
  }
  show(d.task);
  kv(document.getElementById("data"), d.data);
  kv(document.getElementById("values"), d.values);
  fillBody(
    document.getElementById("errors"),
    d.errors.map((e) => {
      const tr = el("tr");
      tr.append(el("td", {}, e.tag), el("td", { cls: "num" }, e.counter));
      tr.append(el("td", {}, fmtTime(e.timestamp, zone)), el("td", { cls: "message" }, e.msg));
      return tr;
    }),
  );
  document.getElementById("debug").textContent = d.debug || "(none)";
}

let lastState = "";
followState((state) => {
  zone = state.zone;
  const t = state.tasks.find((x) => x.path === path);
  if (!t) return;
  show(t);
  // A new state or run brings new error records and a new debug object.
  const key = `${t.state} ${t.since}`;
  if (key !== lastState) {
    lastState = key;
    void details();
  }
});

const log = document.getElementById("log");
const note = document.getElementById("log-note");
const les = new EventSource(`/api/log?path=${encodeURIComponent(path)}`);
les.addEventListener("line", (ev) => {
  const l = JSON.parse(ev.data);
  const row = el("div", { cls: `line level-${l.level}` });
  row.append(
    el("span", { cls: "time" }, new Date(l.time).toISOString()),
    el("span", { cls: "level" }, l.level.toUpperCase()),
    el("span", { cls: "msg" }, l.message),
  );
  const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.append(row);
  while (log.childElementCount > 1000) log.firstElementChild.remove();
  if (atEnd) log.scrollTop = log.scrollHeight;
});
les.addEventListener("note", (ev) => {
  note.textContent = `(${JSON.parse(ev.data)})`;
});
