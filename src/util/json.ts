/**
 * A strict JSON parser for untrusted headers. Unlike JSON.parse it rejects duplicate keys
 * (JSON.parse silently keeps the last one), returns objects as Maps (an untrusted key such
 * as "__proto__" can never touch a prototype), keeps integers exact or refuses them, and
 * limits nesting depth.
 */
export type Json = null | boolean | number | string | Json[] | JsonObject;
export type JsonObject = Map<string, Json>;

export class JsonError extends Error {}

const MAX_DEPTH = 64;

export function parseStrictJson(text: string): Json {
  let i = 0;
  const fail = (why: string): never => {
    throw new JsonError(`${why} at character ${i}`);
  };
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else return;
    }
  };
  const str = (): string => {
    const start = i;
    i++;
    for (;;) {
      const c = text.charCodeAt(i);
      if (Number.isNaN(c)) fail('unterminated string');
      if (c < 0x20) fail('control character in string');
      if (c === 0x22) break;
      i += c === 0x5c ? 2 : 1;
    }
    i++;
    try {
      return JSON.parse(text.slice(start, i)) as string;
    } catch {
      return fail('invalid string escape');
    }
  };
  const value = (depth: number): Json => {
    if (depth > MAX_DEPTH) fail('nesting too deep');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const m: JsonObject = new Map();
      ws();
      if (text[i] === '}') {
        i++;
        return m;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a string key');
        const k = str();
        if (m.has(k)) fail(`duplicate key ${JSON.stringify(k)}`);
        ws();
        if (text[i] !== ':') fail('expected ":"');
        i++;
        m.set(k, value(depth + 1));
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return m; }
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const a: Json[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return a;
      }
      for (;;) {
        a.push(value(depth + 1));
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return a; }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') return str();
    const lit = /^(?:true|false|null)/.exec(text.slice(i, i + 5));
    if (lit) {
      i += lit[0].length;
      return lit[0] === 'null' ? null : lit[0] === 'true';
    }
    const num = /^-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!num) return fail('unexpected character');
    i += num[0].length;
    const n = Number(num[0]);
    if (!num[1] && !num[2] && !Number.isSafeInteger(n)) fail(`integer ${num[0]} is too large to represent exactly`);
    return n;
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail('trailing characters after the JSON value');
  return v;
}
