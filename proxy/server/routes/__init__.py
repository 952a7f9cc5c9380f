"""One module per route class; each reads as one story from request to response, and none
imports another. The entry picks the route (proxy.server.entry)."""
