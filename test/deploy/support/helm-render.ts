import { Ajv } from "ajv";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";

/*
 * A renderer for the part of Helm's template language (Go text/template plus the Sprig and Helm
 * functions) that the kvwarden chart uses, so the tests can render the chart with chosen values and
 * check the objects that come out, without a Helm binary (none is installable here). It follows Go's
 * semantics where a chart can trip over them: `{{-`/`-}}` trimming, values numbers being float64
 * (printed as Go prints floats, so `1000000` comes out `1e+06` unless piped through `int`, and
 * `printf "%d"` of a float is an error text), a field of a missing value being an error, and
 * `required`/`fail` failing the render. Anything outside that subset throws instead of guessing.
 */

type Value = unknown;
type Scope = Map<string, Value>[];

interface Text {
  kind: "text";
  text: string;
}
interface Action {
  kind: "action";
  pipe: Pipeline;
}
interface Branch {
  kind: "if" | "with" | "range";
  pipe: Pipeline;
  body: Node[];
  otherwise: Node[];
}
type Node = Text | Action | Branch;

interface Pipeline {
  declare: string[];
  commands: Operand[][];
}
type Operand =
  | { kind: "literal"; value: Value }
  | { kind: "field"; path: string[] }
  | { kind: "variable"; name: string; path: string[] }
  | { kind: "function"; name: string }
  | { kind: "group"; pipe: Pipeline; path: string[] };

/** A Go integer (from `int`, `len` or an integer constant), as opposed to a float64 from values. */
type GoInt = bigint;

export class RenderError extends Error {}

// ---------------------------------------------------------------------------------------------
// Lexing: text and actions, with trim markers applied and comments dropped.

interface RawAction {
  body: string;
  at: number;
}

function lex(source: string, name: string): (string | RawAction)[] {
  const items: (string | RawAction)[] = [];
  let text = "";
  let trimNext = false;
  let i = 0;
  const pushText = (value: string) => {
    text += trimNext ? value.replace(/^\s+/, "") : value;
    trimNext = false;
  };
  while (i < source.length) {
    const open = source.indexOf("{{", i);
    if (open < 0) {
      pushText(source.slice(i));
      break;
    }
    pushText(source.slice(i, open));
    let start = open + 2;
    if (/^-\s/.test(source.slice(start, start + 2))) {
      text = text.replace(/\s+$/, "");
      start += 2;
    }
    let end: number;
    let body: string | undefined;
    if (source.startsWith("/*", start)) {
      const close = source.indexOf("*/", start + 2);
      if (close < 0) throw new RenderError(`${name}: unclosed comment`);
      const rest = /^(\s-)?\}\}/.exec(source.slice(close + 2));
      if (!rest) throw new RenderError(`${name}: comment ends without }}`);
      end = close + 2 + rest[0].length;
      trimNext = rest[1] !== undefined;
    } else {
      let j = start;
      for (;;) {
        if (j >= source.length) throw new RenderError(`${name}: unclosed action`);
        const c = source[j];
        if (c === '"') {
          j++;
          while (source[j] !== '"') {
            if (j >= source.length || source[j] === "\n") throw new RenderError(`${name}: unterminated string`);
            j += source[j] === "\\" ? 2 : 1;
          }
          j++;
        } else if (c === "`") {
          j = source.indexOf("`", j + 1) + 1;
          if (j === 0) throw new RenderError(`${name}: unterminated raw string`);
        } else if (source.startsWith("}}", j)) break;
        else j++;
      }
      body = source.slice(start, j);
      end = j + 2;
      if (/\s-$/.test(body)) {
        body = body.slice(0, -2);
        trimNext = true;
      }
    }
    if (body !== undefined) {
      items.push(text);
      text = "";
      items.push({ body: body.trim(), at: open });
    }
    i = end;
  }
  items.push(text);
  return items;
}

// ---------------------------------------------------------------------------------------------
// Parsing actions.

