/**
 * Synthetic transformer-shaped models, written as safetensors, for the demo, benchmarks
 * and tests (no weights can be downloaded). Names and shapes follow a Llama-style decoder;
 * values are plausible bf16 numbers (small, normally distributed), streamed to disk in
 * chunks so any size can be made with little memory.
 */
import { open } from 'node:fs/promises';

export interface SyntheticSpec {
  name: string;
  shape: number[];
}

/** Tensor list for roughly `targetBytes` of bf16 weights. */
export function transformerSpec(targetBytes: number): { tensors: SyntheticSpec[]; hidden: number; layers: number } {
  const hidden = targetBytes >= 512 * 2 ** 20 ? 2048 : targetBytes >= 48 * 2 ** 20 ? 1024 : 256;
  const inter = Math.round((hidden * 2.75) / 64) * 64;
  const vocab = hidden >= 2048 ? 32000 : hidden >= 1024 ? 16000 : 4000;
  const perLayer = 2 * (4 * hidden * hidden + 3 * hidden * inter + 2 * hidden);
  const embed = 2 * (2 * vocab * hidden + hidden);
  const layers = Math.max(1, Math.round((targetBytes - embed) / perLayer));
  const tensors: SyntheticSpec[] = [{ name: 'model.embed_tokens.weight', shape: [vocab, hidden] }];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    tensors.push(
      { name: `${p}.input_layernorm.weight`, shape: [hidden] },
      { name: `${p}.self_attn.q_proj.weight`, shape: [hidden, hidden] },
      { name: `${p}.self_attn.k_proj.weight`, shape: [hidden, hidden] },
      { name: `${p}.self_attn.v_proj.weight`, shape: [hidden, hidden] },
      { name: `${p}.self_attn.o_proj.weight`, shape: [hidden, hidden] },
      { name: `${p}.post_attention_layernorm.weight`, shape: [hidden] },
      { name: `${p}.mlp.gate_proj.weight`, shape: [inter, hidden] },
      { name: `${p}.mlp.up_proj.weight`, shape: [inter, hidden] },
      { name: `${p}.mlp.down_proj.weight`, shape: [hidden, inter] },
    );
  }
  tensors.push({ name: 'model.norm.weight', shape: [hidden] }, { name: 'lm_head.weight', shape: [vocab, hidden] });
  return { tensors, hidden, layers };
}

/** A block of bf16 values ~ N(0, 0.02), from a seeded xorshift generator. */
function randomBf16Block(bytes: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(bytes);
  let s = seed >>> 0 || 0x9e3779b9;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < bytes; i += 2) {
    // Box-Muller, one value per pair of uniforms.
    const g = Math.sqrt(-2 * Math.log(next() + 1e-12)) * Math.cos(2 * Math.PI * next());
    f[0] = g * 0.02;
    b.writeUInt16LE(u[0]! >>> 16, i);
  }
  return b;
}

/** Write a synthetic bf16 safetensors model of about `targetBytes`; returns its tensor list. */
export async function writeSyntheticSafetensors(path: string, targetBytes: number, seed = 1): Promise<SyntheticSpec[]> {
  const { tensors } = transformerSpec(targetBytes);
  let pos = 0;
  const entries = tensors.map((t) => {
    const n = 2 * t.shape.reduce((a, d) => a * d, 1);
    const e = `${JSON.stringify(t.name)}:{"dtype":"BF16","shape":[${t.shape.join(',')}],"data_offsets":[${pos},${pos + n}]}`;
    pos += n;
    return e;
  });
  let json = `{"__metadata__":{"format":"pt","generator":"tensorize synthetic"},${entries.join(',')}}`;
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const BLOCK = 8 * 2 ** 20;
  const block = randomBf16Block(BLOCK, seed);
  const fh = await open(path, 'w');
  try {
    const head = Buffer.alloc(8);
    head.writeBigUInt64LE(BigInt(json.length));
    await fh.write(Buffer.concat([head, Buffer.from(json)]));
    // Each chunk is the block read from a different (even) starting point, so tensors differ.
    const CHUNK = 4 * 2 ** 20;
    const chunk = Buffer.allocUnsafe(CHUNK);
    let rot = 0;
    for (let left = pos; left > 0; ) {
      const n = Math.min(CHUNK, left);
      rot = (rot * 1103515245 + 12345 + seed) % (BLOCK / 2);
      const start = rot * 2;
      const first = Math.min(n, BLOCK - start);
      block.copy(chunk, 0, start, start + first);
      if (first < n) block.copy(chunk, first, 0, n - first);
      await fh.write(chunk, 0, n);
      left -= n;
    }
  } finally {
    await fh.close();
  }
  return tensors;
}
