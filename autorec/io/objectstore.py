"""S3-compatible object storage (AWS S3, MinIO, Ceph, SeaweedFS) through boto3.

Why boto3: it reads credentials from the usual chain (environment, `~/.aws/credentials`, config
files, instance roles) so autorec never holds a secret; its managed transfer (s3transfer) does
multipart uploads with per-part checksums, aborts a multipart upload that fails, and has a
bandwidth cap; and it is what every S3-compatible store is tested against.

Contract:
- `StoreLocation.parse("s3://BUCKET/PREFIX")` -> bucket and prefix (no leading/trailing '/');
  ValueError in words a user can act on.
- `ObjectStore(location, endpoint)` makes a client lazily (in the thread that first uses it).
  Credentials come only from boto3's chain; they are never logged or shown (`describe()` names
  bucket, prefix and endpoint only).
- `upload_file(path, key, sha256)` uploads with SHA-256 checksums (the server checks each part),
  the file's whole SHA-256 as metadata `sha256`, then `head_object` to confirm length and
  metadata. A failed multipart upload is aborted by s3transfer; nothing is ever written under
  the final key before the upload completes (S3 makes an object visible only when complete).
- Every failure is a `StoreError` with `kind` `auth`, `no_bucket`, `missing` (no such key),
  `unreachable`, `integrity`, `rig_taken` or `other`, and a one-line message without secrets.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HASH_CHUNK = 1 << 20
PART_SIZE = 8 << 20  # s3transfer's default multipart threshold and part size
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "403",
    "Forbidden",
    "ExpiredToken",
    "InvalidToken",
    "AuthorizationHeaderMalformed",
}
_NO_BUCKET_CODES = {"NoSuchBucket"}


@dataclass(frozen=True)
class StoreLocation:
    """`s3://BUCKET/PREFIX`: where a lab's data goes."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> StoreLocation:
        if not isinstance(url, str) or not url.startswith("s3://"):
            raise ValueError(f"expected s3://BUCKET/PREFIX, got {url!r}")
        rest = url[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.match(bucket):
            raise ValueError(f"bad bucket name {bucket!r} in {url!r} (3-63 lower-case letters, digits, '.', '-')")
        prefix = prefix.strip("/")
        if "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
            raise ValueError(f"bad prefix {prefix!r} in {url!r} (no empty, '.' or '..' parts)")
        return cls(bucket, prefix)

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def check_endpoint(endpoint: str) -> str:
    """An endpoint URL `http(s)://HOST[:PORT]`; ValueError otherwise. Credentials in it are refused:
    they belong in boto3's chain, and a URL ends up in log lines."""
    parts = urllib.parse.urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an endpoint like http://HOST:PORT, got {endpoint!r}")
    if parts.username or parts.password:
        raise ValueError(
            "credentials do not go in the endpoint URL: "
            "use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials"
        )
    _ = parts.port  # ValueError for a port above 65535
    return endpoint.rstrip("/")


class StoreError(Exception):
    """A store operation failed. `kind`: auth, no_bucket, unreachable, integrity, other."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def permanent(self) -> bool:
        """Retrying soon will not help (wrong credentials, no bucket, a rig name another recorder
        uses): say it once, retry slowly."""
        return self.kind in ("auth", "no_bucket", "rig_taken")


def file_sha256(path: Path, stop: threading.Event | None = None) -> tuple[str, int]:
    """(hex SHA-256, bytes) of a file. hashlib drops the GIL on large blocks: recording goes on."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while block := f.read(HASH_CHUNK):
            h.update(block)
            n += len(block)
            if stop is not None and stop.is_set():
                raise StoreError("other", "stopped")
    return h.hexdigest(), n


def classify(exc: BaseException, store: ObjectStore | None = None, what: str = "") -> StoreError:
    """A boto3/botocore exception as a `StoreError` with one clear line (never a credential)."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    where = store.describe() if store is not None else "the store"
    prefix = f"{what}: " if what and what != "bucket" else ""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StoreError(
            "auth",
            f"{prefix}no credentials for {where} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE, or ~/.aws/credentials)",
        )
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ConnectionError, OSError)):
        return StoreError("unreachable", f"{prefix}cannot reach {where}: {type(exc).__name__}")
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _AUTH_CODES or status == 403:
            return StoreError(
                "auth",
                f"{prefix}{where} refused the credentials ({code or status}): check AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY / AWS_PROFILE and the key's rights on the bucket",
            )
        if code in _NO_BUCKET_CODES or (status == 404 and what == "bucket"):
            bucket = store.location.bucket if store else "?"
            host = (store.endpoint if store else None) or "AWS"
            return StoreError("no_bucket", f"{prefix}bucket {bucket!r} does not exist at {host}")
        if code in ("NoSuchKey", "404") or status == 404:
            return StoreError("missing", f"{prefix}no such object in {where}")
        if status is not None and status >= 500:
            return StoreError("unreachable", f"{prefix}{where} failed: {code or status}")
        return StoreError("other", f"{prefix}{where}: {code or status}: {err.get('Message', '')}".rstrip(": "))
    # s3transfer wraps client errors in its own exception with the original as cause/context
    inner = exc.__cause__ or exc.__context__
    if inner is not None and inner is not exc:
        return classify(inner, store, what)
    return StoreError("other", f"{prefix}{where}: {type(exc).__name__}: {exc}")


class ObjectStore:
    """One bucket and prefix on one endpoint. See the module docstring. Use from one thread at a time
    per method call; the client itself is thread-safe."""

    def __init__(self, location: StoreLocation, endpoint: str | None = None, max_rate: int | None = None) -> None:
        self.location = location
        self.endpoint = endpoint
        self.max_rate = max_rate
        self._client: Any = None
        self._transfer: Any = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"{self.location}" + (f" at {self.endpoint}" if self.endpoint else "")

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    retries={"max_attempts": 2, "mode": "standard"},  # our own backoff does the long retries
                    connect_timeout=5,
                    read_timeout=30,
                    # the SHA-256 we ask for, not botocore's default CRC32 on top
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    # Over http botocore would SHA-256 the body a second time for the signature: the
                    # x-amz-checksum-sha256 header we send is signed and the server checks the body
                    # against it, so the body stays covered. 25 -> ~18 ms of CPU per 6 MB segment.
                    s3={"payload_signing_enabled": False},
                )
                # "Found credentials in environment variables" on every command: noise, not news
                logging.getLogger("botocore.credentials").setLevel(logging.WARNING)
                session = boto3.session.Session()
                self._client = session.client(
                    "s3", endpoint_url=self.endpoint, config=config, region_name=session.region_name or "us-east-1"
                )
            return self._client

    # -- checks --------------------------------------------------------------------------------

    def check_bucket(self) -> None:
        """StoreError (auth, no_bucket, unreachable) unless the bucket exists and the credentials work."""
        try:
            self.client.head_bucket(Bucket=self.location.bucket)
        except Exception as exc:
            raise classify(exc, self, "bucket") from None

    # -- writing -------------------------------------------------------------------------------

    def upload(
        self,
        source: Path | bytes,
        key: str,
        sha256: str,
        size: int,
        progress: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
        content_type: str = "application/octet-stream",
    ) -> None:
        """Upload a file (or bytes: a snapshot of a file still growing) to `key`, then confirm it.
        StoreError on any failure (see the module docstring)."""
        from boto3.s3.transfer import ProgressCallbackInvoker

        extra = {
            "ChecksumAlgorithm": "SHA256",
            "Metadata": {"sha256": sha256},
            "ContentType": content_type,
        }
        if size < PART_SIZE:
            # One request: the server checks the whole object against our own SHA-256.
            import base64

            extra["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(sha256)).decode()
            del extra["ChecksumAlgorithm"]

        def callback(n: int) -> None:
            if cancel is not None and cancel.is_set():
                raise StoreError("other", "stopped")  # s3transfer aborts the multipart upload
            if progress is not None:
                progress(n)

        if size < PART_SIZE and self.max_rate is None:
            self._put_small(source, key, extra, size, callback)
            return
        body = io.BytesIO(source) if isinstance(source, bytes) else str(source)
        try:
            future = self.transfer.upload(
                body, self.location.bucket, key, extra_args=extra, subscribers=[ProgressCallbackInvoker(callback)]
            )
            future.result()
        except Exception as exc:
            raise classify(exc, self, key) from None
        self.verify(key, sha256, size)

    def _put_small(
        self, source: Path | bytes, key: str, extra: dict[str, Any], size: int, callback: Callable[[int], None]
    ) -> None:
        """One PutObject, without s3transfer's threads (7.3 instead of 8.3 ms of CPU per 5 MB file). The
        server checks the body against our ChecksumSHA256 (BadDigest otherwise) and says so in its
        answer; a store that does not answer with it is asked with head_object."""
        callback(0)  # a stop asked for meanwhile
        try:
            if isinstance(source, bytes):
                answer = self.client.put_object(Bucket=self.location.bucket, Key=key, Body=source, **extra)
            else:
                with open(source, "rb") as body:
                    answer = self.client.put_object(Bucket=self.location.bucket, Key=key, Body=body, **extra)
        except Exception as exc:
            raise classify(exc, self, key) from None
        callback(size)
        if answer.get("ChecksumSHA256") != extra["ChecksumSHA256"]:
            self.verify(key, extra["Metadata"]["sha256"], size)

    @property
    def transfer(self) -> Any:
        """One s3transfer manager for the store's life: its threads are started once, not per file
        (10.2 -> 8.3 ms of CPU per 5 MB file), and the bandwidth cap holds across files."""
        client = self.client
        with self._lock:
            if self._transfer is None:
                from boto3.s3.transfer import TransferConfig, create_transfer_manager

                config = TransferConfig(
                    multipart_threshold=PART_SIZE,
                    multipart_chunksize=PART_SIZE,
                    max_bandwidth=self.max_rate,
                )
                self._transfer = create_transfer_manager(client, config)
            return self._transfer

    def close(self) -> None:
        """Stop the transfer threads (after the uploads in flight)."""
        with self._lock:
            transfer, self._transfer = self._transfer, None
        if transfer is not None:
            transfer.shutdown()

    def verify(self, key: str, sha256: str, size: int) -> None:
        """StoreError('integrity') unless `key` holds `size` bytes stored with our SHA-256."""
        try:
            head = self.client.head_object(Bucket=self.location.bucket, Key=key, ChecksumMode="ENABLED")
        except Exception as exc:
            raise classify(exc, self, key) from None
        got = head.get("Metadata", {}).get("sha256")
        if head.get("ContentLength") != size or got != sha256:
            raise StoreError(
                "integrity",
                f"{key}: the store holds {head.get('ContentLength')} bytes (sha256 {got}), expected {size} ({sha256})",
            )

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        import base64

        digest = hashlib.sha256(data).digest()
        try:
            self.client.put_object(
                Bucket=self.location.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                ChecksumSHA256=base64.b64encode(digest).decode(),
                Metadata={"sha256": digest.hex()},
            )
        except Exception as exc:
            raise classify(exc, self, key) from None

    def abort_unfinished(self, key: str) -> int:
        """Abort multipart uploads left under `key` (by a killed process); how many."""
        n = 0
        try:
            listed = self.client.list_multipart_uploads(Bucket=self.location.bucket, Prefix=key)
            for upload in listed.get("Uploads", []):
                if upload.get("Key") == key:
                    self.client.abort_multipart_upload(
                        Bucket=self.location.bucket, Key=key, UploadId=upload["UploadId"]
                    )
                    n += 1
        except Exception as exc:
            raise classify(exc, self, key) from None
        return n

    # -- reading -------------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.location.bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise classify(exc, self, key) from None

    def get_tail(self, key: str, n: int) -> bytes:
        """The last `n` bytes of an object (all of it when smaller)."""
        try:
            return self.client.get_object(Bucket=self.location.bucket, Key=key, Range=f"bytes=-{n}")["Body"].read()
        except Exception as exc:
            raise classify(exc, self, key) from None

    def open_object(self, key: str) -> tuple[Any, int]:
        """A readable stream of an object (`.read(n)`, `.close()`) and its size, for sending it on."""
        try:
            obj = self.client.get_object(Bucket=self.location.bucket, Key=key)
        except Exception as exc:
            raise classify(exc, self, key) from None
        return obj["Body"], int(obj.get("ContentLength") or 0)

    def list_keys(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under `prefix`."""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.location.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"], obj["Size"]
        except Exception as exc:
            raise classify(exc, self, prefix or "list") from None