const TOKEN = /\s*(?:("(?:[^"\\]|\\.)*")|(`[^`]*`)|(:=|=|\||\(|\)|,)|(\$[A-Za-z0-9_]*)|((?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z0-9_]*))/y;

function tokenize(body: string, where: string): string[] {
  const tokens: string[] = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < body.length) {
    const start = TOKEN.lastIndex;
    const match = TOKEN.exec(body);
    if (!match || match[0].length === 0) {
      if (/^\s*$/.test(body.slice(start))) break;
      throw new RenderError(`${where}: cannot read '${body.slice(start)}'`);
    }
    // A field right after a variable or ")" (no space between) is a field of that value.
    const token = match[0].trim();
    const attached = token.startsWith(".") && token !== "." && match[0] === token && /^(\$|\))/.test(tokens.at(-1) ?? "");
    if (attached) tokens[tokens.length - 1] += token;
    else tokens.push(token);
  }
  return tokens;
}

function fieldPath(token: string): string[] {
  return token === "." ? [] : token.slice(1).split(".");
}

function parsePipeline(tokens: string[], where: string): Pipeline {
  let position = 0;
  const declare: string[] = [];
  const assign = tokens.indexOf(":=");
  if (assign >= 0 && tokens.slice(0, assign).every((t) => t.startsWith("$") || t === ",")) {
    for (const t of tokens.slice(0, assign)) if (t !== ",") declare.push(t);
    position = assign + 1;
  }
  const commands: Operand[][] = [[]];
  const operand = (): Operand => {
    const t = tokens[position++];
    if (t === "(") {
      let depth = 1;
      const inner: string[] = [];
      while (position < tokens.length) {
        const u = tokens[position++];
        if (u === "(") depth++;
        const closes = u === ")" || u.startsWith(").");
        if (closes && --depth === 0) return { kind: "group", pipe: parsePipeline(inner, where), path: u === ")" ? [] : fieldPath(u.slice(1)) };
        inner.push(u);
      }
      throw new RenderError(`${where}: unbalanced parentheses`);
    }
    if (t.startsWith('"')) return { kind: "literal", value: JSON.parse(t) };
    if (t.startsWith("`")) return { kind: "literal", value: t.slice(1, -1) };
    if (t.startsWith("$")) {
      const [name, ...path] = t.split(".");
      return { kind: "variable", name, path };
    }
    if (t.startsWith(".")) return { kind: "field", path: fieldPath(t) };
    if (/^-?\d/.test(t)) return { kind: "literal", value: /^-?\d+$/.test(t) ? BigInt(t) : Number(t) };
    if (t === "true" || t === "false") return { kind: "literal", value: t === "true" };
    if (t === "nil") return { kind: "literal", value: null };
    if (/^[A-Za-z_]/.test(t)) return { kind: "function", name: t };
    throw new RenderError(`${where}: unexpected '${t}'`);
  };
  while (position < tokens.length) {
    if (tokens[position] === "|") {
      position++;
      commands.push([]);
      continue;
    }
    commands.at(-1)!.push(operand());
  }
  if (commands.some((c) => c.length === 0)) throw new RenderError(`${where}: empty command in pipeline`);
  return { declare, commands };
}

