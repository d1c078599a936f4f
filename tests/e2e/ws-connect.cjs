// A hand-driven gateway client for the end-to-end suite: connects (optionally from a
// given source address), answers the challenge with a deviceless shared-token connect
// as the `cli` client, and prints the hello-ok `auth` (or the refusal) as JSON.
//
//   node ws-connect.cjs URL TOKEN SCOPES [LOCAL_ADDRESS]
// Environment: WS_CA=ca.pem for wss:// URLs; WS_SCOPES_HEADER=list sends x-openclaw-scopes on the
// upgrade; WS_FRAME_FILE=file sends that frame (a captured connect) instead of building one,
// and also prints the close code and reason; WS_ORIGIN=origin sends an Origin header (as a browser).
const fs = require("fs");
const WebSocket = require("ws");
const [url, token, scopes, localAddress] = process.argv.slice(2);
const options = {};
if (localAddress) options.localAddress = localAddress;
if (process.env.WS_CA) options.ca = fs.readFileSync(process.env.WS_CA);
if (process.env.WS_SCOPES_HEADER !== undefined) options.headers = { "x-openclaw-scopes": process.env.WS_SCOPES_HEADER };
if (process.env.WS_ORIGIN) options.origin = process.env.WS_ORIGIN;
const captured = process.env.WS_FRAME_FILE ? fs.readFileSync(process.env.WS_FRAME_FILE, "utf8") : null;
let answer = null;
const ws = new WebSocket(url, options);
const fail = (msg) => { console.log(JSON.stringify({ error: msg })); process.exit(2); };
const timer = setTimeout(() => fail("timeout"), 15000);
ws.on("unexpected-response", (_req, res) => fail(`http ${res.statusCode}`));
ws.on("error", (e) => fail(String(e)));
ws.on("message", (data) => {
  const frame = JSON.parse(String(data));
  if (frame.type === "event" && frame.event === "connect.challenge" && captured) {
    ws.send(captured);
  } else if (frame.type === "event" && frame.event === "connect.challenge") {
    ws.send(JSON.stringify({
      type: "req", id: "1", method: "connect",
      params: {
        minProtocol: 4, maxProtocol: 4,
        client: { id: "cli", version: "2026.9.6", platform: "linux", mode: "cli" },
        caps: [], auth: { token }, role: "operator",
        scopes: scopes ? scopes.split(",") : [],
      },
    }));
  } else if (frame.type === "res" && captured) {
    answer = frame.ok ? { auth: frame.payload.auth } : { refused: frame.error };
  } else if (frame.type === "res" && frame.id === "1") {
    clearTimeout(timer);
    console.log(JSON.stringify(frame.ok ? { auth: frame.payload.auth } : { refused: frame.error }));
    ws.close();
    process.exit(0);
  }
});
ws.on("close", (code, reason) => {
  if (!captured) return;
  clearTimeout(timer);
  console.log(JSON.stringify(Object.assign({}, answer, { close: { code, reason: String(reason) } })));
  process.exit(0);
});
