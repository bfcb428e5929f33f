// cmq's web console: pages over the REST API (same origin, the session cookie), no build
// step. Text is always set as text (never as HTML), so nothing from a job can run here.

const main = document.getElementById("main");
const FINAL = new Set(["succeeded", "failed", "cancelled", "lost"]);
let refreshSoon = null;          // the current page's refresh, called on job events

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class Unauthorized extends Error {}
// A page load that a newer one (a refresh, another filter) overtook: it draws nothing.
class Overtaken extends Error {}
let loads = 0;                   // page loads begun; a GET answered after a newer load began is dropped

async function api(method, path, body, raw = false) {
  const load = loads;
  const init = { method, headers: {} };
  if (body instanceof Blob) { init.body = body; init.headers["Content-Type"] = "application/octet-stream"; }
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const r = await fetch(path, init);
  if (r.status === 401) throw new Unauthorized();
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  if (method === "GET" && load !== loads) throw new Overtaken();
  if (raw) return r;
  return r.status === 204 ? null : r.json();
}

const state = (s, extra = "") => h("span", { class: `state ${s} ${extra}`, "data-state": s }, s);
const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "");
const took = (a, b) => (a && b ? `${(b - a).toFixed(1)} s` : "");
const short = (s, n = 60) => { s = String(s ?? ""); return s.length > n ? s.slice(0, n - 1) + "…" : s; };
const show = (...nodes) => main.replaceChildren(...nodes);
const failure = (e) => h("p", { class: "error", role: "alert" }, e.message || String(e));

function params() {
  const [, query = ""] = location.hash.split("?");
  return new URLSearchParams(query);
}

// A table whose columns sort on a click: cols = [[title, key, render?]].
// Its order is kept by table id, so that a refresh of the page keeps the user's sort.
const sorts = new Map();
function table(rows, cols, id) {
  let [key, up] = sorts.get(id) || [null, true];
  const body = h("tbody");
  const fill = () => {
    const sorted = key === null ? rows : [...rows].sort((a, b) => {
      const x = a[key] ?? "", y = b[key] ?? "";
      return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
    });
    body.replaceChildren(...sorted.map((r) => h("tr", {}, cols.map(([, k, f]) => h("td", { class: `c-${k}` }, f ? f(r) : r[k])))));
  };
  const head = h("tr", {}, cols.map(([title, k]) => h("th", {
    onclick: () => { up = key === k ? !up : true; key = k; sorts.set(id, [key, up]); fill(); },
  }, title)));
  fill();
  return h("table", { id }, h("thead", {}, head), body);
}

// -- login -------------------------------------------------------------------------------
function login() {
  document.getElementById("logout").hidden = true;
  const token = h("input", { type: "password", name: "token", placeholder: "cmq_…", autocomplete: "off", required: true });
  const err = h("div");
  show(h("form", {
    class: "login", onsubmit: async (ev) => {
      ev.preventDefault();
      try { await api("POST", "/api/login", { token: token.value }); route(); }
      catch (e) { err.replaceChildren(failure(e instanceof Unauthorized ? new Error("that token is not valid") : e)); }
    },
  }, h("h1", {}, "Log in to cmq"),
    h("p", { class: "dim" }, "With a token from ", h("code", {}, "cmq serve token create NAME"), "."),
    token, " ", h("button", { type: "submit" }, "Log in"), err));
}

