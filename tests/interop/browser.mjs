// Interop: the demo page in headless Chromium, driven by playwright-core.
// Usage: node browser.mjs http://HOST:PORT/ /usr/bin/chromium
//        node browser.mjs https://localhost:PORT/ /usr/bin/chromium SPKI-SHA256
// Opens the page, waits for the connection, types a message, clicks Send, and reads the echo
// from the page. Over https, Chromium trusts only the certificate whose public key hash is
// given (--ignore-certificate-errors-spki-list), and the page must echo over wss://.
import { chromium } from "playwright-core";

const [url, executablePath, spki] = process.argv.slice(2);
const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
if (spki) args.push(`--ignore-certificate-errors-spki-list=${spki}`);
const browser = await chromium.launch({ executablePath, args });
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.locator("#state", { hasText: "open" }).waitFor({ timeout: 15000 });
  const extensions = await page.locator("#extensions").textContent();
  if (!extensions.includes("permessage-deflate")) throw new Error(`no compression negotiated: ${JSON.stringify(extensions)}`);
  const message = "hello from chromium κόσμε";
  await page.fill("#message", message);
  await page.click("#send");
  const echo = page.locator("#log li.echo").first();
  await echo.waitFor({ timeout: 15000 });
  const text = await echo.textContent();
  if (text !== message) throw new Error(`page shows ${JSON.stringify(text)}`);
  const socketUrl = await page.evaluate(() => socket.url);
  const expected = url.startsWith("https:") ? "wss:" : "ws:";
  if (!socketUrl.startsWith(expected)) throw new Error(`the page opened ${socketUrl}`);
  console.log(`ok: echoed ${JSON.stringify(text)} over ${socketUrl} with ${extensions}`);
} finally {
  await browser.close();
}
