// The seed README's Socket.IO snippets, run as its users would write them with socket.io-client.
// Only their placeholders change (the server's URL, a real token, session id, message and path)
// and, when a test asks for one, the transports. Each scenario ends the process when its
// answer has arrived. For the test, every event the socket receives is also printed as one
// line, `EVENT {"event": ..., "args": [...]}`; the seed's own console.log lines print as written.
//
// Environment: SERVER_URL, TOKEN, SCENARIO (chat | tool | monitoring | refused), SESSION_ID,
// MESSAGE, TOOL_PATH, TRANSPORTS (comma-separated; unset means socket.io-client's default),
// EVENTS (monitoring: how many events to wait for), TIMEOUT_MS.
import { io } from "socket.io-client";

const env = process.env;
const options = env.TRANSPORTS ? { transports: env.TRANSPORTS.split(",") } : {};
const timer = setTimeout(() => {
  console.log("TIMEOUT");
  process.exit(2);
}, Number(env.TIMEOUT_MS || 30000));

// ### Connection
const socket = io(env.SERVER_URL, {
  auth: {
    token: env.TOKEN
  },
  ...options
});

socket.onAny((event, ...args) => console.log("EVENT " + JSON.stringify({ event, args })));
socket.on("connect", () => console.log("CONNECTED " + socket.io.engine.transport.name));
socket.io.engine.on("upgrade", (transport) => console.log("UPGRADED " + transport.name));
socket.on("connect_error", (err) => {
  console.log("CONNECT_ERROR " + JSON.stringify({ message: err.message, data: err.data }));
  finish(env.SCENARIO === "refused" ? 0 : 1);
});

function finish(code = 0) {
  clearTimeout(timer);
  socket.disconnect();
  process.exitCode = code;
}

if (env.SCENARIO === "chat") {
  // ### Join Session
  socket.emit('join-session', { sessionId: env.SESSION_ID });

  // ### Send Message
  socket.emit('chat:message', { content: env.MESSAGE });

  // Listen for responses
  socket.on('gemini:content', (data) => {
    console.log('Response:', data.text);
  });

  socket.on('gemini:done', () => {
    console.log('Response complete');
    finish();
  });

  // Not in the seed's README: a turn that asks before a tool runs waits for this answer.
  socket.on('gemini:tool-confirmation', (data) => {
    socket.emit('tool:confirm', { callId: data.callId, outcome: 'proceed_once' });
  });
} else if (env.SCENARIO === "tool") {
  socket.emit('join-session', { sessionId: env.SESSION_ID });

  // ### Execute Tool
  socket.emit('tool:execute', {
    name: 'readFile',
    args: { path: env.TOOL_PATH }
  });

  socket.on('tool:execution-complete', (data) => {
    console.log('Tool result:', data.result);
    finish();
  });

  socket.on('tool:execution-error', () => finish(1));
} else if (env.SCENARIO === "monitoring") {
  // ### Real-time Monitoring
  // Admin clients can subscribe to all events
  socket.emit('monitoring:subscribe');

  let seen = 0;
  socket.on('monitoring:event', (event) => {
    console.log('Activity:', event);
    seen += 1;
    if (seen >= Number(env.EVENTS || 1)) finish();
  });

  socket.on('error', () => finish(1));
} else if (env.SCENARIO !== "refused") {
  console.log("Unknown SCENARIO " + env.SCENARIO);
  finish(3);
}
