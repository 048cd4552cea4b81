// Synapse in the browser. Each loaded model runs in its own Web Worker
// (synapse-worker.js), which holds the wasm engine; this module is the page's side.
// See synapse.d.ts for the API.

// Sampling defaults: llama.cpp's, as `synapse run` has them.
const DEFAULTS = {
  maxTokens: 256, temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05,
  repeatPenalty: 1.0, seed: -1, stop: [], ignoreEos: false,
};

class Worker_ {
  constructor() {
    this.worker = new Worker(new URL('./synapse-worker.js', import.meta.url), { type: 'module' });
    this.pending = new Map();
    this.nextId = 0;
    this.worker.onmessage = ({ data }) => {
      const call = this.pending.get(data.id);
      if (!call) return;
      if (data.progress) return call.onProgress?.(data.progress);
      this.pending.delete(data.id);
      if ('error' in data) call.reject(new Error(data.error));
      else call.resolve(data.value);
    };
    this.worker.onerror = (e) => this.failAll(e.message || 'the engine worker failed');
  }

  call(op, args = {}, onProgress) {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, op, ...args });
    });
  }

  failAll(message) {
    for (const call of this.pending.values()) call.reject(new Error(message));
    this.pending.clear();
  }

  terminate() {
    this.failAll('the model was freed');
    this.worker.terminate();
  }
}

export class Synapse {
  /** Loads a GGUF model from a URL, an ArrayBuffer, a Uint8Array or a Blob/File. */
  static async load(source, { threads = 1, context = 0, device = 'cpu', onProgress, name } = {}) {
    const worker = new Worker_();
    name ??= typeof source === 'string' ? source : source?.name ?? 'model.gguf';
    try {
      const info = await worker.call('load', { source, name, context, threads, device }, onProgress);
      return new Synapse(worker, info);
    } catch (e) {
      // A failed load leaves nothing behind: the next one starts a fresh worker.
      worker.terminate();
      throw e;
    }
  }

  constructor(worker, info) {
    this.worker = worker;
    const { chatTemplate, bosToken, eosToken, ...rest } = info;
    this.info = rest;
    this.template = { source: chatTemplate, bosToken, eosToken };
    this.busy = false;
  }

  /** Token ids of `text`, with BOS as the model adds it. */
  async tokenize(text, { special = true } = {}) {
    return Uint32Array.from(await this.worker.call('tokenize', { text, special }));
  }

  async detokenize(ids) {
    return this.worker.call('detokenize', { ids: Array.from(ids) });
  }

  /** Streams the raw completion of `prompt`, like `synapse run`. */
  generate(prompt, options = {}) {
    return this.stream(prompt, false, options);
  }

  /** Streams the assistant's reply to `messages`, rendered with the model's chat
   * template; the tokens the previous turn left in the context are kept. */
  async *chat(messages, options = {}) {
    const { renderChat } = await import('./synapse-chat.js');
    const prompt = await renderChat(this.template, messages);
    yield* this.stream(prompt, true, options);
  }

  async *stream(prompt, chat, options) {
    if (this.busy) throw new Error('a generation is already running on this model');
    const { signal, ...rest } = options;
    const o = { ...DEFAULTS, ...rest };
    this.busy = true;
    try {
      signal?.throwIfAborted();
      await this.worker.call('begin', { prompt, chat, o });
      while (!signal?.aborted) {
        const piece = await this.worker.call('next');
        if (!piece) return;
        yield piece;
      }
    } finally {
      this.busy = false;
      await this.worker.call('stop').catch(() => {});
    }
  }

  /** Prefill and decode speed: `promptTokens` tokens from an empty context, then
   * `genTokens` greedy decode steps. Clears the context. */
  async bench({ promptTokens = 128, genTokens = 64 } = {}) {
    return this.worker.call('bench', { promptTokens, genTokens });
  }

  /** Clears the context (a chat starts over). */
  reset() {
    return this.worker.call('reset');
  }

  /** Ends the worker and frees the model's memory. */
  free() {
    this.worker.terminate();
  }
}