// -- jobs --------------------------------------------------------------------------------
async function jobs() {
  const p = params();
  const q = new URLSearchParams();
  for (const k of ["state", "q", "batch"]) if (p.get(k)) q.set(k, p.get(k));
  q.set("last", p.get("last") || "200");
  const rows = await api("GET", `/api/jobs?${q}`);
  const form = h("form", {
    class: "bar", onsubmit: (ev) => {
      ev.preventDefault();
      const f = new FormData(ev.target);
      const next = new URLSearchParams([...f].filter(([, v]) => v));
      location.hash = `#/jobs?${next}`;
    },
  },
  h("label", {}, "state", h("select", { name: "state" }, ["", "queued", "running", "retrying", "succeeded", "failed",
    "cancelled", "lost"].map((s) => h("option", { value: s, selected: p.get("state") === s }, s || "any")))),
  h("label", {}, "command holds", h("input", { name: "q", value: p.get("q") || "", placeholder: "search" })),
  h("label", {}, "batch", h("input", { name: "batch", value: p.get("batch") || "" })),
  h("label", {}, "newest", h("input", { name: "last", value: p.get("last") || "200", size: 5 })),
  h("button", { type: "submit" }, "Filter"));
  show(h("h1", {}, "Jobs"), form, rows.length ? table(rows.reverse(), [
    ["job", "id", (r) => h("a", { href: `#/job/${r.id}` }, r.id)],
    ["state", "state", (r) => state(r.state)],
    ["command", "command", (r) => short(r.command, 70)],
    ["machine", "machine"], ["exit", "exit_code"],
    ["value", "value", (r) => (r.value === null ? "" : short(JSON.stringify(r.value), 30))],
    ["submitted", "submitted", (r) => when(r.submitted)], ["took", "duration", (r) => took(r.started, r.ended)],
  ], "jobs") : h("p", { class: "dim" }, "no jobs"));
  refreshSoon = jobs;
}

async function job(id) {
  const j = await api("GET", `/api/jobs/${encodeURIComponent(id)}`);
  const [out, err] = await Promise.all(["stdout", "stderr"].map((s) =>
    api("GET", `/api/jobs/${encodeURIComponent(id)}/log?stream=${s}`, undefined, true).then((r) => r.text())));
  const again = new URLSearchParams({ command: j.command });
  if (j.target.startsWith("machine:")) again.set("on", j.target.slice(8));
  if (j.target.startsWith("label:")) again.set("label", j.target.slice(6));
  show(h("h1", {}, `Job ${j.id} `, state(j.state)),
    h("dl", {}, ["command", "target", "machine", "exit_code", "reason", "attempt", "batch"].map((k) =>
      [h("dt", {}, k), h("dd", {}, k === "batch" ? h("a", { href: `#/jobs?batch=${j.batch}` }, j.batch) : j[k] ?? "")]),
    h("dt", {}, "submitted"), h("dd", {}, when(j.submitted)), h("dt", {}, "took"), h("dd", {}, took(j.started, j.ended)),
    j.value !== null ? [h("dt", {}, "value"), h("dd", { id: "value" }, JSON.stringify(j.value))] : []),
    h("p", {},
      FINAL.has(j.state) ? null : h("button", { onclick: async () => { await api("POST", `/api/jobs/${j.id}/cancel`); route(); } }, "Cancel"),
      " ", j.kind === "job" ? h("a", { href: `#/submit?${again}`, id: "resubmit" }, "Edit and resubmit") : null),
    h("h2", {}, "stdout"), h("pre", { id: "stdout" }, out), h("h2", {}, "stderr"), h("pre", { id: "stderr" }, err));
  refreshSoon = FINAL.has(j.state) ? null : () => job(id);
}

