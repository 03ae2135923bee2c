"""The Node ``tardis-dev`` client (npm, 13.35.3) against ticktape: ``replay`` and ``downloadDatasets`` with
their endpoints pointed at ``capture replay serve --tls-cert/--tls-key``.

The client fetches every slice and dataset with Node's ``https.get``: an ``http://`` endpoint is accepted by
``init`` but each download then fails with ``ERR_INVALID_PROTOCOL`` (and is retried with back-off), so
the server speaks TLS here, with a throwaway certificate the client trusts through ``NODE_EXTRA_CA_CERTS``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from replay_helpers import MARK_A, MARK_B, ServerProc, archived, serve
from tardis_diff_helpers import tardis_modules

from ticktape.archive.export import export

CLIENT = Path(__file__).with_name("tardis_node_client.js")


def self_signed(dir: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ticktape test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = dir / "cert.pem", dir / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, Path]]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(d)
    with serve(archive, d, "--tls-cert", str(cert), "--tls-key", str(key)) as srv:
        yield srv, cert


def run_client(srv: ServerProc, cert: Path, tmp: Path, replay: dict[str, object], datasets: dict[str, object]
               ) -> list[str]:
    spec = {"modules": str(tardis_modules()), "endpoint": f"https://127.0.0.1:{srv.port}/v1",
            "cacheDir": str(tmp / "cache"), "replay": replay, "datasets": datasets}
    path = tmp / "spec.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(cert)}
    run = subprocess.run(["node", str(CLIENT), str(path)], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.splitlines()


def test_node_client_replays_and_downloads(tls: tuple[ServerProc, Path], tmp_path: Path) -> None:
    srv, cert = tls
    filters = [{"channel": "depth", "symbols": ["SUSHIUSDT"]}, {"channel": "aggTrade", "symbols": ["SUSHIUSDT", "AKROUSDT"]}]
    replay = {"exchange": "binance-futures", "from": "2021-07-22T22:00:00.000Z", "to": "2021-07-22T23:00:00.000Z",
              "filters": filters, "withDisconnects": True}
    datasets = {"exchange": "binance-futures", "dataTypes": ["trades", "incremental_book_L2"], "symbols": ["BTCUSDT"],
                "from": "2025-01-06", "to": "2025-01-07", "downloadDir": str(tmp_path / "datasets")}
    lines = run_client(srv, cert, tmp_path, replay, datasets)
    assert lines[-1] == '{"datasets":"done"}'
    got = [json.loads(x) for x in lines[:-1]]

    # replay: every archived frame of the filters, in time order (ms: the client's Date), disconnects as null
    want = archived(srv.root, "binance-futures", {"depth"}, {"SUSHIUSDT"})
    want += archived(srv.root, "binance-futures", {"aggTrade"}, {"SUSHIUSDT", "AKROUSDT"})
    want.sort(key=lambda r: r[0])
    frames = [m for m in got if m is not None]
    assert len(frames) == len(want) > 100

    def ms(ns: int) -> str:
        return dt.datetime.fromtimestamp(ns // 1_000_000 / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"

    assert sorted((m["localTimestamp"], json.dumps(m["message"], sort_keys=True)) for m in frames) == sorted(
        (ms(ts), json.dumps(json.loads(p), sort_keys=True)) for ts, p in want)
    nones = [i for i, m in enumerate(got) if m is None]
    assert len(nones) == 2
    for i, mark in zip(nones, (MARK_A, MARK_B), strict=True):
        assert got[i - 1]["localTimestamp"] <= ms(mark) <= got[i + 1]["localTimestamp"]

    # datasets: the files capture export writes for that day
    done = export(str(srv.root), str(tmp_path / "want"), "binance-futures", "2025-01-06T00:00:00Z",
                  "2025-01-07T00:00:00Z", ["BTCUSDT"], ["trades", "incremental_book_L2"])
    assert len(done) == 2
    for item in done:
        name = Path(item.path).name
        assert gzip.decompress((tmp_path / "datasets" / name).read_bytes()) == gzip.decompress(
            Path(item.path).read_bytes()), name


def test_tls_flags_checked(archive: Path, tmp_path: Path) -> None:
    """Half a TLS pair, a missing file or a key that is not one: one line, exit 2, nothing served."""
    import sys

    repo = Path(__file__).resolve().parents[2]
    cert, _key = self_signed(tmp_path)
    (tmp_path / "bad.pem").write_text("not a key\n")
    env = {**os.environ, "PYTHONPATH": str(repo)}
    for extra, reason in ((["--tls-cert", str(cert)], "--tls-cert and --tls-key go together"),
                          (["--tls-cert", str(cert), "--tls-key", str(tmp_path / "nope.pem")], "no such file"),
                          (["--tls-cert", str(cert), "--tls-key", str(tmp_path / "bad.pem")], "not a usable")):
        run = subprocess.run([sys.executable, "-m", "ticktape.engine.cli", "replay", "serve", "--archive", str(archive),
                              "--port", "1", *extra], capture_output=True, text=True, timeout=60, env=env, cwd=repo)
        assert run.returncode == 2 and reason in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
