// A gateway operator for the session-ownership checks: connects with the shared token (as the
// `cli` client, no device, from LOCAL_ADDRESS), sends the requests in WS_REQUESTS (a JSON array
// of [method, params]) one after another, keeps listening for WS_LISTEN_MS, and prints
// {"responses": [...], "events": [{"event", "sessionKey", "state", "runId"}]}. With WS_UNTIL_STATE,
// it stops listening as soon as a chat event in that state (e.g. "aborted") arrives.
//
//   WS_REQUESTS='[["chat.history",{"sessionKey":"main"}]]' node ws-session.cjs URL TOKEN SCOPES LOCAL_ADDRESS
const WebSocket = require("ws");
const [url, token, scopes, localAddress] = process.argv.slice(2);
const requests = JSON.parse(process.env.WS_REQUESTS || "[]");
const listenMs = Number(process.env.WS_LISTEN_MS || "0");
const out = { responses: [], events: [] };
const ws = new WebSocket(url, localAddress ? { localAddress } : {});
const finish = () => { console.log(JSON.stringify(out)); process.exit(0); };
const timer = setTimeout(() => { out.error = "timeout"; finish(); }, 30000);
ws.on("unexpected-response", (_req, res) => { out.error = `http ${res.statusCode}`; finish(); });
ws.on("error", (e) => { out.error = String(e); finish(); });
let next = 0;
const sendNext = () => {
  if (next >= requests.length) {
    clearTimeout(timer);
    setTimeout(finish, listenMs);
    return;
  }
  const [method, params] = requests[next];
  ws.send(JSON.stringify({ type: "req", id: `r${next}`, method, params }));
  next += 1;
};
ws.on("message", (data) => {
  const frame = JSON.parse(String(data));
  if (frame.type === "event" && frame.event === "connect.challenge") {
    ws.send(JSON.stringify({
      type: "req", id: "connect", method: "connect",
      params: {
        minProtocol: 4, maxProtocol: 4,
        client: { id: "cli", version: "2026.9.6", platform: "linux", mode: "cli" },
        caps: [], auth: { token }, role: "operator", scopes: scopes.split(","),
      },
    }));
  } else if (frame.type === "event") {
    const p = frame.payload || {};
    out.events.push({ event: frame.event, sessionKey: p.sessionKey || (p.request || {}).sessionKey || p.key || null, state: p.state || null, runId: p.runId || null });
    if (process.env.WS_UNTIL_STATE && frame.event === "chat" && p.state === process.env.WS_UNTIL_STATE) finish();
  } else if (frame.type === "res" && frame.id === "connect") {
    if (!frame.ok) { out.error = frame.error; finish(); }
    sendNext();
  } else if (frame.type === "res") {
    out.responses.push(frame.ok ? { ok: true, payload: frame.payload } : { ok: false, error: frame.error });
    sendNext();
  }
});