function parseTemplate(source: string, name: string, defines: Map<string, Node[]>): Node[] {
  const items = lex(source, name);
  let index = 0;
  const line = (at: number) => `${name}:${source.slice(0, at).split("\n").length}`;
  // Parses nodes until an {{ end }} or {{ else ... }}, which it returns (undefined at the end of input).
  const block = (nodes: Node[]): { word: string; rest: string[]; at: number } | undefined => {
    while (index < items.length) {
      const item = items[index++];
      if (typeof item === "string") {
        if (item !== "") nodes.push({ kind: "text", text: item });
        continue;
      }
      const where = line(item.at);
      const tokens = tokenize(item.body, where);
      const [word, ...rest] = tokens;
      if (word === "end" || word === "else") return { word, rest, at: item.at };
      if (word === "if" || word === "with" || word === "range") nodes.push(branch(word, rest, where));
      else if (word === "define") {
        const body: Node[] = [];
        const stop = block(body);
        if (stop?.word !== "end") throw new RenderError(`${where}: define without end`);
        defines.set(JSON.parse(rest[0]), body);
      } else if (["template", "block", "break", "continue"].includes(word)) throw new RenderError(`${where}: '${word}' is not supported here`);
      else nodes.push({ kind: "action", pipe: parsePipeline(tokens, where) });
    }
    return undefined;
  };
  const branch = (kind: Branch["kind"], tokens: string[], where: string): Branch => {
    const node: Branch = { kind, pipe: parsePipeline(tokens, where), body: [], otherwise: [] };
    let stop = block(node.body);
    if (stop?.word === "else") {
      if (stop.rest.length > 0) {
        // else if / else with: a nested branch that shares this one's end.
        const [word, ...rest] = stop.rest;
        if (word !== "if" && word !== "with") throw new RenderError(`${where}: else ${word}`);
        node.otherwise.push(branch(word, rest, line(stop.at)));
        return node;
      }
      stop = block(node.otherwise);
    }
    if (stop?.word !== "end") throw new RenderError(`${where}: ${kind} without end`);
    return node;
  };
  const nodes: Node[] = [];
  const stop = block(nodes);
  if (stop) throw new RenderError(`${line(stop.at)}: unexpected ${stop.word}`);
  return nodes;
}

// ---------------------------------------------------------------------------------------------
// Values as Go sees them.

function isMap(value: Value): value is Record<string, Value> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Go template truth: false, 0, nil, and empty strings, lists and maps are false. */
export function truthy(value: Value): boolean {
  if (value === null || value === undefined || value === false || value === 0 || value === 0n || value === "") return false;
  if (Array.isArray(value)) return value.length > 0;
  if (isMap(value)) return Object.keys(value).length > 0;
  return true;
}

/** strconv.FormatFloat(f, 'g', -1, 64), which fmt's %v uses for a float64. */
export function goFloat(f: number): string {
  if (!Number.isFinite(f)) return Number.isNaN(f) ? "NaN" : f > 0 ? "+Inf" : "-Inf";
  if (f === 0) return "0";
  const [mantissa, exponent] = f.toExponential().split("e");
  const exp = Number(exponent);
  // Shortest formatting switches to an exponent outside [-4, 6): 1000000 prints as 1e+06.
  if (exp >= -4 && exp < 6) return String(f);
  return `${mantissa}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
}

/** fmt's %v. */
function show(value: Value): string {
  if (value === null || value === undefined) return "<nil>";
  if (typeof value === "string") return value;
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") return goFloat(value);
  if (typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return `[${value.map(show).join(" ")}]`;
  if (isMap(value)) return `map[${Object.keys(value).sort().map((k) => `${k}:${show(value[k])}`).join(" ")}]`;
  throw new RenderError(`cannot print ${typeof value}`);
}

function goType(value: Value): string {
  if (typeof value === "number") return "float64";
  if (typeof value === "bigint") return "int";
  if (typeof value === "boolean") return "bool";
  if (Array.isArray(value)) return "[]interface {}";
  if (isMap(value)) return "map[string]interface {}";
  return "<nil>";
}

function printf(format: string, args: Value[]): string {
  let next = 0;
  return format.replace(/%([%sdvq])/g, (_, verb: string) => {
    if (verb === "%") return "%";
    if (next >= args.length) return `%!${verb}(MISSING)`;
    const arg = args[next++];
    if (verb === "v") return show(arg);
    if (verb === "s") return typeof arg === "string" ? arg : `%!s(${goType(arg)}=${show(arg)})`;
    if (verb === "q") return typeof arg === "string" ? JSON.stringify(arg) : `%!q(${goType(arg)}=${show(arg)})`;
    return typeof arg === "bigint" ? arg.toString() : `%!d(${goType(arg)}=${show(arg)})`;
  });
}

/** Sprig's strval, what quote and friends turn a value into. */
function strval(value: Value): string {
  return typeof value === "string" ? value : show(value);
}

function toInt(value: Value): GoInt {
  if (typeof value === "bigint") return value;
  if (typeof value === "number") return BigInt(Math.trunc(value));
  if (typeof value === "string") return /^-?\d+$/.test(value.trim()) ? BigInt(value.trim()) : 0n;
  if (typeof value === "boolean") return value ? 1n : 0n;
  return 0n;
}

function count(value: Value): number {
  if (typeof value === "bigint") return Number(value);
  if (typeof value === "number" && Number.isInteger(value)) return value;
  throw new RenderError(`expected an integer, got ${goType(value)}`);
}

function text(value: Value, fn: string): string {
  if (typeof value !== "string") throw new RenderError(`${fn}: expected a string, got ${goType(value)}`);
  return value;
}

/** Helm's toYaml: the value as YAML (keys sorted), without the trailing newline. */
function toYaml(value: Value): string {
  if (value === null || value === undefined) return "null";
  const plain = JSON.parse(JSON.stringify(value, (_, v) => (typeof v === "bigint" ? Number(v) : v)));
  return stringify(plain, { sortMapEntries: true, lineWidth: 0 }).replace(/\n$/, "");
}

// ---------------------------------------------------------------------------------------------
// Executing.

interface Context {
  defines: Map<string, Node[]>;
  depth: number;
}

function lookup(value: Value, path: string[], where: string): Value {
  let node = value;
  for (const key of path) {
    if (node === null || node === undefined) throw new RenderError(`${where}: nil pointer evaluating interface {}.${key}`);
    if (!isMap(node)) throw new RenderError(`${where}: can't evaluate field ${key} in type ${goType(node)}`);
    node = Object.hasOwn(node, key) ? node[key] : undefined;
  }
  return node;
}

