// Chat templates in the browser: the engine's renderer, in a second wasm fetched on the
// first chat() (it holds a Jinja engine, which the engine's wasm leaves out).
import init, { render_chat } from './synapse_chat.js';

let ready = null;

/** The prompt text of `messages` in the model's template, ready for the reply. */
export async function renderChat({ source, bosToken, eosToken }, messages) {
  ready ??= init();
  await ready;
  const plain = messages.map(({ role, content }) => ({ role, content }));
  return render_chat(source ?? undefined, bosToken, eosToken, JSON.stringify(plain), Date.now() / 1000);
}
