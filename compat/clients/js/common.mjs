// What the npm compat clients share: arguments, a watchdog, and the one JSON line they print
// (the same protocol as compat/clients/_common.py).
export const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
export const url = `${args["base-url"]}/v1/complete`;
export const headers = {
  "x-api-key": "test-key-not-a-real-key",
  "anthropic-version": "2023-01-01",
  "content-type": "application/json",
};
export const body = (stream) =>
  JSON.stringify({
    model: args.model ?? "claude-2.1",
    prompt: "\n\nHuman: Say hello\n\nAssistant:",
    max_tokens_to_sample: Number(args["max-tokens"] ?? 50),
    stream,
  });

let printed = false;
export function finish(result) {
  if (printed) return;
  printed = true;
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(result.ok ? 0 : 1));
}
setTimeout(
  () => finish({ ok: false, error_class: "Timeout", error: "no result in time" }),
  Number(args.timeout ?? 120) * 1000,
).unref();

export function failed(err, seen) {
  finish({
    ok: false,
    error_class: err?.constructor?.name ?? typeof err,
    error: String(err?.cause ? `${err.message}: ${err.cause}` : err?.message ?? err).slice(0, 300),
    text: seen.length ? seen[seen.length - 1] : null,
  });
}
