// Completion from the tree format's JSON Schema (GET /v1/trees/schema), by where the
// cursor is in the YAML: the keys the schema allows at that place (a node's verbs, a
// menu's retries, the tree's timezone...), with their descriptions; and at a value, the
// schema's choices (enums, true/false), the tree's node ids where the schema wants a
// node id, and the uploaded recordings for play:. Indentation-based, so it keeps
// working while the text does not parse yet (a designer is in the middle of typing).

const NODE_ID = "^[A-Za-z_][A-Za-z0-9_.-]*$";
const KEY_LINE = /^(\s*)(-\s+)?("[^"]*"|'[^']*'|[^\s#:'"{}[\],-][^:#]*?)\s*:(\s|$)/;

function lineInfo(text) {
  if (!text.trim() || /^\s*#/.test(text)) return null;
  const dash = /^(\s*)-\s+/.exec(text);
  const m = KEY_LINE.exec(text);
  const indent = /^\s*/.exec(text)[0].length;
  return {
    indent,
    dashIndent: dash ? dash[1].length : null,
    keyIndent: m ? m[1].length + (m[2] ? m[2].length : 0) : (dash ? dash[0].length : indent),
    key: m ? m[3].replace(/^["']|["']$/g, "") : null,
  };
}

// The keys from the document's root to the mapping at `indent` above line `number`
// ("[]" for a list item), and the keys already present in that mapping.
export function yamlPath(doc, number, indent, inItem) {
  const path = inItem ? ["[]"] : [];
  let want = indent;
  let siblingsDone = inItem;
  const present = new Set();
  for (let n = number - 1; n >= 1 && want > 0; n--) {
    const info = lineInfo(doc.line(n).text);
    if (!info) continue;
    if (info.keyIndent === want && info.key && !siblingsDone) present.add(info.key);
    if (info.dashIndent !== null && info.keyIndent === want && info.dashIndent < want) {
      if (!siblingsDone && path[0] !== "[]") path.unshift("[]");
      siblingsDone = true;
      want = info.dashIndent;
      continue;
    }
    if (info.keyIndent < want && info.key) {
      siblingsDone = true;
      path.unshift(info.key);
      want = info.keyIndent;
      if (info.dashIndent !== null) { path.unshift("[]"); want = info.dashIndent; }
    } else if (info.indent < want) {
      siblingsDone = true;
      want = info.indent;
    }
  }
  if (!inItem) {
    for (let n = number + 1; n <= doc.lines; n++) {
      const info = lineInfo(doc.line(n).text);
      if (!info) continue;
      if (info.indent < indent) break;
      if (info.keyIndent === indent && info.key) present.add(info.key);
    }
  }
  return {path, present};
}

export class SchemaCompletion {
  constructor(schema) {
    this.schema = schema || {};
    this.audio = [];
  }

  deref(s) {
    let out = s;
    for (let i = 0; out && out.$ref && i < 20; i++) {
      const name = out.$ref.split("/").pop();
      out = (this.schema.$defs || {})[name];
    }
    return out;
  }

  // Every alternative of a schema (refs followed, anyOf/oneOf/allOf opened).
  expand(s, out = []) {
    s = this.deref(s);
    if (!s || typeof s !== "object") return out;
    const alts = [...(s.anyOf || []), ...(s.oneOf || []), ...(s.allOf || [])];
    if (alts.length) { for (const a of alts) this.expand(a, out); }
    if (!alts.length || s.properties || s.type) out.push(s);
    return out;
  }

  child(schemas, key) {
    const out = [];
    for (const s of schemas) {
      if (key === "[]") { if (s.items) this.expand(s.items, out); continue; }
      if (s.properties && key in s.properties) { this.expand(s.properties[key], out); continue; }
      let matched = false;
      for (const [pattern, sub] of Object.entries(s.patternProperties || {})) {
        if (new RegExp(pattern).test(key)) { this.expand(sub, out); matched = true; }
      }
      if (!matched && s.additionalProperties && typeof s.additionalProperties === "object") {
        this.expand(s.additionalProperties, out);
      }
    }
    return out;
  }

  at(path) {
    let schemas = this.expand(this.schema);
    for (const key of path) schemas = this.child(schemas, key);
    return schemas;
  }

  keys(path, present) {
    let schemas = this.at(path).filter((s) => s.properties);
    // A node that already has its verb: only that verb's fields.
    const fitting = schemas.filter((s) => [...present].every((k) => k in s.properties));
    if (present.size && fitting.length) schemas = fitting;
    const seen = new Map();
    for (const s of schemas) {
      for (const [k, sub] of Object.entries(s.properties)) {
        if (present.has(k) || seen.has(k)) continue;
        const d = this.deref(sub) || {};
        seen.set(k, {label: k, type: "property", apply: `${k}: `,
                     info: d.description || undefined, detail: d.title || undefined});
      }
    }
    return [...seen.values()];
  }

  values(path, key, nodeIds) {
    const schemas = this.child(this.at(path), key);
    const out = new Map();
    const add = (label, type) => { if (!out.has(label)) out.set(label, {label, type}); };
    for (const s of schemas) {
      for (const v of s.enum || []) add(String(v), "enum");
      if (s.const !== undefined) add(String(s.const), "enum");
      if (s.type === "boolean") { add("true", "keyword"); add("false", "keyword"); }
      if (s.type === "string" && s.pattern === NODE_ID) for (const id of nodeIds) add(id, "variable");
    }
    if (key === "play") for (const a of this.audio) add(a, "text");
    return [...out.values()];
  }
}

// The ids under the top-level `nodes:` mapping.
export function nodeIds(doc) {
  const ids = [];
  let inNodes = false;
  let indent = null;
  for (let n = 1; n <= doc.lines; n++) {
    const info = lineInfo(doc.line(n).text);
    if (!info) continue;
    if (info.indent === 0) { inNodes = info.key === "nodes"; indent = null; continue; }
    if (!inNodes || !info.key) continue;
    if (indent === null) indent = info.keyIndent;
    if (info.keyIndent === indent) ids.push(info.key);
  }
  return ids;
}

// The CodeMirror completion source.
export function schemaSource(completion) {
  return (ctx) => {
    const line = ctx.state.doc.lineAt(ctx.pos);
    const before = line.text.slice(0, ctx.pos - line.from);
    const value = /^(\s*)(-\s+)?("[^"]*"|'[^']*'|[^\s#:'"{}[\],-][^:#]*?)\s*:\s+([^\s#]*)$/.exec(before);
    if (value) {
      const indent = value[1].length + (value[2] ? value[2].length : 0);
      const {path} = yamlPath(ctx.state.doc, line.number, indent, Boolean(value[2]));
      const key = value[3].replace(/^["']|["']$/g, "");
      const options = completion.values(path, key, nodeIds(ctx.state.doc));
      if (!options.length) return null;
      return {from: ctx.pos - value[4].length, options, validFor: /^[\w./-]*$/};
    }
    const keyAt = /^(\s*)(-\s+)?([A-Za-z_]*)$/.exec(before);
    if (!keyAt || (!keyAt[3] && !ctx.explicit)) return null;
    const indent = keyAt[1].length + (keyAt[2] ? keyAt[2].length : 0);
    const {path, present} = yamlPath(ctx.state.doc, line.number, indent, Boolean(keyAt[2]));
    const options = completion.keys(path, present);
    if (!options.length) return null;
    return {from: ctx.pos - keyAt[3].length, options, validFor: /^\w*$/};
  };
}
