// eventsource-parser 1.0.0 fed from Node's fetch, `completion` from every event.
//   node eventsource_parser.mjs --base-url URL [--max-tokens N]
import { createParser } from "eventsource-parser";
import { body, failed, finish, headers, url } from "./common.mjs";

const seen = [];
try {
  const response = await fetch(url, { method: "POST", headers, body: body(true) });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  let done = false;
  const parser = createParser((event) => {
    if (event.type !== "event" || done) return;
    if (event.data === "[DONE]") {
      done = true;
      return;
    }
    seen.push(JSON.parse(event.data).completion);
  });
  const decoder = new TextDecoder();
  for await (const chunk of response.body) {
    parser.feed(decoder.decode(chunk, { stream: true }));
  }
  finish({ ok: true, text: seen.at(-1) ?? null });
} catch (err) {
  failed(err, seen);
}
