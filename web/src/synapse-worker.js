// The engine's worker: runs the wasm module off the page's main thread, so that the
// page stays responsive while a forward pass runs. synapse.js sends it requests
// { id, op, ...args } and gets { id, value } or { id, error } back; a load also sends
// { id, progress: { loaded, total } } as the file arrives.
//
// With more than one thread on a cross-origin isolated page it runs the threaded build:
// its memory is shared with helper Workers (this same script, sent { helper }), which
// run the engine's parallel loops beside it. With device 'gpu' it runs the WebGPU build,
// whose load and forward passes are async.

let glue = null; // the wasm-bindgen module of the build that runs
let running = 0; // and its threads
let memory = null; // its linear memory: the model file, the KV cache and every buffer
let engine = null;

// Starts the build for `threads` threads (or the GPU) and returns how many it runs.
async function start(threads, device) {
  if (glue) return running;
  if (device === 'gpu') {
    if (!navigator.gpu) throw new Error('this browser has no WebGPU (navigator.gpu is missing): load with device "cpu"');
    glue = await import('./synapse_wasm_gpu.js');
    ({ memory } = await glue.default());
    return (running = 1);
  }
  if (device !== 'cpu') throw new Error(`device "${device}": use "cpu" or "gpu"`);
  if (threads <= 1 || !self.crossOriginIsolated) {
    glue = await import('./synapse_wasm.js');
    ({ memory } = await glue.default());
    return (running = 1);
  }
  glue = await import('./synapse_wasm_threads.js');
  const url = new URL('./synapse_wasm_threads_bg.wasm', import.meta.url);
  const module = await WebAssembly.compileStreaming(fetch(url));
  ({ memory } = await glue.default({ module_or_path: module }));
  glue.start_pool(threads - 1);
  for (let i = 1; i < threads; i++) {
    const helper = new Worker(new URL(import.meta.url), { type: 'module', name: `synapse helper ${i}` });
    helper.postMessage({ helper: { module, memory } });
  }
  return (running = threads);
}

// A helper's life: instantiate the module on the shared memory and join the pool.
async function help({ module, memory }) {
  const threaded = await import('./synapse_wasm_threads.js');
  threaded.initSync({ module, memory });
  threaded.helper_loop();
}

// Reads a model source into a ModelBytes buffer in wasm memory, chunk by chunk, so that
// the file is never held twice in full.
async function readModel(source, report) {
  let total = 0;
  let reader;
  if (typeof source === 'string') {
    const response = await fetch(source);
    if (!response.ok) throw new Error(`${source}: HTTP ${response.status} ${response.statusText}`);
    total = Number(response.headers.get('Content-Length')) || 0;
    if (!total || response.headers.get('Content-Encoding')) {
      // Without a usable size the buffer cannot be made first: read it whole.
      source = new Uint8Array(await response.arrayBuffer());
      total = 0;
    } else {
      reader = response.body.getReader();
    }
  }
  if (source instanceof Blob) {
    total = source.size;
    reader = source.stream().getReader();
  }
  if (!reader) {
    const bytes = source instanceof Uint8Array ? source : new Uint8Array(source);
    const buffer = new glue.ModelBytes(bytes.length);
    buffer.write(0, bytes);
    report(bytes.length, bytes.length);
    return buffer;
  }
  const buffer = new glue.ModelBytes(total);
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer.write(loaded, value);
    loaded += value.length;
    report(loaded, total);
  }
  if (loaded !== total) {
    buffer.free();
    throw new Error(`the download ended after ${loaded} of ${total} bytes`);
  }
  return buffer;
}

// Wasm memory never shrinks, so its size is the peak so far.
const memoryUse = () => ({ memoryBytes: memory.buffer.byteLength, kvCacheBytes: engine.kv_cache_bytes() });

const ops = {
  async load({ source, name, context, threads, device }, report) {
    threads = await start(threads, device);
    const bytes = await readModel(source, report);
    engine?.free();
    engine = null;
    engine = await glue.Engine.load(bytes, name, context, threads);
    return {
      mode: threads > 1 ? 'threads' : 'single',
      device: engine.device(),
      architecture: engine.architecture(),
      contextLength: engine.context_length(),
      vocabSize: engine.vocab_size(),
      weightType: engine.weight_type(),
      threads: engine.threads(),
      simd: engine.simd(),
      chatTemplate: engine.chat_template() ?? null,
      bosToken: engine.special_token(false),
      eosToken: engine.special_token(true),
      ...memoryUse(),
    };
  },
  tokenize: ({ text, special }) => engine.tokenize(text, special),
  detokenize: ({ ids }) => engine.detokenize(Uint32Array.from(ids)),
  begin: ({ prompt, chat, o }) =>
    engine.begin(prompt, chat, o.maxTokens, o.temperature, o.topK, o.topP, o.minP,
      o.repeatPenalty, o.seed, o.stop, o.ignoreEos),
  async next() {
    const piece = await engine.next_piece();
    if (!piece) return null;
    const value = { id: piece.id < 0 ? null : piece.id, text: piece.text };
    piece.free();
    return value;
  },
  stop: () => engine.stop(),
  reset: () => engine.reset(),
  async bench({ promptTokens, genTokens }) {
    let start = performance.now();
    await engine.bench_prefill(promptTokens);
    const prefill = performance.now() - start;
    start = performance.now();
    await engine.bench_decode(genTokens);
    const decode = performance.now() - start;
    engine.reset();
    return { prefill_tok_s: (promptTokens * 1000) / prefill, decode_tok_s: (genTokens * 1000) / decode, ...memoryUse() };
  },
  free() {
    engine?.free();
    engine = null;
  },
};

self.onmessage = async ({ data: { id, op, helper, ...args } }) => {
  if (helper) return help(helper);
  try {
    const value = await ops[op](args, (loaded, total) => self.postMessage({ id, progress: { loaded, total } }));
    self.postMessage({ id, value });
  } catch (e) {
    self.postMessage({ id, error: e instanceof Error ? e.message : String(e) });
  }
};
