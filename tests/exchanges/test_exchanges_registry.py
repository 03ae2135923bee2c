"""The config contract: clear errors before anything connects; data types and raw channels."""

from __future__ import annotations

import pytest

from ticktape.engine.config import ExchangeConfig
from ticktape.exchanges import registry


def cfg(**kw):
    return ExchangeConfig(**kw)


@pytest.mark.parametrize(
    ("name", "kw", "match"),
    [
        ("kraken", {"symbols": ["XBTUSD"]}, r"unknown exchange 'kraken' \(known: .*binance-futures, .*bybit, .*hyperliquid"),
        ("binance-futures", {"symbols": ["btcusdt"]}, r"symbol 'btcusdt' is not a binance-futures symbol.*BTCUSDT"),
        ("binance-futures", {"symbols": ["BTC-USDT"]}, r"not a binance-futures symbol"),
        ("bybit", {"symbols": ["BTC/USDT"]}, r"not a bybit symbol"),
        ("hyperliquid", {"symbols": ["BTCUSDT"]}, r"not a hyperliquid coin.*BTC, ETH"),
        ("binance-futures", {"symbols": ["BTCUSDT"], "channels": ["ticker"]}, r"unknown channel 'ticker'.*trades, book_change, book_snapshot"),
        ("bybit", {"symbols": ["BTCUSDT"], "channels": ["book_snapshot"]}, r"'book_snapshot' is not supported by bybit \(supported: trades, book_change, book_ticker, derivative_ticker, liquidations\)"),
        ("hyperliquid", {"symbols": ["BTC"], "channels": ["liquidations"]}, r"hyperliquid has no public liquidation stream"),
        ("binance-futures", {"symbols": ["BTCUSDT"], "depth_speed": "250ms"}, r"depth_speed '250ms'.*0ms, 100ms, 500ms"),
        ("bybit", {"symbols": ["BTCUSDT"], "depth": 50, "depth_speed": "0ms"}, r"depth_speed is a binance-futures option"),
        ("hyperliquid", {"symbols": ["BTC"], "open_interest_interval": 5.0}, r"open_interest_interval is a binance-futures option"),
        ("binance-futures", {"symbols": [f"S{i}USDT" for i in range(50)], "channels": ["derivative_ticker"],
                             "open_interest_interval": 5.0},
         r"open_interest_interval 5 s for 50 symbols uses 600 REST weight/min, over the poll budget of 240/min .*at least 12.5 s"),
        ("binance-futures", {"symbols": ["BTCUSDT"], "channels": ["trades"], "open_interest_interval": 5.0},
         r"derivative_ticker is not in channels"),
        ("hyperliquid", {"symbols": ["BTC"], "channels": ["ticker"]}, r"unknown channel 'ticker'"),
        ("binance-futures", {"symbols": ["BTCUSDT"], "channels": ["book_snapshot"], "depth": 50}, r"depth 50 .*5, 10, 20"),
        ("bybit", {"symbols": ["BTCUSDT"], "channels": ["book_change"], "depth": 20}, r"depth 20 .*1, 50, 200, 1000"),
        ("hyperliquid", {"symbols": ["BTC"], "channels": ["book_snapshot"], "depth": 10}, r"depth 10.*20 levels"),
        ("binance-futures", {"symbols": ["BTCUSDT"], "trade_stream": "bookTicker"}, r"trade_stream 'bookTicker'.*aggTrade, trade"),
        ("bybit", {"symbols": ["BTCUSDT"], "channels": ["trades"], "trade_stream": "trade"}, r"trade_stream is a binance-futures option"),
        ("binance-futures", {"symbols": ["BTCUSDT"], "url": "http://127.0.0.1:9000"}, r"url .*scheme must be ws or wss"),
        ("binance-futures", {"symbols": ["BTCUSDT"], "rest_url": "ftp://x"}, r"rest_url .*http or https"),
        ("hyperliquid", {"symbols": ["BTC"], "url": "ws://127.0.0.1:1?x=1"}, r"without query"),
        ("binance-futures", {"symbols": ["BTCUSDT"], "channels": ["trades", "trades"]}, r"duplicate channels"),
        ("bitmex", {"symbols": ["xbtusd"]}, r"not a bitmex symbol.*XBTUSD"),
        ("bitmex", {"symbols": ["XBTUSD"], "channels": ["book_snapshot"]}, r"'book_snapshot' is not supported by bitmex"),
        ("bitmex", {"symbols": ["XBTUSD"], "depth": 25}, r"depth 25: bitmex orderBookL2 is the whole book"),
        ("okex", {"symbols": ["BTC-USDT-SWAP"]}, r"symbol 'BTC-USDT-SWAP' is not a okex symbol.*BTC-USDT"),
        ("okex-swap", {"symbols": ["BTC-USDT"]}, r"not a okex-swap symbol.*BTC-USDT-SWAP"),
        ("okex", {"symbols": ["BTC-USDT"], "channels": ["liquidations"]}, r"'liquidations' is not supported by okex \(supported: trades, book_change, book_ticker\)"),
        ("okex-swap", {"symbols": ["BTC-USDT-SWAP"], "channels": ["book_snapshot"]}, r"not supported by okex-swap"),
        ("okex", {"symbols": ["BTC-USDT"], "trade_stream": "aggTrade"}, r"trade_stream 'aggTrade' is not an OKX trades channel \(one of trades, trades-all\)"),
        ("okex", {"symbols": ["BTC-USDT"], "depth_speed": "0ms"}, r"depth_speed is a binance-futures option"),
    ],
)
def test_bad_config_is_a_clear_error(name, kw, match):
    with pytest.raises(ValueError, match=match):
        registry.validate(name, cfg(**kw))


