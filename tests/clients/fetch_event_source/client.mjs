// Run @microsoft/fetch-event-source 2.0.1, a generic EventSource client for POST streams, once
// against a legacy streaming completion; print what happened as one JSON line.
//   node client.mjs --url URL [--linger S]
// Its onerror here returns instead of rethrowing, the library's default: it then re-POSTs the
// same request every second after a failed stream (spec rule 5). --linger is how long the test
// lets that loop run before the process prints and exits.
import pkg from "@microsoft/fetch-event-source";

const { fetchEventSource } = pkg;
// A browser library: the two globals it touches, as a page that stays visible has them.
globalThis.window = globalThis;
globalThis.document = { hidden: false, addEventListener() {}, removeEventListener() {} };

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const lingerS = Number(args.linger ?? 3);
const out = { messages: [], errors: [], statuses: [], last_event_ids: [] };

const controller = new AbortController();
fetchEventSource(args.url, {
  method: "POST",
  headers: {
    "anthropic-version": "2023-01-01",
    "x-api-key": "test-key-not-a-real-key",
    "content-type": "application/json",
  },
  body: JSON.stringify({
    model: "claude-2.0",
    prompt: "\n\nHuman: Say hello\n\nAssistant:",
    max_tokens_to_sample: 100,
    stream: true,
  }),
  openWhenHidden: true,
  signal: controller.signal,
  fetch: async (input, init) => {
    out.last_event_ids.push(init.headers["last-event-id"] ?? null);
    const response = await fetch(input, init);
    out.statuses.push(response.status);
    return response;
  },
  onmessage: (event) => out.messages.push(event.data),
  onerror: (error) => {
    out.errors.push(String(error?.message ?? error));
  },
}).catch((error) => out.errors.push(String(error)));

setTimeout(() => {
  controller.abort();
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(0);
}, lingerS * 1000);