function variable(scope: Scope, name: string, where: string): Value {
  for (let i = scope.length - 1; i >= 0; i--) if (scope[i].has(name)) return scope[i].get(name);
  throw new RenderError(`${where}: undefined variable ${name}`);
}

function execute(nodes: Node[], dot: Value, scope: Scope, context: Context, where: string): string {
  let out = "";
  scope = [...scope, new Map()];
  for (const node of nodes) {
    if (node.kind === "text") out += node.text;
    else if (node.kind === "action") {
      const value = run(node.pipe, dot, scope, context, where);
      if (node.pipe.declare.length === 0) out += value === undefined || value === null ? "" : show(value);
    } else if (node.kind === "if") {
      out += truthy(run(node.pipe, dot, scope, context, where)) ? execute(node.body, dot, scope, context, where) : execute(node.otherwise, dot, scope, context, where);
    } else if (node.kind === "with") {
      const value = run(node.pipe, dot, scope, context, where);
      out += truthy(value) ? execute(node.body, value, scope, context, where) : execute(node.otherwise, dot, scope, context, where);
    } else {
      const value = run({ declare: [], commands: node.pipe.commands }, dot, scope, context, where);
      const entries: [Value, Value][] = Array.isArray(value)
        ? value.map((v, i) => [BigInt(i), v])
        : isMap(value)
          ? Object.keys(value).sort().map((k) => [k, value[k]])
          : value === null || value === undefined
            ? []
            : (() => {
                throw new RenderError(`${where}: range can't iterate over ${show(value)}`);
              })();
      if (entries.length === 0) out += execute(node.otherwise, dot, scope, context, where);
      for (const [key, element] of entries) {
        const inner = new Map<string, Value>();
        const names = node.pipe.declare;
        if (names.length === 1) inner.set(names[0], element);
        if (names.length === 2) inner.set(names[0], key).set(names[1], element);
        out += execute(node.body, element, [...scope, inner], context, where);
      }
    }
  }
  return out;
}

function run(pipe: Pipeline, dot: Value, scope: Scope, context: Context, where: string): Value {
  let value: Value;
  pipe.commands.forEach((command, i) => {
    value = call(command, i === 0 ? [] : [value], dot, scope, context, where);
  });
  if (pipe.declare.length === 1) scope.at(-1)!.set(pipe.declare[0], value);
  return value;
}

