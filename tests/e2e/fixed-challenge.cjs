// A stand-in gateway whose every challenge carries the same nonce, for the shared replay test
// (issue 19): a real gateway's nonces are random per connection, so a captured connect only ever
// fails its nonce check there; here a captured connect answers every connection's challenge,
// and only the replay memory can refuse its second use. Answers GET with 200 (readiness), and
// every connect with hello-ok, then closes (1000); with OUT, writes each connect it receives
// there (the latest replaces the one before).
//
//   node fixed-challenge.cjs PORT NONCE [OUT]
const fs = require("fs");
const http = require("http");
const { WebSocketServer } = require("ws");
const [port, nonce, out] = process.argv.slice(2);
const server = http.createServer((_req, res) => {
  res.writeHead(200, { "content-type": "application/json" });
  res.end('{"ready":true}');
});
const wss = new WebSocketServer({ server });
wss.on("connection", (ws) => {
  ws.send(JSON.stringify({ type: "event", event: "connect.challenge", payload: { nonce, ts: Date.now() } }));
  ws.on("message", (data) => {
    const frame = JSON.parse(String(data));
    if (frame.method !== "connect") return;
    if (out) fs.writeFileSync(out, String(data));
    const role = frame.params && frame.params.role;
    ws.send(JSON.stringify({ type: "res", id: frame.id, ok: true, payload: { type: "hello-ok", protocol: 4, server: { version: "2026.9.6" }, auth: { role, scopes: [] } } }));
    ws.close(1000, "stand-in");
  });
});
server.listen(Number(port), "127.0.0.1");