// -- submit ------------------------------------------------------------------------------
function submit() {
  const p = params();
  const out = h("div");
  const send = (kind) => async (ev) => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(ev.target));
    try {
      if (kind === "job") {
        const body = { command: f.command, wait: 0 };
        if (f.where === "on") body.on = f.target; else if (f.where === "label") body.label = f.target;
        else if (f.where === "all") body.all = true;
        const r = await api("POST", "/api/jobs", body);
        location.hash = r.jobs.length === 1 ? `#/job/${r.jobs[0].id}` : `#/jobs?batch=${r.batch}`;
      } else if (kind === "map") {
        const args = f.args.split("\n").map((a) => a.trim()).filter(Boolean);
        const r = await api("POST", "/api/maps", { template: f.template, args, reduce: f.reduce });
        location.hash = `#/job/${r.reduce.id}`;
      } else {
        const tasks = {};
        for (const line of f.tasks.split("\n")) {
          const at = line.indexOf(":");
          if (at > 0) tasks[line.slice(0, at).trim()] = line.slice(at + 1).trim();
        }
        const r = await api("POST", "/api/workflows", { expr: f.expr, tasks });
        location.hash = `#/workflow/${r.workflow}`;
      }
    } catch (e) { if (e instanceof Unauthorized) return login(); out.replaceChildren(failure(e)); }
  };
  const where = p.get("on") ? "on" : p.get("label") ? "label" : "any";
  show(h("h1", {}, "Submit"), out,
    h("h2", {}, "A command"),
    h("form", { class: "bar", id: "submit-job", onsubmit: send("job") },
      h("label", {}, "command", h("input", { name: "command", size: 60, required: true, value: p.get("command") || "" })),
      h("label", {}, "where", h("select", { name: "where" }, ["any", "on", "label", "all"].map((w) =>
        h("option", { value: w, selected: w === where }, w === "on" ? "on machines" : w === "label" ? "with label" : w)))),
      h("label", {}, "machines or label", h("input", { name: "target", value: p.get("on") || p.get("label") || "" })),
      h("button", { type: "submit" }, "Submit")),
    h("h2", {}, "A map with a reduce"),
    h("form", { class: "bar", id: "submit-map", onsubmit: send("map") },
      h("label", {}, "template ({} is the argument)", h("input", { name: "template", size: 40, required: true })),
      h("label", {}, "arguments, one per line", h("textarea", { name: "args", required: true })),
      h("label", {}, "reduce", h("select", { name: "reduce" }, ["sum", "concat", "lines", "json", "min", "max", "add"].map((r) => h("option", {}, r)))),
      h("button", { type: "submit" }, "Run")),
    h("h2", {}, "A workflow"),
    h("form", { class: "bar", id: "submit-workflow", onsubmit: send("workflow") },
      h("label", {}, "expression", h("input", { name: "expr", size: 40, required: true, placeholder: "(a | b); a + b",
        value: p.get("expr") || "" })),
      h("label", {}, "tasks, one per line: name: command", h("textarea", { name: "tasks", placeholder: "a: echo 1\nb: echo 2",
        value: p.get("tasks") || "" })),
      h("button", { type: "submit" }, "Run")));
  refreshSoon = null;
}

// -- workflows ---------------------------------------------------------------------------
async function workflows() {
  const rows = await api("GET", "/api/workflows?last=100");
  show(h("h1", {}, "Workflows"), rows.length ? table(rows.reverse(), [
    ["workflow", "workflow", (r) => h("a", { href: `#/workflow/${r.workflow}` }, r.workflow)],
    ["state", "state", (r) => state(r.state)], ["steps", "succeeded", (r) => `${r.succeeded}/${r.steps}`],
    ["created", "created", (r) => when(r.created)], ["expression", "expr"],
  ], "workflows") : h("p", { class: "dim" }, "no workflows yet"));
  refreshSoon = workflows;
}