function call(command: Operand[], piped: Value[], dot: Value, scope: Scope, context: Context, where: string): Value {
  const [head, ...rest] = command;
  const evaluate = (operand: Operand): Value => {
    switch (operand.kind) {
      case "literal":
        return operand.value;
      case "field":
        return lookup(dot, operand.path, where);
      case "variable":
        return lookup(variable(scope, operand.name, where), operand.path, where);
      case "group":
        return lookup(run(operand.pipe, dot, scope, context, where), operand.path, where);
      case "function":
        return call([operand], [], dot, scope, context, where);
    }
  };
  if (head.kind === "function") {
    const args = [...rest.map(evaluate), ...piped];
    return invoke(head.name, args, dot, context, where);
  }
  if (head.kind === "field" && head.path.length > 0) {
    // A method call such as .Files.Get "path".
    const method = lookup(dot, head.path, where);
    if (typeof method === "function") return method(...rest.map(evaluate), ...piped);
  }
  if (rest.length > 0 || piped.length > 0) throw new RenderError(`${where}: can't give arguments to a non-function`);
  return evaluate(head);
}

function invoke(name: string, args: Value[], dot: Value, context: Context, where: string): Value {
  const arity = (n: number) => {
    if (args.length !== n) throw new RenderError(`${where}: ${name} takes ${n} arguments, got ${args.length}`);
  };
  switch (name) {
    case "include": {
      arity(2);
      const body = context.defines.get(text(args[0], name));
      if (!body) throw new RenderError(`${where}: no template "${args[0]}"`);
      if (context.depth > 100) throw new RenderError(`${where}: include nested too deep`);
      return execute(body, args[1], [new Map([["$", args[1]]])], { ...context, depth: context.depth + 1 }, `${where} > ${args[0]}`);
    }
    case "required":
      arity(2);
      if (args[1] === null || args[1] === undefined || args[1] === "") throw new RenderError(`execution error at (${where}): ${args[0]}`);
      return args[1];
    case "fail":
      arity(1);
      throw new RenderError(`execution error at (${where}): ${args[0]}`);
    case "default":
      if (args.length < 1 || args.length > 2) throw new RenderError(`${where}: default takes 1 or 2 arguments`);
      return args.length === 2 && truthy(args[1]) ? args[1] : args[0];
    case "empty":
      arity(1);
      return !truthy(args[0]);
    case "not":
      arity(1);
      return !truthy(args[0]);
    case "and":
      return args.find((a) => !truthy(a)) ?? args.at(-1);
    case "or":
      return args.find((a) => truthy(a)) ?? args.at(-1);
    case "eq":
    case "ne": {
      arity(2);
      if (typeof args[0] !== typeof args[1] && args[0] !== null && args[1] !== null) throw new RenderError(`${where}: incompatible types for comparison`);
      return (args[0] === args[1]) === (name === "eq");
    }
    case "quote":
      return args.filter((a) => a !== null && a !== undefined).map((a) => JSON.stringify(strval(a))).join(" ");
    case "toString":
      arity(1);
      return strval(args[0]);
    case "int":
      arity(1);
      return toInt(args[0]);
    case "printf":
      return printf(text(args[0], name), args.slice(1));
    case "trunc": {
      arity(2);
      const n = count(args[0]);
      const s = text(args[1], name);
      return n >= 0 ? s.slice(0, n) : s.slice(Math.max(0, s.length + n));
    }
    case "trimSuffix": {
      arity(2);
      const [suffix, s] = [text(args[0], name), text(args[1], name)];
      return suffix !== "" && s.endsWith(suffix) ? s.slice(0, -suffix.length) : s;
    }
    case "hasPrefix":
      arity(2);
      return text(args[1], name).startsWith(text(args[0], name));
    case "contains":
      arity(2);
      return text(args[1], name).includes(text(args[0], name));
    case "replace":
      arity(3);
      return text(args[2], name).split(text(args[0], name)).join(text(args[1], name));
    case "splitList":
      arity(2);
      return text(args[1], name).split(text(args[0], name));
    case "last": {
      arity(1);
      if (!Array.isArray(args[0])) throw new RenderError(`${where}: last of ${goType(args[0])}`);
      return args[0].at(-1) ?? null;
    }
    case "indent":
    case "nindent": {
      arity(2);
      const pad = " ".repeat(count(args[0]));
      const indented = pad + strval(args[1]).replaceAll("\n", `\n${pad}`);
      return name === "nindent" ? `\n${indented}` : indented;
    }
    case "toYaml":
      arity(1);
      return toYaml(args[0]);
    default:
      throw new RenderError(`${where}: function "${name}" not defined (in this renderer)`);
  }
}

