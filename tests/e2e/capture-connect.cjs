// Captures a real device-signed `connect`: listens on 127.0.0.1:PORT as a stand-in gateway,
// sends a challenge, writes the client's first frame to OUT and closes.
//
//   node capture-connect.cjs PORT OUT
const fs = require("fs");
const { WebSocketServer } = require("ws");
const [port, out] = process.argv.slice(2);
const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(port) });
setTimeout(() => { console.error("no connect captured"); process.exit(2); }, 60000);
wss.on("connection", (ws) => {
  ws.send(JSON.stringify({ type: "event", event: "connect.challenge", payload: { nonce: "captured-" + Date.now(), ts: Date.now() } }));
  ws.once("message", (data) => {
    fs.writeFileSync(out, String(data));
    ws.close(1000);
    wss.close();
    process.exit(0);
  });
});
