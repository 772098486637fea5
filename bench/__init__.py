"""`make bench`: the gateway against bare pass-through proxies, on one machine, in one run.

Parts (each runnable on its own with `python -m bench.<part> --help`):

- `upstream`  a raw uvloop HTTP server answering canned OpenAI JSON and SSE streams
- `floors`    bare pass-through proxies (Starlette + aiohttp client; aiohttp.web + aiohttp client)
- `driver`    a Python load generator on uvloop + aiohttp (TTFT, slow streams, fallback for wrk)
- `loadgen`   runs wrk (Lua script `wrk_post.lua`) or the driver and reads their numbers
- `processes` pinned subprocesses, readiness, RSS, and cleanup however the run ends
- `stats`     percentiles and medians; `report` the table and the targets of issue 5
- `harness`   the orchestration behind `python -m bench`
- `profile`   py-spy sampling of the gateway under load, folded into top-N lists
"""