// ---------------------------------------------------------------------------------------------
// Charts.

/** Helm's coalescing of user values over the chart's: maps merge, anything else replaces, null deletes. */
export function mergeValues(base: Value, override: Value): Value {
  if (!isMap(base) || !isMap(override)) return override;
  const merged: Record<string, Value> = { ...base };
  for (const [key, value] of Object.entries(override)) {
    if (value === null) delete merged[key];
    else merged[key] = key in base ? mergeValues(base[key], value) : value;
  }
  return merged;
}

/** Renders one template source with the given root (for testing the renderer itself). */
export function renderString(source: string, root: Value, helpers = ""): string {
  const defines = new Map<string, Node[]>();
  parseTemplate(helpers, "helpers", defines);
  const nodes = parseTemplate(source, "template", defines);
  return execute(nodes, root, [new Map([["$", root]])], { defines, depth: 0 }, "template");
}

export interface RenderOptions {
  values?: Record<string, Value>;
  release?: { name?: string; namespace?: string };
  /** false: skip values.schema.json, as for the named templates used from a chart without it. */
  validate?: boolean;
}

/**
 * `helm template`, for this subset: merges `values` over the chart's values.yaml, validates them
 * against values.schema.json (as Helm does before rendering), and renders every template whose name
 * does not start with "_". Returns the output by template name.
 */
export function renderChart(chartDir: string, options: RenderOptions = {}): Record<string, string> {
  const read = (path: string) => readFileSync(join(chartDir, path), "utf8");
  const values = mergeValues(parse(read("values.yaml")), options.values ?? {});
  const schemaPath = join(chartDir, "values.schema.json");
  if (options.validate !== false && existsSync(schemaPath)) {
    const validate = new Ajv({ allErrors: true }).compile(JSON.parse(readFileSync(schemaPath, "utf8")));
    if (!validate(values)) throw new RenderError(`values don't meet the specifications of the schema: ${JSON.stringify(validate.errors)}`);
  }
  const meta = parse(read("Chart.yaml")) as Record<string, Value>;
  const capitalized = Object.fromEntries(Object.entries(meta).map(([k, v]) => [k[0].toUpperCase() + k.slice(1), v]));
  const root = {
    Values: values,
    Chart: capitalized,
    Release: { Name: options.release?.name ?? "story", Namespace: options.release?.namespace ?? "default", Service: "Helm", IsInstall: true, IsUpgrade: false, Revision: 1n },
    Files: {
      Get: (path: Value) => {
        const file = join(chartDir, text(path, "Files.Get"));
        return existsSync(file) ? readFileSync(file, "utf8") : "";
      },
    },
  };
  const defines = new Map<string, Node[]>();
  const names = readdirSync(join(chartDir, "templates")).sort();
  const parsed = new Map(names.map((name) => [name, parseTemplate(read(`templates/${name}`), `templates/${name}`, defines)]));
  const out: Record<string, string> = {};
  for (const [name, nodes] of parsed) {
    if (name.startsWith("_")) continue;
    out[name] = execute(nodes, root, [new Map([["$", root]])], { defines, depth: 0 }, `templates/${name}`);
  }
  return out;
}
