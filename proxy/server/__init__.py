"""The aiohttp shell around the pure core: it moves bytes, applies timeouts and limits, and turns
what happened into one log line and a few metric samples. No format logic lives here.

    app ──▶ entry (admission, classify, pick the route, errors -> responses, record once)
              ├──▶ routes.complete     Text Completions upstream, converted natively
              ├──▶ routes.messages     Text Completions through /v1/messages (spec section 6)
              └──▶ routes.passthrough  everything else, relayed as received
                      │
                      ▼
                 relay (body in with limits, upstream opened and always released, endings)
                 streaming (the client writer and pump of a converted stream, rule 8)
                 upstream (the pooled ClientSession, header rules, timeouts)

Routes never import each other; every request's state is one Exchange, recorded once.
"""
