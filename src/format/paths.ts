/**
 * Tensor paths: a plain name, or a structured path of string and integer components
 * stored as 0x1E followed by a compact JSON array (docs/format.md §8).
 */
import { TensorizeError } from '../errors.js';

export type PathComponent = string | number;
export type TensorPath = readonly PathComponent[];

const RS = 0x1e;
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function isPlain(p: TensorPath): p is readonly [string] {
  return p.length === 1 && typeof p[0] === 'string';
}

/** Display form: the plain name, or the JSON array for structured paths. */
export function pathToString(p: TensorPath): string {
  return isPlain(p) ? p[0] : JSON.stringify(p);
}

/** JSON as Python's json.dumps(separators=(",", ":"), ensure_ascii=True) writes it. */
function pythonJson(p: TensorPath): string {
  return JSON.stringify(p).replace(/[\u007f-\uffff]/g, (c) =>
    c === '\u007f' ? c : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

export function encodePath(p: TensorPath): Buffer {
  if (p.length === 0) throw new TensorizeError('E_INPUT', 'a tensor path cannot be empty');
  for (const c of p) {
    if (typeof c === 'number' ? !Number.isSafeInteger(c) || c < 0 : typeof c !== 'string') {
      throw new TensorizeError('E_INPUT', `tensor path ${JSON.stringify(p)}: components must be strings or non-negative integers`);
    }
    // No UTF-8 form: written out it would become U+FFFD, and two names could become one.
    if (typeof c === 'string' && /\p{Cs}/u.test(c)) throw new TensorizeError('E_INPUT', `tensor name ${JSON.stringify(pathToString(p))} holds a lone UTF-16 surrogate, which has no UTF-8 form`);
  }
  if (isPlain(p)) {
    const s = p[0];
    if (s.length === 0) throw new TensorizeError('E_INPUT', 'a tensor name cannot be empty (tensorizer cannot read such files)');
    // A plain name starting with 0x1E would be misread as structured: store it as a one-element array.
    if (s.charCodeAt(0) !== RS) return Buffer.from(s, 'utf8');
  }
  return Buffer.concat([Buffer.of(RS), Buffer.from(pythonJson(p), 'utf8')]);
}

/**
 * Parse the JSON array of a structured path strictly: strings and non-negative integers
 * only (no floats, exponents, NaN, objects or nesting), as tensorizer's reader requires.
 */
function parseStructured(text: string): PathComponent[] {
  const out: PathComponent[] = [];
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t'.includes(text[i]!)) i++;
  };
  const fail = (why: string): never => {
    throw new TensorizeError('E_FORMAT', `structured tensor path ${JSON.stringify(text)}: ${why}`);
  };
  ws();
  if (text[i] !== '[') fail('must be a JSON array');
  i++;
  ws();
  if (text[i] === ']') fail('must not be empty');
  for (;;) {
    ws();
    if (text[i] === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (j >= text.length) fail('unterminated string');
      try {
        out.push(JSON.parse(text.slice(i, j + 1)) as string);
      } catch {
        fail('invalid string');
      }
      i = j + 1;
    } else {
      const m = /^(0|[1-9][0-9]*)(?![0-9.eE])/.exec(text.slice(i));
      if (!m) fail('components must be strings or non-negative integers');
      const n = Number(m![1]);
      if (!Number.isSafeInteger(n)) fail('integer component too large');
      out.push(n);
      i += m![1]!.length;
    }
    ws();
    if (text[i] === ',') {
      i++;
      continue;
    }
    if (text[i] === ']') {
      i++;
      break;
    }
    fail('expected "," or "]"');
  }
  ws();
  if (i !== text.length) fail('trailing characters after the array');
  return out;
}

export function decodePath(bytes: Uint8Array): TensorPath {
  if (bytes.length === 0) throw new TensorizeError('E_FORMAT', 'empty tensor name');
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new TensorizeError('E_FORMAT', `tensor name is not valid UTF-8 (${Buffer.from(bytes.subarray(0, 32)).toString('hex')}...)`);
  }
  if (bytes[0] !== RS) return [text];
  if (bytes.length < 3 || bytes[1] !== 0x5b || bytes[bytes.length - 1] !== 0x5d) {
    throw new TensorizeError('E_FORMAT', `structured tensor path ${JSON.stringify(text)} is not 0x1E followed by a JSON array`);
  }
  if (/[\r\n]/.test(text)) throw new TensorizeError('E_FORMAT', `structured tensor path ${JSON.stringify(text)} contains a raw line break`);
  return parseStructured(text.slice(1));
}

interface Node {
  leaf: boolean;
  kind?: 'string' | 'number';
  /** Made on the first child: most nodes are leaves (a model of 20,000 tensors, 20,000 leaves). */
  children?: Map<PathComponent, Node>;
}

/**
 * Rejects duplicate paths, a path that is both a leaf and a prefix of another, and levels
 * that mix string and integer keys, exactly the conflicts tensorizer refuses.
 */
export class PathRegistry {
  private readonly root: Node = { leaf: false };

  /** Returns an error message, or undefined when the path was added. */
  add(p: TensorPath): string | undefined {
    let node = this.root;
    for (let i = 0; i < p.length; i++) {
      const c = p[i]!;
      const kind = typeof c === 'number' ? 'number' : 'string';
      if (node.leaf) return `tensor path ${pathToString(p)} conflicts with ${pathToString(p.slice(0, i))}, which is a tensor`;
      if (node.kind !== undefined && node.kind !== kind) {
        return `tensor path ${pathToString(p)} mixes ${kind} and ${node.kind} keys at level ${i}`;
      }
      node.kind = kind;
      node.children ??= new Map();
      let next = node.children.get(c);
      if (!next) {
        next = { leaf: false };
        node.children.set(c, next);
      }
      node = next;
    }
    if (node.leaf) return `duplicate tensor name ${pathToString(p)}`;
    if (node.children && node.children.size > 0) return `tensor path ${pathToString(p)} is also the prefix of other tensors' paths`;
    node.leaf = true;
    return undefined;
  }
}