async function workflow(id) {
  const w = await api("GET", `/api/workflows/${encodeURIComponent(id)}`);
  const steps = Object.fromEntries(w.steps.map((s) => [s.name, s]));
  const seen = new Set();
  const node = (n) => {
    if (n.kind === "seq" || n.kind === "par") {
      return h("li", {}, h("span", { class: "dim" }, n.kind === "seq" ? "in sequence (;)" : "in parallel (|)"),
        h("ul", { class: "tree" }, n.items.map(node)));
    }
    const s = steps[n.step];
    const again = seen.has(n.step);
    seen.add(n.step);
    const editable = !again && n.kind === "task" && w.state === "suspended" && s.state !== "succeeded";
    const line = h("span", { class: "step", "data-step": n.step }, h("strong", {}, n.kind === "sum" ? `+ ${n.step}` : n.step), " ",
      again ? h("span", { class: "dim" }, "(the run above)") : [s.skipped ? state("skipped", "succeeded") : state(s.state), " ",
        s.machine ? `on ${s.machine} ` : "", took(s.started, s.ended), " ",
        s.skipped ? h("span", { class: "dim reason" }, short(s.reason.replace(/^skipped: /, ""), 80)) : "",
        s.result !== null && s.state === "succeeded" && !s.skipped ? `→ ${short(JSON.stringify(s.result), 40)}` : "",
        s.state !== "succeeded" && s.reason ? h("span", { class: "dim reason" }, " ", short(s.reason, 80)) : "",
        s.edits && s.edits.length ? h("span", { class: "dim" }, ` (edited ${s.edits.length}×)`) : "",
        s.job ? [" ", h("a", { href: `#/job/${s.job}` }, "job")] : "",
        editable ? [" ", h("button", { class: "plain edit", onclick: () => editStep(w, s) }, "Edit")] : ""]);
    return h("li", {}, line, n.kind === "sum" ? h("ul", { class: "tree" }, n.items.map(node)) : null);
  };
  const act = (what) => async () => { await api("POST", `/api/workflows/${w.workflow}/${what}`, what === "resume" ? {} : undefined); route(); };
  const tasks = w.steps.filter((s) => s.kind === "task" && s.command).map((s) => `${s.name}: ${s.command}`).join("\n");
  const again = new URLSearchParams({ expr: w.expr, tasks });
  show(h("h1", {}, `Workflow ${w.workflow} `, state(w.state)), h("p", {}, h("code", {}, w.expr), " ",
    h("a", { href: `#/submit?${again}`, id: "rerun" }, "Edit and run again")),
    h("ul", { class: "tree", id: "tree" }, node(w.tree)),
    w.state === "succeeded" ? h("p", {}, "value: ", h("code", { id: "value" }, JSON.stringify(w.value))) : null,
    h("p", {}, w.state === "suspended" ? h("button", { onclick: act("resume") }, "Resume") : null, " ",
      w.state === "running" || w.state === "failing" ? h("button", { class: "plain", onclick: act("cancel") }, "Cancel") : null));
  refreshSoon = w.state === "succeeded" ? null : () => workflow(id);
}

// A step of a suspended workflow changed for its next run (PATCH, as `cmq edit`), then resumed.
function editStep(w, s) {
  const out = h("div");
  const send = async (ev) => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(ev.target));
    const body = {};
    if (f.command && f.command !== s.command) body.command = f.command;
    if (f.where === "on" && f.target) body.on = f.target;
    if (f.where === "label" && f.target) body.label = f.target;
    if (f.timeout) body.timeout = Number(f.timeout);
    try {
      await api("PATCH", `/api/workflows/${w.workflow}/steps/${encodeURIComponent(s.name)}`, body);
      if (ev.submitter && ev.submitter.name === "resume") await api("POST", `/api/workflows/${w.workflow}/resume`, {});
      route();
    } catch (e) { if (e instanceof Unauthorized) return login(); out.replaceChildren(failure(e)); }
  };
  show(h("h1", {}, `Workflow ${w.workflow}: edit step ${s.name}`),
    h("p", { class: "dim" }, "The job that ran keeps the version it ran; the next run of the step runs this one."), out,
    h("form", { class: "bar", id: "edit-step", onsubmit: send },
      h("label", {}, "command", h("input", { name: "command", size: 60, required: true, value: s.command || "" })),
      h("label", {}, "where", h("select", { name: "where" }, ["as before", "on", "label"].map((x) =>
        h("option", { value: x }, x === "on" ? "on machine" : x === "label" ? "with label" : x)))),
      h("label", {}, "machine or label", h("input", { name: "target" })),
      h("label", {}, "timeout (s)", h("input", { name: "timeout", type: "number", min: "1" })),
      h("button", { type: "submit", name: "save" }, "Save"),
      h("button", { type: "submit", name: "resume" }, "Save and resume"),
      h("a", { href: `#/workflow/${w.workflow}` }, "Back")));
  refreshSoon = null;
}

