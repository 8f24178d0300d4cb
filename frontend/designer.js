// The dialogue designer's page (issue 17): a YAML editor with the validator's findings
// at their line and column, the graph beside it, a simulator with a keypad and the
// prompts as audio, the tree's cases, and versions. Every check is the server's own
// (/v1/trees/...), so the page and `autocall prompts` never disagree.
import {autocompletion} from "@codemirror/autocomplete";
import {defaultKeymap, history, historyKeymap} from "@codemirror/commands";
import {yaml} from "@codemirror/lang-yaml";
import {bracketMatching, indentOnInput} from "@codemirror/language";
import {linter, lintGutter, lintKeymap, forceLinting} from "@codemirror/lint";
import {EditorState, StateEffect} from "@codemirror/state";
import {EditorView, keymap, lineNumbers, highlightActiveLine} from "@codemirror/view";
import {SchemaCompletion, schemaSource} from "./complete.js";

const NEW_TREE = `name: my-tree
language: en
outcomes: [done]
start: hello
nodes:
  hello:
    say: "Hello, this is a test call."
    next: bye
  bye:
    hangup: done
`;

// Asks the validator again with the text unchanged (a recording a play: names arrived).
const recheck = StateEffect.define();

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

class Designer {
  constructor(root) {
    this.root = root;
    this.name = root.dataset.tree || "";
    this.csrf = root.dataset.csrf || "";
    this.inputs = [];
    this.version = null;
    this.lastSim = null;
    this.completion = new SchemaCompletion(null);
    this.status = root.querySelector("#status");
    this.cases = root.querySelector("#cases-text");
  }

