// Interop: Node's `ws` library as a client of ws-echo.
// Usage: node node_client.mjs ws://HOST:PORT/ | wss://HOST:PORT/ CA.pem
// Sends text, binary, fragmented and large messages, checks every echo, closes cleanly, and
// prints "ok" with a summary.
import { readFileSync } from "node:fs";
import WebSocket from "ws";

const [url, caPath] = process.argv.slice(2);
// wss:// trusts the test CA only.
const ca = caPath ? readFileSync(caPath) : undefined;
const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024, ca });
const queue = [];
let waiting = null;
ws.on("message", (data, isBinary) => {
  const item = { data: Buffer.from(data), isBinary };
  if (waiting) { const w = waiting; waiting = null; w(item); } else { queue.push(item); }
});
const next = () => new Promise((resolve) => {
  if (queue.length) resolve(queue.shift()); else waiting = resolve;
});
const fail = (message) => { console.error(message); process.exit(1); };
setTimeout(() => fail("timed out"), 60000).unref();

ws.on("error", (err) => fail(`error: ${err.message}`));
ws.on("open", async () => {
  let checks = 0;
  const expect = async (payload, binary) => {
    const { data, isBinary } = await next();
    if (isBinary !== binary || !data.equals(Buffer.from(payload))) {
      fail(`echo differs for a ${payload.length}-byte ${binary ? "binary" : "text"} message`);
    }
    checks++;
  };
  for (const text of ["hello", "κόσμε 𝄞", ""]) {
    ws.send(text);
    await expect(text, false);
  }
  const bin = Buffer.from([0, 1, 2, 255]);
  ws.send(bin);
  await expect(bin, true);
  // Fragmented: fin=false on all but the last part.
  ws.send("frag", { fin: false });
  ws.send("mented ", { fin: false });
  ws.send("κόσμε", { fin: true });
  await expect("fragmented κόσμε", false);
  for (const size of [65536, 1 << 20, 16 << 20]) {
    const payload = Buffer.alloc(size, 7);
    ws.send(payload);
    await expect(payload, true);
  }
  ws.close(1000, "done");
  ws.on("close", (code) => {
    if (code !== 1000) fail(`close code ${code}`);
    const over = ca ? "TLS" : "TCP";
    console.log(`ok: ${checks} checks over ${over}, closed with ${code}`);
    process.exit(0);
  });
});
