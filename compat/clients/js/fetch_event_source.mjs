// @microsoft/fetch-event-source 2.0.1 on Node's fetch, the way its README shows it:
// `completion` from every message.
//   node fetch_event_source.mjs --base-url URL [--max-tokens N] [--variant rethrow|default-onerror]
// rethrow: onerror rethrows, so a cut stream rejects the promise (what a user should write).
// default-onerror: no onerror, as in most snippets; the library then POSTs again after a cut
// stream. The client reports how many times it opened a response within --linger seconds.
import pkg from "@microsoft/fetch-event-source";
import { args, body, failed, finish, headers, url } from "./common.mjs";

const { fetchEventSource } = pkg;
// a browser library: it reads window.setTimeout and document's visibility events
globalThis.window = globalThis;
globalThis.document = { hidden: false, addEventListener() {}, removeEventListener() {} };

const seen = [];
let opens = 0;
const ctrl = new AbortController();
const variant = args.variant ?? "rethrow";
const options = {
  method: "POST",
  headers,
  body: body(true),
  signal: ctrl.signal,
  openWhenHidden: true,
  async onopen(response) {
    opens += 1;
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
  },
  onmessage(ev) {
    if (ev.data === "[DONE]") return;
    seen.push(JSON.parse(ev.data).completion);
  },
};
if (variant === "rethrow") {
  options.onerror = (err) => {
    throw err;
  };
}
if (variant === "default-onerror") {
  setTimeout(() => {
    ctrl.abort();
    finish({ ok: false, error_class: "Retried", error: `${opens} POSTs`, opens, text: seen.at(-1) });
  }, Number(args.linger ?? 3) * 1000);
}
try {
  await fetchEventSource(url, options);
  // a ping's data is {}, so `completion` is undefined for that one message; the last is the text
  finish({ ok: true, text: seen.at(-1) ?? null, opens });
} catch (err) {
  failed(err, seen);
}