  async api(method, path, body, as = "json") {
    const init = {method, credentials: "same-origin", headers: {"X-CSRF-Token": this.csrf}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const data = as === "json" ? await res.json().catch(() => ({})) : await res.text();
    if (!res.ok) {
      const detail = (data && data.detail) || res.statusText;
      throw new Error(`${res.status}: ${detail}`);
    }
    return data;
  }

  say(text, bad = false) {
    this.status.textContent = text;
    this.status.className = bad ? "status bad" : "status";
  }

  text() { return this.view.state.doc.toString(); }

  language() {
    const m = /^language:\s*["']?([A-Za-z-]+)/m.exec(this.text());
    return m ? m[1] : "en";
  }

  // The tree's zone: the simulator's clock is read in it, as the hours nodes read it.
  timezone() {
    const m = /^timezone:\s*["']?([A-Za-z0-9_/+-]+)/m.exec(this.text());
    return m ? m[1] : "UTC";
  }

  async loadAudio() {
    const files = await this.api("GET", "/v1/trees/audio").catch(() => []);
    this.completion.audio = files.map((f) => f.path);
  }

  async start() {
    const schema = await this.api("GET", "/v1/trees/schema").catch(() => null);
    this.completion = new SchemaCompletion(schema);
    await this.loadAudio();
    let text = NEW_TREE;
    if (this.name) {
      try {
        const versions = await this.api("GET", `/v1/trees/${this.name}/versions`);
        const latest = versions[versions.length - 1];
        const full = await this.api("GET", `/v1/trees/${this.name}/versions/${latest.version}`);
        text = full.yaml;
        this.version = latest.version;
        if (full.cases) this.cases.value = full.cases;
        this.say(`version ${latest.version}` + (latest.published_at ? " (published)" : ""));
      } catch (e) {
        this.say(`new tree ${this.name}`);
      }
    }
    if (!this.name) this.say("a new tree: name it and save a version");
    this.mount(text);
    this.wire();
  }

  mount(text) {
    const lint = linter((view) => this.lint(view), {
      delay: 400,
      needsRefresh: (u) => u.transactions.some((t) => t.effects.some((e) => e.is(recheck))),
    });
    const complete = autocompletion({override: [schemaSource(this.completion)]});
    this.view = new EditorView({
      parent: this.root.querySelector("#editor"),
      state: EditorState.create({
        doc: text,
        extensions: [
          lineNumbers(), history(), indentOnInput(), bracketMatching(), highlightActiveLine(),
          keymap.of([...defaultKeymap, ...historyKeymap, ...lintKeymap]), yaml(), lint,
          lintGutter(), complete, EditorView.cspNonce.of(this.root.dataset.nonce || ""),
          EditorView.updateListener.of((u) => { if (u.docChanged) this.dirty = true; }),
        ],
      }),
    });
  }

  async lint(view) {
    const text = view.state.doc.toString();
    let got;
    try {
      got = await this.api("POST", "/v1/trees/validate", {yaml: text, name: this.name || "tree"});
    } catch (e) {
      this.say(`validator unreachable: ${e.message}`, true);
      return [];
    }
    const doc = view.state.doc;
    const out = [];
    for (const f of got.findings) {
      const line = doc.line(Math.min(Math.max(f.line, 1), doc.lines));
      const from = Math.min(line.from + Math.max(f.column - 1, 0), line.to);
      let to = line.to > from ? line.to : from;
      if (f.replaces) {
        const at = line.text.indexOf(f.replaces, Math.max(f.column - 1, 0));
        if (at >= 0) to = line.from + at + f.replaces.length;
      }
      const d = {from, to, severity: f.severity === "error" ? "error" : "warning",
                 message: f.message, source: f.code};
      if (f.fix && f.replaces) {
        d.actions = [{name: `Use '${f.fix}'`, apply: (v) => {
          const start = line.from + line.text.indexOf(f.replaces, Math.max(f.column - 1, 0));
          v.dispatch({changes: {from: start, to: start + f.replaces.length, insert: f.fix}});
        }}];
      }
      out.push(d);
    }
    const summary = this.root.querySelector("#findings");
    summary.textContent = got.valid
      ? `valid · ${got.warnings} warning(s)` : `${got.errors} error(s) · ${got.warnings} warning(s)`;
    summary.className = got.valid ? "findings ok" : "findings bad";
    // A text that is not a tree yet keeps the last picture (and asks for none: the
    // graph would only answer 422).
    if (got.loads !== false) {
      this.drawGraph(text);
      this.sampleFields(got.contact_fields || []);
    }
    return out;
  }

  async drawGraph(text) {
    const box = this.root.querySelector("#graph");
    const res = await fetch("/v1/trees/graph", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": this.csrf},
      body: JSON.stringify({yaml: text, name: this.name || "tree"})});
    if (!res.ok) return;  // a tree that does not load keeps its last picture
    const svg = new DOMParser().parseFromString(await res.text(), "image/svg+xml");
    const node = svg.querySelector("svg");
    if (!node) return;
    for (const s of node.querySelectorAll("script")) s.remove();
    box.replaceChildren(document.importNode(node, true));
    for (const g of box.querySelectorAll("g.node")) {
      const title = g.querySelector("title");
      g.addEventListener("click", () => this.jumpTo(title ? title.textContent : ""));
    }
  }

  jumpTo(nodeId) {
    const doc = this.view.state.doc;
    const pattern = new RegExp(`^\\s+["']?${nodeId.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}["']?:`);
    for (let i = 1; i <= doc.lines; i++) {
      const line = doc.line(i);
      if (pattern.test(line.text)) {
        this.view.dispatch({selection: {anchor: line.from}, scrollIntoView: true});
        this.view.focus();
        this.say(`node ${nodeId} at line ${i}`);
        return;
      }
    }
  }

  // The sample contact: a line name= for each field the tree reads, typed values kept.
  sampleFields(names) {
    const box = this.root.querySelector("#sim-vars");
    const have = new Set(Object.keys(this.variables()));
    const missing = names.filter((n) => !have.has(n));
    if (!missing.length) return;
    const text = box.value.replace(/\s*$/, "");
    box.value = (text ? text + "\n" : "") + missing.map((n) => `${n}=`).join("\n");
  }

  variables() {
    const out = {};
    for (const line of this.root.querySelector("#sim-vars").value.split("\n")) {
      const at = line.indexOf("=");
      if (at > 0) out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    return out;
  }

  async simulate() {
    const clock = this.root.querySelector("#sim-clock").value;
    const body = {yaml: this.text(), name: this.name || "tree", inputs: this.inputs,
                  variables: this.variables()};
    if (clock) body.at = clock;  // no offset: the server reads it in the tree's zone
    let got;
    try {
      got = await this.api("POST", "/v1/trees/simulate", body);
    } catch (e) {
      this.say(`cannot simulate: ${e.message}`, true);
      return;
    }
    this.lastSim = got;
    const list = this.root.querySelector("#transcript");
    list.replaceChildren();
    const steps = got.transcript;
    const waiting = steps.length && steps[steps.length - 1].kind === "hangup"
      && steps[steps.length - 1].text.includes("no more input");
    for (const [i, s] of steps.entries()) {
      if (waiting && i === steps.length - 1) break;
      const row = el("li", {class: `step ${s.kind}`}, el("span", {class: "kind"}, s.kind),
                     " ", s.text);
      if (s.kind === "say") {
        const q = new URLSearchParams({text: s.text, lang: this.language()});
        row.append(el("audio", {controls: "", preload: "auto", src: `/v1/trees/speech?${q}`}));
      }
      list.append(row);
    }
    if (waiting) list.append(el("li", {class: "step waiting"}, "waiting for the caller…"));
    this.root.querySelector("#sim-zone").textContent = this.timezone();
    this.root.querySelector("#sim-path").textContent = got.path.join(" → ");
    this.root.querySelector("#sim-outcome").textContent =
      waiting ? "" : `outcome: ${got.outcome || "none"}`;
    this.root.querySelector("#sim-state").textContent = JSON.stringify(got.variables);
  }

  press(token) {
    this.inputs.push(token);
    this.simulate();
  }

  async runCases() {
    const box = this.root.querySelector("#case-results");
    box.replaceChildren();
    let got;
    try {
      got = await this.api("POST", "/v1/trees/cases",
                           {yaml: this.text(), name: this.name || "tree", cases: this.cases.value});
    } catch (e) {
      this.say(`cases: ${e.message}`, true);
      return;
    }
    for (const c of got) {
      const row = el("li", {class: c.passed ? "case pass" : "case fail"},
                     `${c.passed ? "PASS" : "FAIL"} ${c.name}`);
      for (const f of c.failures) row.append(el("div", {class: "failure"}, f));
      box.append(row);
    }
    const failed = got.filter((c) => !c.passed).length;
    this.say(failed ? `${failed} of ${got.length} case(s) failed` : `all ${got.length} case(s) pass`,
             failed > 0);
  }

  recordCase() {
    if (!this.lastSim) return;
    const sim = this.lastSim;
    let text = this.cases.value.trim() ? this.cases.value.replace(/\s*$/, "\n") : "cases:\n";
    const n = (text.match(/- name:/g) || []).length + 1;
    text += `  - name: recorded ${n}\n    input: ${JSON.stringify(this.inputs)}\n`;
    text += `    expect:\n      path: ${JSON.stringify(sim.path)}\n`;
    if (sim.outcome) text += `      outcome: ${JSON.stringify(sim.outcome)}\n`;
    this.cases.value = text;
    this.say(`case "recorded ${n}" added; save to keep it`);
  }

  async save() {
    const name = this.name || this.root.querySelector("#tree-name").value.trim();
    if (!name) { this.say("give the tree a name", true); return; }
    const comment = this.root.querySelector("#comment").value;
    try {
      const v = await this.api("POST", `/v1/trees/${encodeURIComponent(name)}/versions`,
                               {yaml: this.text(), comment, cases: this.cases.value || null});
      this.name = name;
      this.version = v.version;
      this.say(`saved version ${v.version}` + (v.errors ? ` (a draft: ${v.errors} error(s))` : ""),
               v.errors > 0);
    } catch (e) {
      this.say(`not saved: ${e.message}`, true);
    }
  }

  async publish() {
    if (!this.version) { this.say("save first", true); return; }
    try {
      const v = await this.api("POST", `/v1/trees/${this.name}/versions/${this.version}/publish`);
      this.say(`version ${v.version} published: campaigns may pin ${v.pin}`);
    } catch (e) {
      this.say(`not published: ${e.message}`, true);
    }
  }

  wire() {
    const on = (id, fn) => this.root.querySelector(id).addEventListener("click", fn);
    for (const key of this.root.querySelectorAll("#keypad button")) {
      key.addEventListener("click", () => this.press(key.dataset.key));
    }
    on("#say-btn", () => {
      const words = this.root.querySelector("#say-text");
      if (words.value.trim()) this.press(`say:${words.value.trim()}`);
      words.value = "";
    });
    on("#wait-btn", () => this.press("wait"));
    on("#hangup-btn", () => this.press("hangup"));
    on("#reset-btn", () => { this.inputs = []; this.simulate(); });
    on("#run-cases", () => this.runCases());
    on("#record-case", () => this.recordCase());
    on("#save-btn", () => this.save());
    on("#publish-btn", () => this.publish());
    // A recording uploaded in the audio panel is offered at play: at once.
    // and the validator looks again (a play: of a missing file may now be found).
    // (htmx:load fires on the panel htmx put in place of the old one.)
    document.body.addEventListener("htmx:load", async (e) => {
      if (!e.target || e.target.id !== "audio") return;
      await this.loadAudio();
      this.view.dispatch({effects: recheck.of(null)});
    });
    forceLinting(this.view);
    this.simulate();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("designer");
  if (root) new Designer(root).start();
});
