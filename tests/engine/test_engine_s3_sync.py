"""``capture run`` with ``[s3]``: the finalized archive leaves the machine
without a cron job (background sync; the last hour is synced at shutdown)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import boto3
import pytest

from ticktape.archive.local_s3 import LocalS3Server

pytestmark = pytest.mark.slow

CREDS = {"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_REGION": "us-east-1"}


def test_capture_run_syncs_finalized_files_to_s3(tmp_path: Path, capture_cmd: list[str]) -> None:
    env = {**os.environ, **CREDS, "AWS_CONFIG_FILE": str(tmp_path / "nocfg"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "nocreds")}
    with LocalS3Server(log_path=str(tmp_path / "moto.log")) as server:
        s3 = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                          aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"])
        s3.create_bucket(Bucket="ticks")
        cfg = tmp_path / "run.toml"
        cfg.write_text(f"""
[archive]
root = "{tmp_path / 'archive'}"
[log]
dir = "{tmp_path / 'logs'}"
[metrics]
port = 0
[s3]
url = "s3://ticks/capture"
endpoint_url = "{server.endpoint}"
[exchanges.synthetic]
symbols = ["AAA", "BBB"]
channels = ["trades"]
url = "synthetic://?rate=2000&seed=3"
""")
        proc = subprocess.run([*capture_cmd, "run", str(cfg), "--duration", "3"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        root = tmp_path / "archive"
        local = {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*.parquet")
                 if not any(part.startswith(".") for part in p.relative_to(root).parts)}
        assert any(k.startswith("trades/exchange=synthetic/") for k in local)
        listed = s3.list_objects_v2(Bucket="ticks", Prefix="capture/").get("Contents", [])
        remote = {o["Key"].removeprefix("capture/"): o["Size"] for o in listed}
        assert remote == local
        assert CREDS["AWS_SECRET_ACCESS_KEY"] not in proc.stdout + proc.stderr
