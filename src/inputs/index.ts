/** Recognise an input path (file, sharded index, directory) and open it as an InputModel. */
import { open, stat } from 'node:fs/promises';
import { TensorizeError } from '../errors.js';
import { MAGIC } from '../format/constants.js';
import { fsError } from '../sources/file.js';
import type { InputModel } from './model.js';
import { openSafetensorsDir, openSafetensorsFile, openSafetensorsIndex } from './safetensors.js';

export type { InputModel, InputTensor } from './model.js';

async function sniff(path: string): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(16);
    const { bytesRead } = await fh.read(b, 0, 16, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export async function openInput(path: string): Promise<InputModel> {
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw fsError(e, path);
  }
  if (st.isDirectory()) {
    const m = await openSafetensorsDir(path);
    if (m) return m;
    throw new TensorizeError('E_INPUT', `${path}: no model weights found (looked for model.safetensors.index.json, model.safetensors and *.safetensors)`);
  }
  if (path.endsWith('.index.json')) return openSafetensorsIndex(path);
  const head = await sniff(path);
  if (head.subarray(0, 5).equals(MAGIC)) {
    throw new TensorizeError('E_INPUT', `${path} is already a tensorizer file`, {
      hints: ['check it with: tensorize verify ' + path, 'convert it back with: tensorize export ' + path + ' -o model.safetensors'],
    });
  }
  // safetensors: u64 header length (any value, so any first byte), then '{' at byte 8.
  if (head.length >= 9 && head[8] === 0x7b && head.readBigUInt64LE(0) <= BigInt(st.size - 8)) return openSafetensorsFile(path);
  const zip = head.subarray(0, 4).equals(Buffer.from('PK\x03\x04', 'latin1'));
  const pickle = head[0] === 0x80 && head[1] !== undefined && head[1] >= 2 && head[1] <= 5;
  if (zip || pickle) {
    throw new TensorizeError('E_UNSUPPORTED', `${path} looks like a PyTorch checkpoint; PyTorch input is not supported yet`, {
      hints: ['convert it to safetensors first, or use a .safetensors copy of the model'],
    });
  }
  if (path.endsWith('.safetensors')) return openSafetensorsFile(path); // let the parser say what is wrong
  throw new TensorizeError('E_INPUT', `${path}: unrecognised input format (expected a .safetensors file, a model.safetensors.index.json, or a model directory)`);
}
