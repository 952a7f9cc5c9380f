// Run the real @anthropic-ai/sdk@0.4.4 (API 2023-01-01) once; print the outcome as one JSON line.
//   node legacy_client.mjs --base-url URL --mode stream|complete [--timeout S] [--linger S]
//        [--model M] [--prompt P] [--max-tokens N] [--extra JSON]
// --extra: more body fields (SamplingParameters: temperature, top_k, top_p, stop_sequences, tags).
// --linger keeps the process alive after the promise settles, so a test can count the requests
// the SDK's EventSource library sends on its own (spec rule 5).
import sdk from "@anthropic-ai/sdk";

const { Client, HUMAN_PROMPT, AI_PROMPT } = sdk;
const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const timeoutS = Number(args.timeout ?? 20);
const lingerS = Number(args.linger ?? 0);
let printed = false;
function finish(result, code) {
  if (printed) return;
  printed = true;
  process.stdout.write(JSON.stringify(result) + "\n");
  setTimeout(() => process.exit(code), lingerS * 1000);
}
setTimeout(() => finish({ ok: false, error: "timeout" }, 3), timeoutS * 1000).unref();

// The SDK logs its errors with console.error; keep them on stderr, out of the JSON line.
const client = new Client(args["api-key"] ?? "test-key-not-a-real-key", {
  apiUrl: args["base-url"],
});
const params = {
  prompt: args.prompt ?? `${HUMAN_PROMPT} Say hello${AI_PROMPT}`,
  model: args.model ?? "claude-2.0",
  max_tokens_to_sample: Number(args["max-tokens"] ?? 100),
  ...JSON.parse(args.extra ?? "{}"),
};
let updates = 0;
let last = null;
try {
  const final =
    args.mode === "complete"
      ? await client.complete(params)
      : await client.completeStream(params, {
          onUpdate: (completion) => {
            updates += 1;
            last = completion;
          },
        });
  finish({ ok: true, final, updates }, 0);
} catch (error) {
  finish({ ok: false, error: String(error?.message ?? error), updates, last }, 1);
}
