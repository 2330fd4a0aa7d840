// Interop: the demo page in headless Chromium, driven by playwright-core.
// Usage: node browser.mjs http://HOST:PORT/ /usr/bin/chromium
// Opens the page, waits for the connection, types a message, clicks Send, and reads the echo
// from the page.
import { chromium } from "playwright-core";

const [url, executablePath] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
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
  console.log(`ok: echoed ${JSON.stringify(text)} with ${extensions}`);
} finally {
  await browser.close();
}
