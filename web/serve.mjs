#!/usr/bin/env node
// Zero-dependency static server for Synapse's web folder.
//
//   node web/serve.mjs [--port 8080] [--no-isolation] [--models DIR]
//
// Serves web/ (index.html, pkg/, ...), /models/<file> from ~/.cache/synapse (or its bench/
// subfolder) and /wllama/ from the @wllama/wllama package that scripts/install-web-tools.sh
// installed. By default it sends the headers that make the page cross-origin isolated, which
// SharedArrayBuffer and so wasm threads need. Binds 127.0.0.1 only: it serves files from the
// home folder. bench/vs_wllama.mjs imports startServer().
import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const WEB = dirname(fileURLToPath(import.meta.url));

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
  '.gguf': 'application/octet-stream',
};

// The node_modules folder of web/tools: $SYNAPSE_WEB_TOOLS, else the cache folder that
// install-web-tools.sh names after the hash of package.json + package-lock.json.
export function webToolsDir() {
  if (process.env.SYNAPSE_WEB_TOOLS) return process.env.SYNAPSE_WEB_TOOLS;
  const h = createHash('sha256');
  for (const f of ['package.json', 'package-lock.json']) h.update(readFileSync(join(WEB, 'tools', f)));
  const cache = process.env.SYNAPSE_TOOLS_CACHE || join(homedir(), '.cache', 'synapse-tools');
  return join(cache, `web-${h.digest('hex').slice(0, 16)}`, 'node_modules');
}

// `rel` inside `base`, or null when it would leave it (.., absolute paths, encoded slashes).
function inside(base, rel) {
  const full = resolve(base, '.' + sep + rel);
  return full === base || full.startsWith(base + sep) ? full : null;
}

// Maps a URL path to a file on disk, or null.
function locate(pathname, { modelsDir, wllamaDir }) {
  let rel;
  try {
    rel = decodeURIComponent(pathname);
  } catch {
    return null;
  }
  if (rel.includes('\0')) return null;
  if (rel.startsWith('/models/')) {
    const name = rel.slice('/models/'.length);
    // /models/x.gguf: the models folder, then its bench/ subfolder.
    for (const dir of [modelsDir, join(modelsDir, 'bench')]) {
      const f = inside(dir, name);
      if (f && existsSync(f) && statSync(f).isFile()) return f;
    }
    return null;
  }
  if (rel.startsWith('/wllama/')) return wllamaDir && inside(wllamaDir, rel.slice('/wllama/'.length));
  if (rel.endsWith('/')) rel += 'index.html';
  // node_modules of web/tools is never served from web/ itself.
  if (rel.split('/').includes('node_modules')) return null;
  return inside(WEB, rel.slice(1));
}

// Starts the server; resolves to { server, url }. `onSent(path, bytes)` is told about each
// response body (bench/vs_wllama.mjs counts the wasm and JS an engine loads with it).
export function startServer({ port = 8080, isolation = true, modelsDir, onSent } = {}) {
  modelsDir = resolve(modelsDir || join(homedir(), '.cache', 'synapse'));
  const wllamaPkg = join(webToolsDir(), '@wllama', 'wllama');
  const roots = { modelsDir, wllamaDir: existsSync(wllamaPkg) ? wllamaPkg : null };

  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const headers = { 'Cache-Control': 'no-cache' };
    if (isolation) {
      headers['Cross-Origin-Opener-Policy'] = 'same-origin';
      headers['Cross-Origin-Embedder-Policy'] = 'require-corp';
      headers['Cross-Origin-Resource-Policy'] = 'same-origin';
    }
    const send = (code, text) => {
      res.writeHead(code, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(text + '\n');
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed');
    const file = locate(url.pathname, roots);
    let st;
    try {
      st = file && statSync(file);
    } catch {}
    if ((!st || !st.isFile()) && url.pathname === '/favicon.ico') {
      res.writeHead(204, headers); // browsers ask for it; a 404 would show as a console error
      return res.end();
    }
    if (!st || !st.isFile()) {
      return send(404, url.pathname.startsWith('/wllama/') && !roots.wllamaDir
        ? 'not found: run scripts/install-web-tools.sh for /wllama/' : 'not found');
    }
    headers['Content-Type'] = MIME[extname(file).toLowerCase()] || 'application/octet-stream';
    headers['Accept-Ranges'] = 'bytes';
    // One byte range (some loaders fetch large files in parts); anything else gets the whole file.
    let start = 0, end = st.size - 1, code = 200;
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range || '');
    if (range && (range[1] || range[2])) {
      if (range[1]) {
        start = +range[1];
        if (range[2]) end = Math.min(+range[2], end);
      } else {
        start = Math.max(0, st.size - +range[2]);
      }
      if (start > end) {
        res.writeHead(416, { ...headers, 'Content-Range': `bytes */${st.size}` });
        return res.end();
      }
      code = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${st.size}`;
    }
    headers['Content-Length'] = String(end - start + 1); // lets the page report download progress
    res.writeHead(code, headers);
    if (req.method === 'HEAD' || st.size === 0) return res.end();
    const stream = createReadStream(file, { start, end });
    stream.on('error', () => res.destroy());
    if (onSent) res.on('finish', () => onSent(url.pathname, end - start + 1));
    stream.pipe(res);
  });

  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => {
      ok({ server, url: `http://127.0.0.1:${server.address().port}`, roots });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : dflt;
  };
  const port = +opt('--port', process.env.PORT || 8080);
  const isolation = !args.includes('--no-isolation');
  const { url, roots } = await startServer({ port, isolation, modelsDir: opt('--models') });
  console.log(`serving ${WEB} at ${url}/ (${isolation ? 'cross-origin isolated' : 'no isolation headers'})`);
  console.log(`  /models/ -> ${roots.modelsDir} (and bench/)`);
  console.log(`  /wllama/ -> ${roots.wllamaDir || 'missing: run scripts/install-web-tools.sh'}`);
}
