"""Hearth's OpenAI-compatible HTTP server (`hearth serve`, and the app's server toggle).

Plain Python, no Qt. The stack is Starlette on uvicorn, with sse-starlette for the
streamed replies:

- Starlette is a small, well-kept ASGI toolkit (routing, requests, CORS) without the
  framework weight of FastAPI's dependency injection and pydantic models; our request
  schemas are a few hand-checked dicts so every 400 names its parameter.
- uvicorn is the reference ASGI server. `ServerHandle` runs it on its own thread with its
  own asyncio event loop, so it sits beside Qt's event loop (or the CLI's main thread)
  without blocking it, and stops on request (no signal handlers off the main thread).
- sse-starlette speaks Server-Sent Events correctly (pings, client disconnects, which
  cancel the generation at once).

Modules: `app` (routes), `schemas` (request validation), `responses` (OpenAI JSON),
`errors` (OpenAI error JSON), `auth` (API keys and the bind rule), `grammar`
(response_format to GBNF), `scheduler` (the thread that owns the engine and its queue),
`middleware` (body limit, access log), `handle` (start/stop on a thread).
"""
