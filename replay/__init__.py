"""Tardis Machine compatible replay of the archive (``capture replay serve``).

Modules, one job each:

- ``server``: aiohttp app and routes (/replay, /replay-normalized, /exchanges,
  /status, /ws-replay, /ws-replay-normalized; WebSocket routes also on port + 1);
  ``Server(Settings(root), host, port)`` for in-process use.
- ``state``: settings, app keys and stream admission shared by ``server`` and ``ws`` (429 beyond the cap).
- ``limits``: query size / JSON depth bounds (400) and the per-stream memory plan (batch size, or 503).
- ``options``: request options parsed and validated (``OptionsError`` -> HTTP 400).
- ``front``: serves the listening sockets first (aiohttp + ``inventory`` only): ``/exchanges`` answered
  while ``server``'s modules load in a thread; other requests wait, then go to the server's app.
- ``inventory``: what the archive holds (exchanges, symbols, ranges from directory names; raw channels
  read from the files lazily for ``/replay``, the connector's list for ``/exchanges``).
- ``storage``: local directory or ``s3://bucket/prefix`` (s3fs) file access.
- ``sources``: hourly Parquet files of one series read in bounded, time-clipped batches.
- ``merge``: k-way merge of time-sorted ``Chunk`` streams (sources decoded ahead in threads).
- ``raw``: exchange-native NDJSON lines (or tardis-dev's slice lines); ``data_api``: Tardis's HTTP data
  API (/v1/data-feeds, /v1/exchanges) for the official clients; ``datasets``: Tardis's CSV dataset
  downloads (/v1/{exchange}/{type}/{YYYY}/{MM}/{DD}/{SYMBOL}.csv.gz) from ``archive.export``.
- Normalized replay, one module per type over one source layer: ``rows`` reads a series and types its
  rows (trade batches; book rows from ``book_change`` or a stored ``book_snapshot_N``, never cutting a
  message; message times for disconnect stamps); ``trade``, ``bars`` (trade_bar), ``book_change``
  (with Binance resync merging), ``book_snapshot`` (also quote; ``book``: the per-message book),
  ``disconnect``, ``book_ticker``, ``derivative_ticker``, ``liquidation``; ``normalized`` puts them
  together per (request, symbol) and merges; ``levels``: bids/asks JSON; ``fields``: optional fields.
- ``fmt``: vectorized text (7-digit timestamps, numbers, joins).
- ``ws`` + ``subscribe``: WebSocket replay and exchange subscribe messages.
- ``streaming``: drive a chunk iterator from the event loop with one chunk in flight; stop at once for a
  client that is gone.
"""
