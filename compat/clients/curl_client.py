"""curl, as the API's 2023 documentation showed it (`curl -N`), read the way a shell user would.

    python curl_client.py --base-url URL --scenario stream|nostream [--max-tokens N]

Runs with any Python 3 (the project's venv in `make compat`); the client is the curl on PATH. The
stream is judged as a careful reader does: the last `data:` snapshot before `[DONE]`, skipping
`event: ping`; a failure is curl's exit status or an `exception` in the stream.
"""

from __future__ import annotations

import json
import subprocess
import sys

from _common import body, emit, headers, parse_args


def main() -> int:
    args = parse_args()
    argv = ["curl", "-sS", "-N", "--max-time", str(args.timeout), args.base_url + "/v1/complete"]
    for k, v in headers().items():
        argv += ["-H", f"{k}: {v}"]
    argv += ["-d", json.dumps(body(args, args.scenario == "stream"))]
    proc = subprocess.run(argv, capture_output=True)
    out = proc.stdout.decode("utf-8", errors="replace")
    if args.scenario == "nostream":
        try:
            text = json.loads(out)["completion"]
        except (ValueError, KeyError):
            text = None
        ok = proc.returncode == 0 and isinstance(text, str)
        emit({"ok": ok, "text": text, "error_class": f"curl exit {proc.returncode}",
              "error": out[:200] or proc.stderr.decode()[:200]})  # fmt: skip
        return 0 if ok else 1
    text, exception, done, event = None, None, False, ""
    for line in out.split("\n"):
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
            elif event != "ping":
                obj = json.loads(data)
                text, exception = obj.get("completion"), obj.get("exception")
        elif line == "":
            event = ""
    ok = proc.returncode == 0 and done and not exception
    err = proc.stderr.decode(errors="replace").strip()
    said = [x for x in (err, f"exception: {exception}" if exception else "") if x]
    emit({"ok": ok, "text": text, "error_class": f"curl exit {proc.returncode}",
          "error": "; ".join(said)})  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
