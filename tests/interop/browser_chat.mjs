// Interop: the axum example's chat page (examples/axum_chat.html) in two headless Chromium
// pages, driven by playwright-core. Usage: node browser_chat.mjs http://HOST:PORT/ /usr/bin/chromium
// Both pages connect to /chat; each types a message and clicks Send, and each message must
// appear in both pages' logs, in order, with permessage-deflate negotiated.
import { chromium } from "playwright-core";

const [url, executablePath] = process.argv.slice(2);
const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const browser = await chromium.launch({ executablePath, args });
try {
  const pages = [await browser.newPage(), await browser.newPage()];
  for (const page of pages) {
    await page.goto(url);
    await page.locator("#state", { hasText: "open" }).waitFor({ timeout: 15000 });
    const extensions = await page.locator("#extensions").textContent();
    if (!extensions.includes("permessage-deflate")) throw new Error(`no compression negotiated: ${JSON.stringify(extensions)}`);
  }
  const said = ["hello from the first page", "and from the second, κόσμε 𝄞"];
  for (const [i, message] of said.entries()) {
    await pages[i].fill("#message", message);
    await pages[i].click("#send");
    for (const page of pages) {
      await page.locator("#log li.said", { hasText: message }).waitFor({ timeout: 15000 });
    }
  }
  for (const [i, page] of pages.entries()) {
    const log = await page.locator("#log li.said").allTextContents();
    if (JSON.stringify(log) !== JSON.stringify(said)) throw new Error(`page ${i + 1} shows ${JSON.stringify(log)}`);
  }
  console.log(`ok: ${said.length} messages in both pages' logs over ${url}chat with permessage-deflate`);
} finally {
  await browser.close();
}
