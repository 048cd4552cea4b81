// The demo page (index.html): load a GGUF model, chat with it, watch its speed.
import { Synapse } from './pkg/synapse.js';

const DEFAULT_MODEL = '/models/SmolLM2-135M-Instruct.Q4_1.gguf';
const $ = (id) => document.getElementById(id);

let model = null;
let messages = []; // the conversation, as model.chat takes it
let inContext = 0; // tokens the engine holds from the previous turns (for the prefill rate)
let controller = null; // aborts the running generation
let loading = false;

// Threads: more than one needs SharedArrayBuffer, so a cross-origin isolated page.
const isolated = self.crossOriginIsolated;
// 2 is offered even on one core: it is the default of an isolated page.
const maxThreads = Math.max(2, Math.min(8, navigator.hardwareConcurrency || 1));
for (let n = 1; n <= maxThreads; n++) {
  const o = new Option(String(n), String(n));
  o.disabled = n > 1 && !isolated;
  $('threads').add(o);
}
$('threads').value = isolated ? '2' : '1';
// The GPU build needs WebGPU.
$('device').options[1].disabled = !navigator.gpu;
$('isolation').textContent = isolated
  ? 'cross-origin isolated: threads available'
  : 'not cross-origin isolated: single-threaded only';

function setBusy() {
  const generating = controller !== null;
  for (const id of ['load-default', 'load-url', 'file', 'threads', 'device']) $(id).disabled = loading || generating;
  $('message').disabled = $('send').disabled = !model || loading || generating;
  $('new-chat').disabled = !model || loading || generating;
  $('stop').disabled = !generating;
}

function showError(e) {
  $('error').textContent = e ? `Error: ${e.message ?? e}` : '';
}

async function load(source) {
  showError(null);
  loading = true;
  setBusy();
  const bar = $('progress');
  bar.value = 0;
  bar.removeAttribute('value'); // indeterminate until the size is known
  $('progress-row').hidden = false;
  const name = typeof source === 'string' ? source.split('/').pop() : source.name;
  $('info').textContent = `Loading ${name}…`;
  try {
    const next = await Synapse.load(source, {
      threads: Number($('threads').value),
      device: $('device').value,
      onProgress: ({ loaded, total }) => {
        if (total) bar.value = loaded / total;
      },
    });
    // The old model stays until the new one works: a bad file leaves the page as it was.
    model?.free();
    model = next;
    clearChat();
    const i = model.info;
    $('info').textContent = `${name}: ${i.architecture}, ${i.weightType}, context ${i.contextLength}, `
      + (i.device === 'cpu'
        ? `${i.mode === 'threads' ? `${i.threads} threads` : 'single thread'} (${i.mode}, ${i.simd})`
        : i.device);
    $('message').focus();
  } catch (e) {
    $('info').textContent = model ? 'Kept the previous model.' : 'No model loaded.';
    showError(e);
  } finally {
    loading = false;
    $('progress-row').hidden = true;
    setBusy();
  }
}

function clearChat() {
  messages = [];
  inContext = 0;
  $('log').replaceChildren();
  $('stats').textContent = '';
}

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  const who = document.createElement('b');
  who.textContent = role === 'user' ? 'You' : 'Model';
  const body = document.createElement('span');
  body.textContent = text;
  div.append(who, body);
  $('log').append(div);
  return body;
}

// Tokens of the whole rendered conversation, to turn time-to-first-piece into a rate;
// null when it cannot be known (the chat module is missing).
async function promptTokens(msgs) {
  try {
    const { renderChat } = await import('./pkg/synapse-chat.js');
    return (await model.tokenize(await renderChat(model.template, msgs))).length;
  } catch {
    return null;
  }
}

async function send(text) {
  showError(null);
  messages.push({ role: 'user', content: text });
  addMessage('user', text);
  const out = addMessage('assistant', '');
  controller = new AbortController();
  setBusy();
  const total = await promptTokens(messages);
  // Only the tokens past what the previous turns left in the context are prefilled.
  const prefill = total === null ? null : Math.max(1, total - inContext);
  const stats = $('stats');
  const start = performance.now();
  let first = 0, pieces = 0, reply = '', failed = false;
  try {
    for await (const piece of model.chat(messages, { signal: controller.signal })) {
      const now = performance.now();
      if (!pieces) first = now;
      if (piece.id !== null) pieces++;
      reply += piece.text;
      out.textContent = reply;
      $('log').scrollTop = $('log').scrollHeight;
      const ttft = first - start;
      const decode = pieces > 1 ? ((pieces - 1) * 1000) / (now - first) : 0;
      stats.textContent = `prefill: ${prefill ? `${((prefill * 1000) / ttft).toFixed(1)} tok/s (${prefill} tokens, ` : '('}`
        + `${ttft.toFixed(0)} ms to first token) · decode: ${decode.toFixed(1)} tok/s (${pieces} tokens)`;
    }
    if (controller.signal.aborted) stats.textContent += ' · stopped';
  } catch (e) {
    failed = true;
    showError(e);
  } finally {
    // A stopped reply is still part of the conversation (and of the engine's context);
    // a failed turn is taken back.
    if (failed && !reply) messages.pop();
    else messages.push({ role: 'assistant', content: reply });
    inContext = failed ? 0 : (total ?? 0) + pieces;
    controller = null;
    setBusy();
  }
}

$('load-default').onclick = () => load(DEFAULT_MODEL);
$('load-url').onclick = () => $('url').value.trim() && load($('url').value.trim());
$('url').onkeydown = (e) => e.key === 'Enter' && $('load-url').click();
$('file').onchange = () => {
  const f = $('file').files[0];
  $('file').value = ''; // choosing the same file again loads it again
  if (f) load(f);
};
$('chat').onsubmit = (e) => {
  e.preventDefault();
  const text = $('message').value.trim();
  if (!text || !model || controller) return;
  $('message').value = '';
  send(text);
};
$('message').onkeydown = (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    $('chat').requestSubmit();
  }
};
$('stop').onclick = () => controller?.abort();
$('new-chat').onclick = async () => {
  await model.reset();
  clearChat();
};
setBusy();