// -- machines ----------------------------------------------------------------------------
async function machines() {
  const t = await api("GET", "/api/top");
  show(h("h1", {}, "Machines"), table(t.machines, [
    ["machine", "machine"], ["worker", "state", (r) => state(r.state)], ["slots", "slots"],
    ["used", "used"], ["free", "free"], ["queued", "queued"], ["labels", "labels", (r) => r.labels.join(", ")],
    ["reason", "reason"],
  ], "machines"),
  h("h2", {}, "Queues"), table(t.queues, [["queue", "queue"], ["waiting", "waiting"]], "queues"),
  h("h2", {}, "Running now"), t.running.length ? table(t.running, [
    ["job", "job", (r) => h("a", { href: `#/job/${r.job}` }, r.job)], ["machine", "machine"],
    ["for (s)", "for"], ["command", "command"]], "running") : h("p", { class: "dim" }, "nothing runs"));
  refreshSoon = machines;
}

// -- files (the virtual directory) -------------------------------------------------------
async function files() {
  const path = params().get("path") || "/";
  const [listing, services] = await Promise.all([api("GET", `/api/vdir/ls?path=${encodeURIComponent(path)}`),
    api("GET", "/api/storage")]);
  const names = services.map((s) => s.name);
  const url = (p) => `/api/vdir/files/${p.split("/").filter(Boolean).map(encodeURIComponent).join("/")}`;
  const crumbs = [h("a", { href: "#/files?path=/" }, "/")];
  let at = "";
  for (const part of path.split("/").filter(Boolean)) {
    at += `/${part}`;
    crumbs.push(h("a", { href: `#/files?path=${encodeURIComponent(at)}` }, part), "/");
  }
  const err = h("div");
  const guard = (fn) => async (...a) => { try { await fn(...a); files(); } catch (e) { err.replaceChildren(failure(e)); } };
  const fileInput = h("input", { type: "file", name: "file", required: true });
  const upload = h("form", {
    class: "bar", id: "upload", onsubmit: (ev) => {
      ev.preventDefault();
      const f = fileInput.files[0];
      const service = new FormData(ev.target).get("service");
      guard(() => api("PUT", `${url(`${path}/${f.name}`)}?service=${encodeURIComponent(service)}`, f))();
    },
  }, h("label", {}, "upload a file here", fileInput),
  h("label", {}, "to service", h("select", { name: "service" }, names.map((n) => h("option", {}, n)))),
  h("button", { type: "submit" }, "Upload"));
  const mkdir = h("form", {
    class: "bar", onsubmit: (ev) => {
      ev.preventDefault();
      const name = new FormData(ev.target).get("name");
      guard(() => api("POST", "/api/vdir/dirs", { path: `${path.replace(/\/$/, "")}/${name}` }))();
    },
  }, h("label", {}, "new directory", h("input", { name: "name", required: true })), h("button", { type: "submit", class: "plain" }, "Make"));
  const rows = [
    ...listing.dirs.map((d) => ({ name: d.split("/").pop() + "/", path: d, dir: true })),
    ...listing.files.map((f) => ({ ...f, name: f.path.split("/").pop() })),
  ];
  show(h("h1", {}, "Files ", h("span", { class: "dim", id: "crumbs" }, crumbs)), err, upload, mkdir,
    rows.length ? table(rows, [
      ["name", "name", (r) => (r.dir ? h("a", { href: `#/files?path=${encodeURIComponent(r.path)}` }, r.name)
        : h("a", { href: url(r.path), download: r.name }, r.name))],
      ["size", "size"], ["modified", "mtime", (r) => when(r.mtime)],
      ["replicas", "replicas", (r) => (r.dir ? "" : r.replicas.map((x) => x.service).join(", "))],
      ["preferred", "preferred", (r) => (r.dir ? "" : h("select", {
        "aria-label": `preferred copy of ${r.name}`,
        onchange: (ev) => guard(() => api("POST", `/api/vdir/prefer/${r.path.slice(1)}`, { service: ev.target.value }))(),
      }, r.replicas.map((x) => h("option", { selected: x.service === r.preferred }, x.service))))],
      ["copy to", "sha256", (r) => (r.dir ? "" : names.filter((n) => !r.replicas.some((x) => x.service === n)).map((n) =>
        h("button", { class: "plain", onclick: guard(() => api("POST", `/api/vdir/replicate/${r.path.slice(1)}`, { services: [n] })) }, n)))],
    ], "files") : h("p", { class: "dim" }, "empty"));
  refreshSoon = null;
}

