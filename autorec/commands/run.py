"""`autorec run`: record the interesting parts of a stream into segments, as the rule file says.

    autorec run --rules rules/electrodes.yaml [--uri ws://rig:7001] [--out DIR] [--duration 8h]
    autorec run --rules rules/electrodes.yaml --sim [--speed 20 --duration 10min ...]
    autorec run --rules rules/electrodes.yaml --log last-night.bin [--dry-run]

All three run the same pipeline (`autorec.core.pipeline`): live against a rig,
against the built-in simulator in this process (127.0.0.1, a free port), or
offline over a log as fast as possible. SIGINT/SIGTERM close the open
segment and exit 0. Exit 2 for a bad rule file or options, 1 when the job
failed (e.g. an unreadable log).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from autorec.sim.config import add_sim_arguments

    p = sub.add_parser(
        "run",
        help="record segments around what the rules find interesting",
        description=(
            "Record the interesting parts of a PurpleDrop stream: triggers in the rule file open "
            "segments with pre-roll and post-roll. Live (--uri), against the built-in simulator "
            "(--sim), or offline over a log (--log, with --dry-run to only list the segments). "
            "--duration ends a live run after that much real time, a --sim run after that much simulated time."
        ),
    )
    p.add_argument("--rules", required=True, metavar="FILE", help="rule file (YAML); see `autorec check`")
    p.add_argument("--uri", default=None, help="websocket of the rig (default: the rule file's source)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default: the rule file's output.dir)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--sim", action="store_true", help="record the built-in simulator, run in this process")
    mode.add_argument(
        "--log", metavar="LOG", default=None, help="backtest: run the rules over a recorded log as fast as possible"
    )
    p.add_argument("--dry-run", action="store_true", help="with --log: print the segments, write nothing")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="with --log: decode camera frames for the motion trigger in N threads (default: the cores; 1: none)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="RULE.OPTION=VALUE",
        help="override a rule's option or segment key for this run (repeatable), checked like the rule file",
    )
    p.add_argument("--no-telemetry", action="store_true", help="do not write the daily telemetry log")
    p.add_argument("--no-timelapse", action="store_true", help="do not write the daily timelapse log")
    add_upload_arguments(p, rig=False)
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("--log-file", default=None, metavar="FILE", help="also write autorec's own messages to FILE")
    p.add_argument(
        "--heartbeat",
        default=None,
        metavar="DURATION",
        help="when stderr is not a terminal, log a status line this often (default: the rule file's "
        "heartbeat, 5min; 0 turns it off)",
    )
    from autorec.commands.serve import add_http_arguments

    add_http_arguments(p, None)
    fleet = p.add_argument_group("one lab, many rigs (docs/how-to/mqtt.md, docs/how-to/metrics.md)")
    fleet.add_argument(
        "--rig",
        default=None,
        metavar="NAME",
        help="this rig's name in MQTT topics, metrics and the store (default: upload.rig, else the host name)",
    )
    fleet.add_argument(
        "--mqtt",
        default=None,
        metavar="URL",
        help="publish events to this broker, mqtt://HOST[:PORT] or mqtts:// (default: the rule file's mqtt.url; "
        "'off': none); user and password from AUTOREC_MQTT_USERNAME / AUTOREC_MQTT_PASSWORD",
    )
    fleet.add_argument(
        "--mqtt-topic", default=None, metavar="PREFIX", help="topic prefix (default: the rule file's, or autorec)"
    )
    fleet.add_argument(
        "--metrics",
        default=None,
        metavar="[HOST:]PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (loopback unless a HOST is given); "
        "with --http they are also at its /metrics",
    )
    # The simulator's options; its --duration (simulated time with --sim) is also how long a live run lasts.
    add_sim_arguments(p, network=False)
    p.set_defaults(func=run)


def add_upload_arguments(p: argparse.ArgumentParser, rig: bool = True) -> None:
    """The rule file's `upload:` keys on the command line (see docs/how-to/upload.md); `rig`: add `--rig`
    (`run` has its own, for MQTT and metrics too)."""
    p.add_argument("--upload-url", default=None, metavar="s3://BUCKET/PREFIX", help="upload closed segments there")
    p.add_argument(
        "--upload-endpoint", default=None, metavar="URL", help="S3 endpoint, e.g. http://nas:8333 (omit for AWS)"
    )
    if rig:
        p.add_argument(
            "--rig", default=None, metavar="NAME", help="this rig's name in the store (default: the host name)"
        )


def upload_settings(args: argparse.Namespace, current, prog: str):
    """The rule file's upload settings with the command line's on top (`--rig` names the rig in the
    store only when there is an upload); False after printing an error."""
    from autorec.core.ruleset import UploadSettings
    from autorec.rules import rig_name, upload_endpoint, upload_url

    given = {
        "url": (args.upload_url, upload_url, "--upload-url"),
        "endpoint": (args.upload_endpoint, upload_endpoint, "--upload-endpoint"),
        "rig": (getattr(args, "rig", None), rig_name, "--rig"),
    }
    changes = {}
    for key, (value, check, option) in given.items():
        if value is None:
            continue
        try:
            changes[key] = check(value)
        except ValueError as exc:
            print(f"autorec {prog}: {option}: {exc}", file=sys.stderr)
            return False
    if current is None and "url" not in changes:
        if "endpoint" in changes:
            print(
                f"autorec {prog}: --upload-endpoint needs --upload-url (or upload.url in the rule file)",
                file=sys.stderr,
            )
            return False
        return None
    from autorec.extras import missing_s3

    if missing_s3(prog, "uploads need"):
        return False
    if not changes:
        return current
    if current is None:
        return UploadSettings(**changes)
    return dataclasses.replace(current, **changes)


def run(args: argparse.Namespace) -> int:
    from autorec.core import rulekeys
    from autorec.rules import ConfigError, Override, load_rules
    from autorec.units import parse_duration

    try:
        args.overrides = [Override.parse(text) for text in args.overrides]
        ruleset = load_rules(args.rules, args.overrides)
    except ConfigError as exc:
        for error in exc.errors:
            print(f"autorec run: {error.line_text()}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"autorec run: cannot read {args.rules}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for warning in ruleset.warnings:
        log.warning("%s", warning)
    if args.dry_run and not args.log:
        print("autorec run: --dry-run needs --log LOG", file=sys.stderr)
        return 2
    ignored = _ignored_options(args)
    if ignored:  # they used to be dropped without a word: say so rather than run with something else
        print(f"autorec run: {ignored}", file=sys.stderr)
        return 2
    try:
        duration = None if args.sim_duration is None else parse_duration(args.sim_duration)
    except ValueError as exc:
        print(f"autorec run: --duration: {exc}", file=sys.stderr)
        return 2
    try:
        if args.heartbeat is not None:
            # As the rule file's `heartbeat` is read (at most 3650d), except that 0 turns it off here.
            beat = rulekeys.key("heartbeat").parse(args.heartbeat)
            ruleset = dataclasses.replace(ruleset, heartbeat=beat if beat > 0 else None)
    except ValueError as exc:
        print(f"autorec run: --heartbeat: {exc}", file=sys.stderr)
        return 2
    upload = upload_settings(args, ruleset.upload, "run")
    if upload is False:
        return 2
    if upload is not ruleset.upload:
        ruleset = dataclasses.replace(ruleset, upload=upload)
    if args.rig is None and upload is not None and upload.rig is not None:
        args.rig = upload.rig  # one name for the store, MQTT and the metrics
    if args.log and upload is not None:
        print(
            "autorec run: uploads are for live runs and --sim (for a finished directory: autorec push DIR)",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out) if args.out else Path(ruleset.output.dir)
    if args.log:
        return _backtest(args, ruleset, out)
    ruleset = _with_fleet_options(args, ruleset)
    if ruleset is None:
        return 2
    return _live(args, ruleset, out, duration)


def _with_fleet_options(args: argparse.Namespace, ruleset):
    """`ruleset` with --mqtt/--mqtt-topic applied, --rig and --metrics checked (into `args.rig`,
    `args.metrics_listen`); None after printing why not (a usage error)."""
    from autorec.extras import install_hint
    from autorec.rig import check_rig_name, default_rig_name
    from autorec.services.mqtt import check_topic, parse_url

    try:
        args.rig = check_rig_name(args.rig) if args.rig is not None else default_rig_name()
    except ValueError as exc:
        print(f"autorec run: --rig: {exc}", file=sys.stderr)
        return None
    mqtt = ruleset.mqtt
    if args.mqtt is not None:
        url = None if args.mqtt.strip().lower() in ("off", "") else args.mqtt.strip()
        try:
            if url is not None:
                parse_url(url)
        except ValueError as exc:
            print(f"autorec run: --mqtt: {exc}", file=sys.stderr)
            return None
        mqtt = dataclasses.replace(mqtt, url=url)
    if args.mqtt_topic is not None:
        try:
            mqtt = dataclasses.replace(mqtt, topic=check_topic(args.mqtt_topic))
        except ValueError as exc:
            print(f"autorec run: --mqtt-topic: {exc}", file=sys.stderr)
            return None
    if mqtt.url and mqtt.ca_file and not os.access(mqtt.ca_file, os.R_OK):
        print(f"autorec run: mqtt.ca_file: cannot read {mqtt.ca_file}", file=sys.stderr)
        return None
    if mqtt.url:
        try:
            import paho.mqtt  # noqa: F401
        except ImportError:
            print(f"autorec run: MQTT needs the 'mqtt' extra (paho-mqtt): {install_hint('mqtt')}", file=sys.stderr)
            return None
    args.metrics_listen = None
    if args.metrics is not None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            print(
                f"autorec run: --metrics needs the 'metrics' extra (prometheus-client): {install_hint('metrics')}",
                file=sys.stderr,
            )
            return None
        from autorec.units import parse_listen

        try:
            args.metrics_listen = parse_listen(args.metrics)
        except ValueError as exc:
            print(f"autorec run: --metrics {exc}", file=sys.stderr)
            return None
    return dataclasses.replace(ruleset, mqtt=mqtt)


# The simulated rig's options besides --duration, with their defaults: they mean nothing without --sim.
_SIM_ONLY = {"scenario": "demo", "seed": 0, "speed": 1.0, "fps": 10.0, "camera": True, "faults": "", "truth": None}


def _ignored_options(args: argparse.Namespace) -> str | None:
    """A message naming options that the chosen mode would ignore, or None."""
    if not args.sim:
        given = [f"--{'no-camera' if k == 'camera' else k}" for k, v in _SIM_ONLY.items() if getattr(args, k) != v]
        if given:
            return f"{', '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} with --sim"
    if args.uri and (args.sim or args.log):
        return f"--uri does not apply with {'--sim' if args.sim else '--log'} (the stream comes from there)"
    if args.log and args.heartbeat is not None:
        return "--heartbeat does not apply to --log (it is for live runs)"
    if args.log and args.sim_duration is not None:
        return "--duration does not apply to --log (the log is read to its end)"
    if args.log and args.http is not None:
        return "--http applies to live runs and --sim (for a finished directory: autorec serve DIR)"
    if args.log:
        given = [o for o in ("rig", "mqtt", "mqtt_topic", "metrics") if getattr(args, o) is not None]
        if given:
            names = ", ".join("--" + o.replace("_", "-") for o in given)
            return f"{names} appl{'y' if len(given) > 1 else 'ies'} to live runs and --sim, not --log"
    if args.token is not None and args.http is None:
        return "--token only applies with --http"
    if args.http_host_names and args.http is None:
        return "--http-host-name only applies with --http"
    if args.jobs is not None and not args.log:
        return "--jobs only applies with --log (a live run analyses frames as they come)"
    return None


def _claim_output(out: Path):
    """Create the output directory and take its instance lock (one recorder per directory).

    Returns the held `InstanceLock`, or None after printing why not (a usage error, exit 2).
    """
    from autorec.io.instancelock import InstanceLock, InstanceLockError

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"autorec run: cannot create {out}: {exc.strerror or exc}", file=sys.stderr)
        return None
    lock = InstanceLock(out)
    try:
        lock.acquire()
    except InstanceLockError as exc:
        print(f"autorec run: {exc}", file=sys.stderr)
        return None
    except OSError as exc:  # a planted link as the lock file, a read-only directory
        print(f"autorec run: cannot lock {out}: {exc.filename or lock.path}: {exc.strerror or exc}", file=sys.stderr)
        return None
    return lock


def _backtest(args: argparse.Namespace, ruleset, out: Path) -> int:
    """Writing segments takes the output directory's instance lock, as a live run does: one recorder per directory."""
    from autorec.runs.backtest import backtest
    from autorec.runs.filesource import log_path_problem

    path = Path(args.log)
    problem = log_path_problem(path)
    if problem is not None:
        print(f"autorec run: --log: {problem}", file=sys.stderr)
        return 1
    if args.dry_run:
        return backtest(ruleset, path, out, dry_run=args.dry_run, jobs=args.jobs)
    lock = _claim_output(out)
    if lock is None:
        return 2
    try:
        return backtest(ruleset, path, out, dry_run=args.dry_run, jobs=args.jobs)
    finally:
        lock.release()


