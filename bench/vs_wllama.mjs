#!/usr/bin/env node
// Synapse's wasm build against wllama 3.13.0 (llama.cpp in wasm), both in headless Chromium on
// the same GGUF files: a P-token prompt from an empty cache, then G single-token decode steps
// (greedy, EOS ignored), timed inside each engine (web/bench.mjs says how).
//
//   scripts/install-web-tools.sh            # once: chromium, playwright-core, @wllama/wllama
//   node bench/vs_wllama.mjs [--engines wllama,synapse] [--models a.gguf,b.gguf] [--threads 1,2]
//        [--pairs 3] [--repetitions 3] [--prompt-tokens 128] [--gen-tokens 64] [--note TEXT]
//        [--append] [--out FILE.json]
//
// For each (model, threads) it runs the engines alternately, `--pairs` times, each in a fresh
// browser context (a fresh page load, model load, 1 discarded warm-up, then `--repetitions`
// timed runs); a row's numbers are medians over all pooled runs. Pages come from web/serve.mjs
// with the cross-origin isolation headers, so both engines can use wasm threads. The wasm and
// JS bytes each engine loads are counted as the server sends them (the model file apart).
// --append merges the rows into status/benchmark_matrix.json's `browser_rows`
// (bench/browser_matrix.py); without it they are only printed.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir, loadavg, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, webToolsDir } from '../web/serve.mjs';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const PEER = 'wllama 3.13.0';

function parseArgs(argv) {
  const a = {
    engines: 'wllama,synapse', models: 'smollm2-135m.Q4_1.gguf,smollm2-135m.Q4_0.gguf,smollm2-135m.Q8_0.gguf',
    threads: '1,2', pairs: 3, repetitions: 3, 'prompt-tokens': 128, 'gen-tokens': 64, note: '',
    append: false, out: '', chromium: '/usr/bin/chromium', 'models-dir': join(homedir(), '.cache', 'synapse'),
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in a) || !argv[i].startsWith('--')) throw new Error(`unknown argument ${argv[i]} (see the header of ${basename(fileURLToPath(import.meta.url))})`);
    a[k] = typeof a[k] === 'boolean' ? true : argv[++i];
  }
  const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
  return {
    ...a, engines: list(a.engines), models: list(a.models), threads: list(a.threads).map(Number),
    pairs: +a.pairs, repetitions: +a.repetitions, p: +a['prompt-tokens'], g: +a['gen-tokens'],
  };
}

// Median, min, max, mean and sample standard deviation (as bench/benchlib.py's stats()).
function stats(runs) {
  const s = [...runs].sort((x, y) => x - y), n = s.length;
  const median = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  const mean = s.reduce((x, y) => x + y, 0) / n;
  const stddev = n > 1 ? Math.sqrt(s.reduce((x, y) => x + (y - mean) ** 2, 0) / (n - 1)) : 0;
  return { median, min: s[0], max: s[n - 1], mean, stddev };
}

// Merges one engine's invocations like run_matrix.py's pooled().
function pooled(results) {
  const out = {}, spread = {}, pairMedians = {};
  for (const key of ['prefill', 'decode']) {
    const runs = results.flatMap((r) => r[`${key}_runs`]);
    const { median, ...rest } = stats(runs);
    out[`${key}_tok_s`] = median;
    out[`${key}_runs`] = runs;
    spread[key] = rest;
    pairMedians[key] = results.map((r) => stats(r[`${key}_runs`]).median);
  }
  Object.assign(out, { spread, pair_medians: pairMedians });
  out.load_ms = stats(results.map((r) => r.load_ms)).median;
  out.wasm_bytes = Math.max(...results.map((r) => r.wasm_bytes));
  out.js_bytes = Math.max(...results.map((r) => r.js_bytes));
  out.info = results[0].info;
  return out;
}

function git(...args) {
  return spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
}

