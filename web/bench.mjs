// In-page side of bench/vs_wllama.mjs: loads one engine, times a P-token prompt and G decode
// steps, and returns the rates. Open bench.html?engine=wllama&model=/models/x.gguf&threads=2
// to run it by hand; the driver calls window.synapseBench[engine](opts) instead.

// `n` pseudo-random ids below `vocab`: splitmix64, top 32 bits modulo vocab, as `synapse bench`
// and bench/benchlib.py make them, so every engine is fed the same prompt.
export function syntheticTokens(n, vocab, seed = 0x5eedn) {
  const M = (1n << 64n) - 1n;
  let state = seed;
  const out = [];
  for (let i = 0; i < n; i++) {
    state = (state + 0x9e3779b97f4a7c15n) & M;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M;
    z ^= z >> 31n;
    out.push(Number((z >> 32n) % BigInt(vocab)));
  }
  return out;
}

// Same context for both engines: prompt + generated tokens rounded up to 256 (run_matrix.py).
const contextFor = (p, g) => Math.ceil((p + g) / 256) * 256;

// wllama 3.x runs llama.cpp's server inside the wasm; its completion reports llama.cpp's own
// timings: prompt_ms (the prompt batch, up to the first sampled token) and predicted_ms (from
// the first sampled token to the last). Asking for G + 1 tokens makes predicted_ms cover exactly
// G single-token decode steps. Its completion takes text only (no token ids, no tokenizer call),
// so the prompt is common words, lengthened or shortened until llama.cpp counts P tokens; what
// the tokens are does not change the work.
const WORDS = ' time people year way day man thing woman life child world school state family student group'.split(' ').slice(1);

async function wllama({ model, threads, promptTokens = 128, genTokens = 64, repetitions = 3 }) {
  const { Wllama } = await import('/wllama/esm/index.js');
  const w = new Wllama({ default: '/wllama/esm/wasm/wllama.wasm' }, { suppressNativeLog: !globalThis.WLLAMA_LOG });
  const t0 = performance.now();
  const blob = await (await fetch(model)).blob();
  await w.loadModel([blob], {
    n_threads: threads, n_ctx: contextFor(promptTokens, genTokens), n_gpu_layers: 0, n_parallel: 1,
  });
  const loadMs = performance.now() - t0;
  const complete = (nWords, maxTokens) => w.createCompletion({
    prompt: Array.from({ length: nWords }, (_, i) => ' ' + WORDS[i % WORDS.length]).join(''),
    max_tokens: maxTokens, temperature: 0, top_k: 1, ignore_eos: true, cache_prompt: false,
  });
  let nWords = promptTokens;
  for (let i = 0; i < 4; i++) { // each word is one token in most vocabularies; BOS adds one
    const n = (await complete(nWords, 1)).timings.prompt_n;
    if (n === promptTokens) break;
    nWords += promptTokens - n;
  }
  const prefill = [], decode = [];
  for (let i = 0; i <= repetitions; i++) { // run 0 is a discarded warm-up
    const t = (await complete(nWords, genTokens + 1)).timings;
    if (t.prompt_n !== promptTokens || t.predicted_n !== genTokens + 1) {
      throw new Error(`wllama evaluated ${t.prompt_n} prompt and ${t.predicted_n} generated tokens`);
    }
    if (i === 0) continue;
    prefill.push((t.prompt_n / t.prompt_ms) * 1000);
    decode.push(((t.predicted_n - 1) / t.predicted_ms) * 1000);
  }
  const info = { multithread: w.isMultithread(), threads: w.getNumThreads(), libllama: Wllama.getLibllamaVersion() };
  await w.exit();
  return { prefill_runs: prefill, decode_runs: decode, load_ms: loadMs, info };
}

// Synapse times the prompt and the decode steps inside model.bench().
async function synapse({ model, threads, promptTokens = 128, genTokens = 64, repetitions = 3 }) {
  const { Synapse } = await import('./pkg/synapse.js');
  const t0 = performance.now();
  const m = await Synapse.load(model, { threads });
  const loadMs = performance.now() - t0;
  const prefill = [], decode = [];
  for (let i = 0; i <= repetitions; i++) { // run 0 is a discarded warm-up
    const r = await m.bench({ promptTokens, genTokens });
    if (i === 0) continue;
    prefill.push(r.prefill_tok_s);
    decode.push(r.decode_tok_s);
  }
  const info = { ...m.info };
  m.free();
  return { prefill_runs: prefill, decode_runs: decode, load_ms: loadMs, info };
}

const engines = { wllama, synapse };

async function run(engine, opts) {
  if (!engines[engine]) throw new Error(`unknown engine ${engine}`);
  const res = await engines[engine](opts);
  return { engine, crossOriginIsolated, hardwareConcurrency: navigator.hardwareConcurrency, ...res };
}

window.synapseBench = run;

const q = new URLSearchParams(location.search);
if (q.get('engine')) {
  const out = document.getElementById('out');
  out.textContent = 'running...';
  run(q.get('engine'), {
    model: q.get('model') || '/models/SmolLM2-135M-Instruct.Q4_1.gguf',
    threads: +(q.get('threads') || 1),
    promptTokens: +(q.get('p') || 128),
    genTokens: +(q.get('g') || 64),
    repetitions: +(q.get('reps') || 3),
  }).then((r) => (out.textContent = JSON.stringify(r, null, 1)), (e) => (out.textContent = String(e.stack || e)));
}