// -- clouds ------------------------------------------------------------------------------
async function clouds() {
  const list = await api("GET", "/api/clouds");
  const err = h("div", { id: "cloud-error" });
  const parts = [h("h1", {}, "Clouds"), err];
  for (const c of list) {
    let vms = [];
    try { vms = await api("GET", `/api/clouds/${encodeURIComponent(c.name)}/vms`); }
    catch (e) { parts.push(h("h2", {}, `${c.name} (${c.type})`), failure(e)); continue; }
    const act = (vm, action) => async () => {
      try {
        const r = await api("POST", `/api/clouds/${encodeURIComponent(c.name)}/actions`, { action, names: vm, wait: 120 });
        const bad = r.jobs.find((j) => j.state !== "succeeded");
        if (bad) throw new Error(`${action} ${vm}: ${bad.state} ${bad.reason || ""}`);
        clouds();
      } catch (e) { err.replaceChildren(failure(e)); }
    };
    parts.push(h("h2", {}, `${c.name} (${c.type})`), table(vms, [
      ["VM", "name"], ["state", "state", (r) => state(r.state, "vm")], ["ssh", "ssh"],
      ["actions", "id", (r) => ["start", "stop", "suspend", "resume", "reboot", "delete"].map((a) =>
        h("button", { class: "plain", "data-action": a, onclick: act(r.name, a) }, a))],
    ], `vms-${c.name}`));
  }
  show(...parts);
  refreshSoon = null;
}

// -- routing and live updates ------------------------------------------------------------
const PAGES = { jobs, job, submit, workflows, workflow, machines, files, clouds };

async function route() {
  const [path] = location.hash.replace(/^#\/?/, "").split("?");
  const [page, arg] = path.split("/");
  const fn = PAGES[page] || jobs;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("here", a.getAttribute("href") === `#/${page || "jobs"}`);
  try {
    loads += 1;
    loadStarted = Date.now();
    await fn(arg && decodeURIComponent(arg));
    document.getElementById("logout").hidden = false;
    listen();
    afterLoad();
  } catch (e) {
    if (e instanceof Overtaken) return;
    if (e instanceof Unauthorized) return login();
    show(failure(e));
  }
}

let events = null;
let pending = null;
let lastEvent = 0;               // when the last job event came (ms)
let loadStarted = 0;             // when the page on screen started reading what it shows (ms)

// A form the user has changed is theirs until they send it or leave the page: a refresh
// would put back what the page had shown.
for (const kind of ["input", "change"]) {
  main.addEventListener(kind, (ev) => ev.target.closest?.("form")?.classList.add("edited"));
}

// Refresh the page on screen soon (once for a burst of events), unless the user is typing
// or has changed a form of it.
function soon() {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    if (!refreshSoon || document.activeElement?.closest("form") || main.querySelector("form.edited")) return;
    const fn = refreshSoon;
    loads += 1;
    loadStarted = Date.now();
    try { await fn(); afterLoad(); } catch (e) { if (e instanceof Unauthorized) login(); }
  }, 300);
}

// An event that came while the page was reading may not be in what it shows: read again.
// So may one that came just before: the history records a job a moment after its event
// (and a workflow's state after its last step's), so the page reads again while events
// are recent, and the last of a burst is never missed.
const SETTLE_MS = 3000;
function afterLoad() { if (lastEvent >= loadStarted || Date.now() - lastEvent < SETTLE_MS) soon(); }

function listen() {
  if (events) return;
  events = new EventSource("/api/events");
  const live = document.getElementById("live");
  events.onopen = () => { live.textContent = "● live"; };
  events.onerror = () => { live.textContent = "○ reconnecting"; };
  events.addEventListener("job", () => { lastEvent = Date.now(); soon(); });
}

document.getElementById("logout").addEventListener("click", async () => {
  await api("POST", "/api/logout").catch(() => null);
  if (events) { events.close(); events = null; }
  login();
});
window.addEventListener("hashchange", route);
route();