function modelPath(dir, file) {
  for (const f of [join(dir, file), join(dir, 'bench', file)]) if (existsSync(f)) return f;
  throw new Error(`${file} is in neither ${dir} nor ${dir}/bench (tools/make_bench_models.py makes them)`);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const req = createRequire(join(webToolsDir(), '..', 'package.json'));
  let chromium;
  try {
    ({ chromium } = req('playwright-core'));
  } catch {
    throw new Error(`playwright-core is not in ${webToolsDir()}: run scripts/install-web-tools.sh`);
  }
  if (args.engines.includes('synapse') && !existsSync(join(ROOT, 'web', 'pkg', 'synapse.js'))) {
    throw new Error('web/pkg/synapse.js is missing: build it, or pass --engines wllama');
  }

  // Bytes the server sent, by path, since the last reset: what one page loaded.
  let sent = new Map();
  const { server, url } = await startServer({
    port: 0, isolation: true, modelsDir: args['models-dir'],
    onSent: (path, bytes) => sent.set(path, (sent.get(path) || 0) + bytes),
  });
  // Playwright gives the browser a fresh temporary --user-data-dir.
  const browser = await chromium.launch({
    executablePath: args.chromium,
    headless: true,
    // Chromium's own network traffic (updates, sync, QUIC probes) fails without internet and
    // slows or stalls pages; none of it is needed here.
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const browserVersion = `Chromium ${browser.version()}`;
  const machine = JSON.parse(spawnSync('python3', [join(ROOT, 'bench', 'browser_matrix.py'), 'machine'],
    { encoding: 'utf8' }).stdout);
  const date = new Date().toISOString().replace(/\.\d+Z$/, '+00:00');
  const settings = {
    prompt_tokens: args.p, gen_tokens: args.g, pairs: args.pairs, repetitions_per_invocation: args.repetitions,
    threads: args.threads, context: Math.ceil((args.p + args.g) / 256) * 256, browser: browserVersion,
    method: 'fresh browser context per invocation, 1 discarded warm-up; prefill = P synthetic tokens from an empty '
      + 'cache; decode = G single-token steps after the prompt, greedy, EOS ignored; timed inside each engine '
      + '(wllama: llama.cpp server timings of a G+1-token completion); medians over all pooled runs',
  };
  console.error(`${browserVersion}, ${machine.cpu}, server ${url}`);

  async function once(engine, model, threads) {
    const context = await browser.newContext(); // no cache or storage shared between runs
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    sent = new Map();
    try {
      await page.goto(`${url}/bench.html`);
      await page.waitForFunction(() => window.synapseBench);
      const res = await page.evaluate(([e, o]) => window.synapseBench(e, o), [engine, {
        model: `/models/${model}`, threads, promptTokens: args.p, genTokens: args.g, repetitions: args.repetitions,
      }]);
      if (!res.crossOriginIsolated) throw new Error('the page is not cross-origin isolated');
      // The harness's own bench.mjs is the same for both engines: not counted.
      const bytes = (re) => [...sent].filter(([p]) => re.test(p) && !p.endsWith('/bench.mjs'))
        .reduce((s, [, b]) => s + b, 0);
      return { ...res, wasm_bytes: bytes(/\.wasm$/), js_bytes: bytes(/\.m?js$/) };
    } catch (e) {
      throw new Error(`${engine} on ${model}, ${threads} thread(s): ${e.message}\n${errors.join('\n')}`);
    } finally {
      await context.close();
    }
  }

  const rows = [];
  try {
    for (const model of args.models) {
      const path = modelPath(args['models-dir'], model);
      const [, name, variant] = /^(.*)\.([^.]+)\.gguf$/.exec(model) || [, model, '?'];
      for (const threads of args.threads) {
        console.error(`== ${model}, ${threads} thread(s)`);
        const res = Object.fromEntries(args.engines.map((e) => [e, []]));
        const load = [];
        for (let i = 0; i < args.pairs; i++) {
          const line = [];
          for (const engine of args.engines) {
            load.push(loadavg()[0]);
            const r = await once(engine, model, threads);
            res[engine].push(r);
            line.push(`${engine} pp ${stats(r.prefill_runs).median.toFixed(1)} tg ${stats(r.decode_runs).median.toFixed(1)}`);
          }
          console.error(`   pair ${i + 1}/${args.pairs}: ${line.join(' | ')}`);
        }
        const row = {
          runtime: 'browser', model: name, variant, file: model, file_bytes: statSync(path).size, threads,
          engines: args.engines, peer: PEER, browser: browserVersion,
        };
        for (const e of args.engines) row[e] = pooled(res[e]);
        if (row.synapse && row.wllama) {
          row.ratio = Object.fromEntries(['prefill', 'decode'].map((k) => [k, row.synapse[`${k}_tok_s`] / row.wllama[`${k}_tok_s`]]));
        }
        Object.assign(row, {
          cpu: machine.cpu, cpu_flags: machine.flags, logical_cpus: machine.logical_cpus,
          load_avg_1m_before: load, // before each invocation, in run order
          measured: { date, synapse_commit: git('rev-parse', 'HEAD'), settings, note: args.note },
        });
        rows.push(row);
        console.error('   ' + args.engines.map((e) => `${e} pp ${row[e].prefill_tok_s.toFixed(1)} tg ${row[e].decode_tok_s.toFixed(1)}`
          + ` (wasm ${(row[e].wasm_bytes / 1e6).toFixed(2)} MB, js ${(row[e].js_bytes / 1e3).toFixed(0)} kB)`).join(' | ')
          + (row.ratio ? ` | synapse/wllama pp ${row.ratio.prefill.toFixed(2)}x tg ${row.ratio.decode.toFixed(2)}x` : ''));
      }
    }
  } finally {
    await browser.close();
    server.close();
  }

  const dirty = git('status', '--porcelain', '--untracked-files=no', '--', '.', ':!status/benchmark_matrix.json', ':!README.md');
  for (const r of rows) r.measured.synapse_dirty = Boolean(dirty);
  const json = JSON.stringify(rows, null, 1) + '\n';
  if (args.out) writeFileSync(args.out, json);
  if (args.append) {
    const tmp = join(tmpdir(), `vs_wllama-${process.pid}.json`);
    writeFileSync(tmp, json);
    const r = spawnSync('python3', [join(ROOT, 'bench', 'browser_matrix.py'), 'append', tmp], { stdio: 'inherit' });
    rmSync(tmp, { force: true });
    if (r.status !== 0) process.exit(1);
  } else if (!args.out) {
    process.stdout.write(json);
  }
}

main().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