def test_seed_config_validates_through_the_engine_loader():
    from ticktape.engine.config import load

    conf = load("configs/seed.toml")
    assert set(conf.exchanges) == {"binance-futures", "hyperliquid", "bybit"}


def test_config_loader_names_the_key(tmp_path):
    from ticktape.engine.config import ConfigError, load

    p = tmp_path / "c.toml"
    p.write_text('[exchanges.bybit]\nsymbols = ["BTCUSDT"]\nchannels = ["trades", "book_snapshot"]\n')
    with pytest.raises(ConfigError, match=r"exchanges\.bybit.*not supported by bybit"):
        load(p)


def test_data_types_and_raw_channels():
    b = cfg(symbols=["BTCUSDT"], channels=["trades", "book_change", "book_snapshot"], depth=20)
    assert registry.data_types("binance-futures", b, True) == ["trades", "book_change", "book_snapshot_20", "raw"]
    assert registry.raw_channels("binance-futures", b) == ("trade", "depth", "depthSnapshot", "depth20")
    t = cfg(symbols=["BTCUSDT"], channels=["trades"], trade_stream="aggTrade")
    assert registry.raw_channels("binance-futures", t) == ("aggTrade",)
    y = cfg(symbols=["BTCUSDT"], channels=["trades", "book_change"], depth=50)
    assert registry.data_types("bybit", y, False) == ["trades", "book_change"]
    assert registry.raw_channels("bybit", y) == ("publicTrade", "orderbook.50")
    h = cfg(symbols=["BTC", "ETH"], channels=["trades", "book_snapshot"], depth=20)
    assert registry.data_types("hyperliquid", h, True) == ["trades", "book_snapshot_20", "raw"]
    assert registry.raw_channels("hyperliquid", h) == ("trades", "l2Book")
    o = cfg(symbols=["BTC-USDT-SWAP"], channels=["trades", "book_change", "derivative_ticker", "liquidations"])
    assert registry.data_types("okex-swap", o, True) == ["trades", "book_change", "derivative_ticker", "liquidations", "raw"]
    assert registry.raw_channels("okex-swap", o) == ("trades", "books", "tickers", "funding-rate", "mark-price",
                                                     "open-interest", "index-tickers", "liquidation-orders")
    assert registry.raw_channels("okex", cfg(symbols=["BTC-USDT"])) == ("trades", "books")
    assert registry.raw_channels("okex", cfg(symbols=["BTC-USDT"], trade_stream="trades-all")) == ("trades-all", "books")


