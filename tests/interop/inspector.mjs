// Interop: ws-echo's frame inspector (/inspect) in headless Chromium, driven by playwright-core.
// Usage: node inspector.mjs http://HOST:PORT/inspect /usr/bin/chromium SCREENSHOT.png
// Every control is used, and the frame table is checked row by row through its data
// attributes: direction, opcode, FIN, RSV1, MASK, length and its encoding, text, close code.
import { chromium } from "playwright-core";

const [url, executablePath, screenshot] = process.argv.slice(2);
const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const browser = await chromium.launch({ executablePath, args });
const timeout = 15000;
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  const errors = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  await page.goto(url);
  const open = async () => page.locator("#state", { hasText: /^open$/ }).waitFor({ timeout });
  await open();
  const row = (attrs) => {
    const selector = Object.entries(attrs).map(([k, v]) => `[data-${k}="${v}"]`).join("");
    return page.locator(`#frames tr.frame${selector}`);
  };
  const expect = async (what, attrs, n = 1) => {
    try {
      await row(attrs).nth(n - 1).waitFor({ timeout });
    } catch (err) {
      const table = await page.locator("#frames").innerText();
      throw new Error(`no ${what} row ${JSON.stringify(attrs)}:\n${table}`);
    }
  };
  const checked = [];

  // The handshake, both heads.
  await page.locator("#response", { hasText: "101 Switching Protocols" }).waitFor({ timeout });
  const request = await page.locator("#request").textContent();
  const response = await page.locator("#response").textContent();
  for (const needle of ["GET /?inspect=", "Sec-WebSocket-Key: ", "Sec-WebSocket-Version: 13"]) {
    if (!request.includes(needle)) throw new Error(`request head lacks ${needle}: ${request}`);
  }
  for (const needle of ["Sec-WebSocket-Accept: ", "permessage-deflate"]) {
    if (!response.includes(needle)) throw new Error(`response head lacks ${needle}: ${response}`);
  }
  checked.push("handshake heads");

  // Text, compressed: RSV1 on both frames, masked only from the page; the page inflates.
  await page.fill("#text", "Hello, inspector");
  await page.click("#send-text");
  await expect("compressed text in", { dir: "in", opcode: "text", fin: 1, rsv1: 1, masked: 1 });
  await expect("compressed text out", { dir: "out", opcode: "text", fin: 1, rsv1: 1, masked: 0 });
  await expect("inflated text", { dir: "in", opcode: "text", text: "Hello, inspector" });
  await expect("inflated echo", { dir: "out", opcode: "text", text: "Hello, inspector" });
  checked.push("compressed text");

  // Compression off: the page reconnects without it.
  await page.uncheck("#compression");
  await page.locator("#extensions", { hasText: "no extensions" }).waitFor({ timeout });
  await open();
  await page.fill("#text", "plain");
  await page.click("#send-text");
  await expect("text in", { dir: "in", opcode: "text", rsv1: 0, masked: 1, len: 5, encoding: 7, text: "plain" });
  await expect("text out", { dir: "out", opcode: "text", rsv1: 0, masked: 0, len: 5, text: "plain" });
  checked.push("uncompressed text");

  // Binary, and a 200-byte text: the 16-bit length form.
  await page.click("#send-binary");
  await expect("binary in", { dir: "in", opcode: "binary", masked: 1, len: 5 });
  await expect("binary out", { dir: "out", opcode: "binary", masked: 0, len: 5 });
  await page.fill("#text", "x".repeat(200));
  await page.click("#send-text");
  await expect("16-bit length in", { dir: "in", opcode: "text", len: 200, encoding: 16 });
  await expect("16-bit length out", { dir: "out", opcode: "text", len: 200, encoding: 16 });
  checked.push("binary", "16-bit length");

  // A message in three frames, from the server.
  await page.click("#send-fragmented");
  await expect("first fragment", { dir: "out", opcode: "text", fin: 0 });
  await expect("middle fragment", { dir: "out", opcode: "continuation", fin: 0 });
  await expect("last fragment", { dir: "out", opcode: "continuation", fin: 1 });
  checked.push("fragmented");

  // A ping from the server, the browser's pong.
  await page.click("#send-ping");
  await expect("ping", { dir: "out", opcode: "ping", fin: 1, masked: 0 });
  await expect("pong", { dir: "in", opcode: "pong", fin: 1, masked: 1 });
  checked.push("ping and pong");

  // Close with a code and a reason of our choosing.
  await page.fill("#close-code", "4001");
  await page.fill("#close-reason", "bye");
  await page.click("#close");
  await expect("close in", { dir: "in", opcode: "close", "close-code": 4001, masked: 1 });
  await expect("close out", { dir: "out", opcode: "close", "close-code": 4001, masked: 0 });
  await page.locator("#state", { hasText: "closed (4001)" }).waitFor({ timeout });
  await page.locator("#frames tr.note", { hasText: "closed with 4001" }).waitFor({ timeout });
  checked.push("close 4001");

  // The whole session in one picture, kept as the test's artefact.
  await page.screenshot({ path: screenshot, fullPage: true });
  const rows = await page.locator("#frames tr.frame").count();

  // Reconnect, then Clear empties the table.
  await page.click("#reconnect");
  await open();
  await page.click("#clear");
  if ((await page.locator("#frames tr").count()) !== 0) throw new Error("Clear left rows");
  await page.click("#send-text");
  await expect("text after reconnecting", { dir: "in", opcode: "text", len: 200 });
  checked.push("reconnect", "clear");

  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
  console.log(`ok: inspector showed ${rows} frames (${checked.join(", ")}); screenshot ${screenshot}`);
} finally {
  await browser.close();
}
