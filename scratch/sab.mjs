import { loadModel } from "/work/wt-worker-runner/dist/src/model/load-model.js";
const m = await loadModel({ modelPath: "/work/shared/models/stories260K.bin", tokenizerPath: "/work/shared/models/tok512.bin" }, { executionProvider: "cpu", intraOpThreads: 1 });
console.log(m.config);
const { layers, kvHeads, headSize } = m.config;
const cap = 16;
const mk = (shared) => Array.from({ length: layers }, () => { const n = kvHeads*cap*headSize; const B = (k) => shared ? new SharedArrayBuffer(k*4) : new ArrayBuffer(k*4);
  const mask = new Float32Array(B(kvHeads*cap)); mask.fill(-Infinity); return { capacity: cap, keyStore: new Float32Array(B(n)), valueStore: new Float32Array(B(n)), mask }; });
for (const shared of [false, true]) {
  try { const out = await m.runner.run({ tokens: [1, 400, 30], firstPosition: 0, past: mk(shared), queryRows: 1 }); console.log(shared, out.logits.slice(0,3), out.logits.buffer.constructor.name, out.logits.byteOffset, out.logits.buffer.byteLength, out.logits.length);
    // transferable?
    const { port1, port2 } = new MessageChannel(); try { port1.postMessage(out.logits, [out.logits.buffer]); console.log("transfer ok", out.logits.length); } catch (e) { console.log("transfer err", e.message); } port1.close();
  } catch (e) { console.log(shared, "ERR", e.message); }
}