def test_binance_plans_split_public_and_market_paths(rig):
    r = rig("binance-futures", symbols=["BTCUSDT", "ETHUSDT"], channels=["trades", "book_change", "book_snapshot"],
            trade_stream="aggTrade", url="ws://127.0.0.1:9100")
    plans = r.feed.plans()
    assert [p.url for p in plans] == [
        "ws://127.0.0.1:9100/public/stream?streams=btcusdt@depth@100ms/btcusdt@depth20@100ms/ethusdt@depth@100ms/ethusdt@depth20@100ms",
        "ws://127.0.0.1:9100/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade",
    ]
    assert r.feed.rest_base == "http://127.0.0.1:9100"


def test_bybit_and_hyperliquid_subscribe_messages(rig):
    import json

    y = rig("bybit", symbols=["BTCUSDT", "ETHUSDT"], channels=["trades", "book_change"], depth=50, url="ws://127.0.0.1:9200")
    (plan,) = y.feed.plans()
    assert plan.url == "ws://127.0.0.1:9200/v5/public/linear"
    msgs = [json.loads(m) for m in plan.subscribe]
    assert [m["op"] for m in msgs] == ["subscribe"]
    assert msgs[0]["args"] == ["publicTrade.BTCUSDT", "orderbook.50.BTCUSDT", "publicTrade.ETHUSDT", "orderbook.50.ETHUSDT"]
    h = rig("hyperliquid", symbols=["BTC"], channels=["trades", "book_snapshot"], url="ws://127.0.0.1:9300")
    (plan,) = h.feed.plans()
    assert plan.url == "ws://127.0.0.1:9300/ws"
    assert [json.loads(m) for m in plan.subscribe] == [
        {"method": "subscribe", "subscription": {"type": "trades", "coin": "BTC"}},
        {"method": "subscribe", "subscription": {"type": "l2Book", "coin": "BTC"}},
    ]


def test_unknown_ingest_option_is_an_error(rig):
    with pytest.raises(ValueError, match=r"unknown ingest option\(s\) stall_timout .*stall_timeout"):
        rig("bybit", symbols=["BTCUSDT"], channels=["trades"], options={"stall_timout": 1})


def test_okx_subscribe_messages_and_liquidations_by_instrument_type(rig):
    import json

    r = rig("okex-swap", symbols=["BTC-USDT-SWAP", "ETH-USDT-SWAP"], channels=["trades", "book_change", "liquidations"],
            url="ws://127.0.0.1:9400")
    (plan,) = r.feed.plans()
    assert plan.url == "ws://127.0.0.1:9400/ws/v5/public"
    assert [json.loads(m) for m in plan.subscribe] == [{"op": "subscribe", "args": [
        {"channel": "trades", "instId": "BTC-USDT-SWAP"}, {"channel": "books", "instId": "BTC-USDT-SWAP"},
        {"channel": "trades", "instId": "ETH-USDT-SWAP"}, {"channel": "books", "instId": "ETH-USDT-SWAP"},
        {"channel": "liquidation-orders", "instType": "SWAP"}]}]


def test_okx_trades_all_goes_to_the_business_path(rig):
    import json

    r = rig("okex", symbols=["BTC-USDT"], channels=["trades", "book_change"], trade_stream="trades-all",
            url="ws://127.0.0.1:9400")
    plans = r.feed.plans()
    assert [p.url for p in plans] == ["ws://127.0.0.1:9400/ws/v5/public", "ws://127.0.0.1:9400/ws/v5/business"]
    assert [json.loads(m)["args"] for p in plans for m in p.subscribe] == [
        [{"channel": "books", "instId": "BTC-USDT"}], [{"channel": "trades-all", "instId": "BTC-USDT"}]]
