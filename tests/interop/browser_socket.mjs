// Interop: Chromium's own WebSocket client against a server that serves no page (the axum
// example), driven by playwright-core. Usage: node browser_socket.mjs ws://HOST:PORT/ /usr/bin/chromium
// From a page of the server's origin, opens a WebSocket, sends text and binary messages (one of 1 MiB), checks
// every echo and that permessage-deflate was negotiated, and closes with 1000.
import { chromium } from "playwright-core";

const [url, executablePath] = process.argv.slice(2);
const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const browser = await chromium.launch({ executablePath, args });
try {
  const page = await browser.newPage();
  // A page of the server's own origin (the 426 that a plain GET of the WebSocket's URL gets):
  // Chromium refuses connections to loopback from about:blank (local network access).
  await page.goto(url.replace(/^ws/, "http"));
  const result = await page.evaluate(async (url) => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    const messages = [];
    let wake = null;
    ws.onmessage = (event) => { messages.push(event.data); if (wake) wake(); };
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("could not connect")); });
    const next = async () => {
      while (messages.length === 0) await new Promise((resolve) => { wake = resolve; });
      return messages.shift();
    };
    let checks = 0;
    for (const text of ["hello from chromium", "κόσμε 𝄞", ""]) {
      ws.send(text);
      const echo = await next();
      if (echo !== text) throw new Error(`echo of ${JSON.stringify(text)} was ${JSON.stringify(echo)}`);
      checks++;
    }
    for (const size of [4, 1 << 20]) {
      const payload = new Uint8Array(size).map((_, i) => i % 251);
      ws.send(payload);
      const echo = new Uint8Array(await next());
      if (echo.length !== size || echo.some((b, i) => b !== payload[i])) throw new Error(`${size}-byte echo differs`);
      checks++;
    }
    const extensions = ws.extensions;
    const code = await new Promise((resolve) => { ws.onclose = (event) => resolve(event.code); ws.close(1000, "done"); });
    return { checks, extensions, code };
  }, url);
  if (!result.extensions.includes("permessage-deflate")) throw new Error(`no compression negotiated: ${JSON.stringify(result.extensions)}`);
  if (result.code !== 1000) throw new Error(`closed with ${result.code}`);
  console.log(`ok: ${result.checks} checks from Chromium over ${url} with ${result.extensions}, closed with ${result.code}`);
} finally {
  await browser.close();
}
