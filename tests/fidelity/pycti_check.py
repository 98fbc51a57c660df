#!/usr/bin/env python3
"""Fidelity check: the official pycti connector helper, unchanged, against the OpenCTI simulator.

Reads the sandbox's JSON line from the SANDBOX_INFO environment variable (fields opencti_url,
opencti_token, live_stream_id, ...). A STREAM connector built with pycti's OpenCTIConnectorHelper
registers, pings, lists the stream collection and listens to the live stream; the script checks that

  1. the recovery snapshot arrives: every indicator the stream's filter selects, as `create` events
     with origin `init-create`, authors and markings before the indicators that use them;
  2. a live event created through the control API after the snapshot reaches the callback;
  3. the platform stored the connector's state from its pings (start_from / recover_until);
  4. after a remote state reset (the UI button) the next ping answers the empty state.

Exits 0 when everything matched, 1 on a mismatch, 2 on a timeout. Bounded to PYCTI_CHECK_TIMEOUT seconds
(default 90, env PYCTI_CHECK_TIMEOUT).
"""

import json
import os
import sys
import threading
import time
import urllib.request
import uuid

TIMEOUT = float(os.environ.get("PYCTI_CHECK_TIMEOUT", "90"))


def fail(message, code=1):
    print(f"pycti_check: FAIL: {message}", file=sys.stderr, flush=True)
    os._exit(code)


def control(base, path, body=None, method=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method or ("POST" if data else "GET"))
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def main():
    info = json.loads(os.environ["SANDBOX_INFO"])
    url, token, stream_id = info["opencti_url"], info["opencti_token"], info["live_stream_id"]

    # Bounded in time whatever happens in pycti's threads.
    watchdog = threading.Timer(TIMEOUT, lambda: fail(f"timed out after {TIMEOUT:.0f} s", 2))
    watchdog.daemon = True
    watchdog.start()

    # pycti reads OPENCTI_* / CONNECTOR_* from the environment before the config dict: keep only ours.
    for key in list(os.environ):
        if key.startswith(("OPENCTI_", "CONNECTOR_")):
            del os.environ[key]

    streams = control(url, "/_sandbox/streams")["streams"]
    stream = next((s for s in streams if s["id"] == stream_id), None)
    if stream is None:
        fail(f"live stream {stream_id} not listed by /_sandbox/streams")
    expected = stream["snapshot_size"]
    if expected <= 0:
        fail("the live stream selects no indicator")

    from pycti import OpenCTIConnectorHelper  # imported late: it is slow to import

    connector_id = str(uuid.uuid4())
    config = {
        "opencti": {"url": url, "token": token, "json_logging": True},
        "connector": {
            "id": connector_id,
            "type": "STREAM",
            "name": "pycti fidelity check",
            "scope": "crowdstrike",
            "log_level": "error",
            "live_stream_id": stream_id,
            "live_stream_listen_delete": True,
            "live_stream_no_dependencies": True,
            "live_stream_with_inferences": False,
        },
    }
    helper = OpenCTIConnectorHelper(config)

    collection = helper.get_stream_collection()
    if collection.get("id") != stream_id or collection.get("stream_live") is not True:
        fail(f"streamCollection answered {collection!r}")

    lock = threading.Lock()
    seen = {"snapshot": 0, "deps": set(), "live": [], "errors": []}
    snapshot_done = threading.Event()
    live_seen = threading.Event()
    marker = f"pycti-check-{uuid.uuid4().hex[:8]}.example"

    def callback(msg):
        try:
            envelope = json.loads(msg.data)
            data = envelope["data"]
            origin = envelope.get("origin", {}).get("referer")
            with lock:
                if data["type"] in ("identity", "marking-definition"):
                    seen["deps"].add(data["id"])
                elif data["type"] == "indicator" and origin == "init-create":
                    if msg.event != "create":
                        seen["errors"].append(f"snapshot event {msg.event}")
                    if data.get("revoked"):
                        seen["errors"].append(f"revoked indicator {data['id']} in the snapshot")
                    if data.get("created_by_ref") and data["created_by_ref"] not in seen["deps"]:
                        seen["errors"].append(f"author of {data['id']} not sent before it")
                    ext = data["extensions"]["extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba"]
                    if ext.get("is_inferred"):
                        seen["errors"].append("inferred indicator without with-inferences")
                    seen["snapshot"] += 1
                    if seen["snapshot"] == expected:
                        snapshot_done.set()
                elif data["type"] == "indicator":
                    seen["live"].append((msg.event, msg.id, data.get("pattern")))
                    if marker in (data.get("pattern") or ""):
                        live_seen.set()
        except Exception as exc:  # a mismatch must fail the check, not kill pycti's thread silently
            with lock:
                seen["errors"].append(f"bad event {msg.id}: {exc!r}")

    helper.listen_stream(callback)

    if not snapshot_done.wait(TIMEOUT):
        fail(f"received {seen['snapshot']} of {expected} snapshot indicators")
    if not seen["deps"]:
        fail("no author/marking dependency event before the indicators")

    created = control(url, "/_sandbox/indicators", {"observable": {"type": "Domain-Name", "value": marker}})
    if not live_seen.wait(30):
        fail(f"live create {created['event_id']} not received; live events: {seen['live'][-5:]}")

    # The helper persists its state through pingConnector: force one and read it back.
    helper.force_ping()
    connectors = {c["id"]: c for c in control(url, "/_sandbox/connectors")["connectors"]}
    mine = connectors.get(connector_id)
    if mine is None:
        fail("connector not registered")
    if mine["connector_type"] != "STREAM" or mine["connector_scope"] != ["crowdstrike"]:
        fail(f"registration fields: {mine['connector_type']} {mine['connector_scope']}")
    state = json.loads(mine["connector_state"] or "null")
    if not state or "start_from" not in state or "recover_until" not in state:
        fail(f"stored state {mine['connector_state']!r}")
    if state["start_from"] == "0-0":
        fail("stored start_from did not advance")

    # A remote reset (the UI button): the next ping (pycti's own API call, as PingAlive sends it)
    # returns the empty state without storing the one sent.
    control(url, f"/_sandbox/connectors/{connector_id}/reset", {})
    result = helper.api.connector.ping(connector_id, helper.get_state(), helper.connector_info.all_details)
    if result["connector_state"] != "":
        fail(f"ping after a remote reset returned {result['connector_state']!r}")
    stored = {c["id"]: c for c in control(url, "/_sandbox/connectors")["connectors"]}[connector_id]
    if stored["connector_state"] != "" or stored["connector_state_reset"] is not False:
        fail(f"after the reset ping the platform holds {stored['connector_state']!r}")

    with lock:
        if seen["errors"]:
            fail("; ".join(seen["errors"][:5]))
    print(
        f"pycti_check: OK: snapshot {seen['snapshot']} indicators + {len(seen['deps'])} dependencies, "
        f"live event {created['event_id']}, state {state['start_from']}, remote reset honoured",
        flush=True,
    )
    # pycti's ListenStream and ping threads are not daemons: end the process here.
    os._exit(0)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001
        fail(f"{type(exc).__name__}: {exc}")
