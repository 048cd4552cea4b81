// Types of web/pkg/synapse.js, the browser module of Synapse.

export interface LoadOptions {
  /** Threads of the engine's pool: more than 1 needs a cross-origin isolated page. */
  threads?: number;
  /** Context length in tokens; 0 (the default): the model's, capped at 4096. */
  context?: number;
  /** Called as the model file arrives. `total` is 0 when the size is unknown. */
  onProgress?: (progress: { loaded: number; total: number }) => void;
  /** How errors name the model (default: the URL or the file's name). */
  name?: string;
  /** "cpu" (the default), or "gpu": WebGPU, where the browser has it (`navigator.gpu`);
   * then the model runs single-threaded on the GPU, from a larger wasm module. */
  device?: 'cpu' | 'gpu';
}

export interface ModelInfo {
  architecture: string;
  contextLength: number;
  vocabSize: number;
  /** The type of most weight matrices, e.g. "Q4_1". */
  weightType: string;
  /** Threads the engine runs on, and "threads" or "single" for the build that runs. */
  threads: number;
  mode: 'threads' | 'single';
  /** The kernels' instruction set: "simd128". */
  simd: string;
  /** "cpu", or "gpu: " and the WebGPU adapter the model runs on. */
  device: string;
  /** The engine's wasm memory (its peak: it never shrinks) and the KV cache's share. */
  memoryBytes: number;
  kvCacheBytes: number;
}

export interface GenerateOptions {
  maxTokens?: number;
  /** 0 decodes greedily. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  /** Seed of the sampler; negative (the default) picks one at random. */
  seed?: number;
  /** Generation ends when the text contains one of these, which is left out. */
  stop?: string[];
  /** Keep going past end-of-generation tokens. */
  ignoreEos?: boolean;
  /** Aborting ends the generation after the token in progress. */
  signal?: AbortSignal;
}

export interface Piece {
  /** The generated token, or null for text released at the end. */
  id: number | null;
  text: string;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
}

export declare class Synapse {
  /** Loads a GGUF model: a URL (streamed, with progress), bytes, or a Blob/File. */
  static load(source: string | ArrayBuffer | Uint8Array | Blob, options?: LoadOptions): Promise<Synapse>;
  readonly info: ModelInfo;
  /** Token ids of `text` (BOS as the model adds it; special-token text as those tokens
   * unless `special` is false). */
  tokenize(text: string, options?: { special?: boolean }): Promise<Uint32Array>;
  detokenize(ids: ArrayLike<number>): Promise<string>;
  /** The raw completion of `prompt`, like `synapse run`, from an empty context. */
  generate(prompt: string, options?: GenerateOptions): AsyncGenerator<Piece>;
  /** The assistant's reply to `messages` with the model's chat template; the context of
   * the previous turn is kept where the conversation starts the same. */
  chat(messages: ChatMessage[], options?: GenerateOptions): AsyncGenerator<Piece>;
  /** Prefill and decode speed, in tokens per second; clears the context. */
  bench(options?: { promptTokens?: number; genTokens?: number }): Promise<{ prefill_tok_s: number; decode_tok_s: number; memoryBytes: number; kvCacheBytes: number }>;
  /** Clears the context. */
  reset(): Promise<void>;
  /** Ends the engine's worker and frees its memory. */
  free(): void;
}