def _live(args: argparse.Namespace, ruleset, out: Path, duration: float | None) -> int:
    from autorec.io.source import DEFAULT_URI, WebsocketSource
    from autorec.runs.live import run_live

    sim_config = None
    if args.sim:
        from autorec.sim.config import SimConfig

        try:
            sim_config = SimConfig.from_args(args)
        except ValueError as exc:
            print(f"autorec run: {exc}", file=sys.stderr)
            return 2
        sim_config.wait_for_clients = 1  # the recorder sees the stream from its first message
        sim_config.pace_to_clients = True  # a busy machine slows the run down rather than losing messages
    companions = []
    if args.http is not None:
        from autorec.commands.serve import http_settings

        http = http_settings(args, "run")
        if http is None:
            return 2
        from autorec.web.server import live_companion

        companions.append(live_companion(out, *http))
    if args.metrics_listen is not None:
        from autorec.services.metrics import metrics_companion

        companions.append(metrics_companion(*args.metrics_listen))
    uri = args.uri or ruleset.source or DEFAULT_URI
    live_source = None
    if sim_config is None:
        try:
            live_source = WebsocketSource(uri)  # check the URI now, not inside the event loop (a traceback)
        except ValueError as exc:
            print(f"autorec run: --uri: {exc}", file=sys.stderr)
            return 2
    lock = _claim_output(out)
    if lock is None:
        return 2
    try:
        if lock.previous is not None:
            log.info("took over the lock of a recorder that is gone (%s)", lock.previous.describe())
        return run_live(
            ruleset,
            out,
            uri=uri,
            live_source=live_source,
            sim_config=sim_config,
            duration=duration,
            companions=companions,
            rig=args.rig,
            telemetry=ruleset.output.telemetry and not args.no_telemetry,
            timelapse=ruleset.output.timelapse is not None and not args.no_timelapse,
            overrides=list(args.overrides),
        )
    finally:
        lock.release()
