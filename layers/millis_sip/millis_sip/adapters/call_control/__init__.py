"""The carriers' call-control APIs (outbound calls, and what later moves a live call), over httpx with one
deadline per request and bounded retries. No carrier SDK: each is a few form or JSON fields, and the SDKs cost
a cold start. Imported only by the function that places calls (ApiFunction), never on the phone path."""
