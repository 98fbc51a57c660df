"""Fidelity check: the official FalconPy client, unchanged, against the cti-sandbox Falcon simulator.

Reads the sandbox's JSON line from $SANDBOX_INFO; exits non-zero on the first mismatch.
Covers: OAuth2 (and that FalconPy stays on the sandbox after reading X-Cs-Region), paging hosts
(offset and scroll) and host details, IOC create/duplicate/search/get/update/delete, and an RTR
batch session running a read-only and an admin command.
"""

import json
import os
import sys
import urllib.request
import uuid

from falconpy import IOC, OAuth2, Hosts, RealTimeResponse, RealTimeResponseAdmin

INFO = json.loads(os.environ["SANDBOX_INFO"])
BASE = INFO["falcon_url"]
CHECKS = 0


def check(condition, what, detail=None):
    """Fail loudly on a mismatch."""
    global CHECKS
    CHECKS += 1
    if not condition:
        print(f"FAIL: {what}", file=sys.stderr)
        if detail is not None:
            print(json.dumps(detail, indent=2, default=str)[:4000], file=sys.stderr)
        sys.exit(1)


def control(path):
    """GET a control route of the Falcon simulator."""
    with urllib.request.urlopen(f"{BASE}{path}", timeout=10) as resp:
        return json.loads(resp.read())


def main():
    # --- OAuth2 -------------------------------------------------------------------------------
    auth = OAuth2(client_id=INFO["falcon_client_id"], client_secret=INFO["falcon_client_secret"], base_url=BASE)
    token = auth.token()
    check(token["status_code"] == 201, "token is issued with 201", token)
    check(token["body"].get("expires_in") == 1799, "token expires_in is 1799", token["body"])
    region = {k.lower(): v for k, v in token["headers"].items()}.get("x-cs-region")
    check(region is not None, "token response carries X-Cs-Region", token["headers"])
    check(auth.base_url == BASE, f"FalconPy stays on the sandbox after region discovery (got {auth.base_url})")
    bad = OAuth2(client_id=INFO["falcon_client_id"], client_secret="wrong", base_url=BASE).token()
    check(bad["status_code"] == 403, "a wrong secret is refused with 403", bad)

    # --- Hosts: offset paging, scroll paging, details -----------------------------------------
    hosts = Hosts(auth_object=auth)
    expected = control("/_sandbox/hosts")["hosts"]
    seen = []
    offset = 0
    while True:
        page = hosts.query_devices_by_filter(limit=7, offset=offset, sort="hostname.asc")
        check(page["status_code"] == 200, "query_devices_by_filter answers 200", page)
        ids = page["body"]["resources"]
        seen.extend(ids)
        total = page["body"]["meta"]["pagination"]["total"]
        offset += len(ids)
        if not ids or offset >= total:
            break
    check(sorted(seen) == sorted(h["device_id"] for h in expected), "offset paging visits every host once")
    scrolled = []
    token_offset = None
    while True:
        kwargs = {"limit": 9}
        if token_offset:
            kwargs["offset"] = token_offset
        page = hosts.query_devices_by_filter_scroll(**kwargs)
        check(page["status_code"] == 200, "query_devices_by_filter_scroll answers 200", page)
        scrolled.extend(page["body"]["resources"])
        token_offset = page["body"]["meta"]["pagination"].get("offset")
        if not token_offset:
            break
    check(sorted(scrolled) == sorted(seen), "scroll paging visits every host once")
    linux = hosts.query_devices_by_filter(filter="platform_name:'Linux'", limit=5000)
    linux_expected = [h["device_id"] for h in expected if h["platform_name"] == "Linux"]
    check(sorted(linux["body"]["resources"]) == sorted(linux_expected), "FQL platform filter matches the fleet", linux)
    details = hosts.get_device_details(ids=seen[:5])
    check(details["status_code"] == 200, "device details answer 200", details)
    check(sorted(d["device_id"] for d in details["body"]["resources"]) == sorted(seen[:5]), "details match the ids")

    # --- IOC Manager ----------------------------------------------------------------------------
    ioc = IOC(auth_object=auth)
    value = f"fidelity-{uuid.uuid4().hex[:8]}.example.com"
    created = ioc.indicator_create(action="detect", applied_globally=True, comment="falconpy fidelity",
                                   platforms=["windows", "linux"], severity="high", type="domain",
                                   value=value, source="falconpy fidelity", tags=["fidelity"])
    check(created["status_code"] == 201, "indicator_create answers 201", created)
    item = created["body"]["resources"][0]
    check(item["value"] == value and item["created_by"] == INFO["falcon_client_id"],
          "created IOC echoes its value and created_by = client id", item)
    dup = ioc.indicator_create(action="detect", applied_globally=True, platforms=["windows"], severity="high",
                               type="domain", value=value)
    check(dup["status_code"] == 400, "a duplicate type+value is refused with 400", dup)
    check(any("Warning: Duplicate type" in (r.get("message") or "") for r in dup["body"]["resources"]),
          "the duplicate carries Falcon's warning text", dup)
    invalid = ioc.indicator_create(action="detect", applied_globally=True, platforms=["windows"], severity="high",
                                   type="ipv4", value="999.1.1.1")
    check(invalid["status_code"] == 400, "an invalid ipv4 value is refused", invalid)
    found = ioc.indicator_search(filter=f"value:'{value}'+created_by:'{INFO['falcon_client_id']}'")
    check(found["status_code"] == 200 and found["body"]["resources"] == [item["id"]], "indicator_search finds it", found)
    combined = ioc.indicator_combined(filter="source:'falconpy fidelity'", limit=10)
    check(combined["status_code"] == 200 and len(combined["body"]["resources"]) == 1, "indicator_combined finds it", combined)
    updated = ioc.indicator_update(id=item["id"], action="no_action", tags=["TO_DELETE"], comment="withdrawn")
    check(updated["status_code"] == 200, "indicator_update answers 200", updated)
    got = ioc.indicator_get(ids=[item["id"]])
    check(got["body"]["resources"][0]["action"] == "no_action"
          and got["body"]["resources"][0]["tags"] == ["TO_DELETE"], "the update is visible", got)
    dumped = control("/_sandbox/iocs")
    check(any(i["id"] == item["id"] for i in dumped["iocs"]), "the control API sees the IOC")
    deleted = ioc.indicator_delete(ids=[item["id"]], comment="falconpy fidelity")
    check(deleted["status_code"] == 200, "indicator_delete answers 200", deleted)
    gone = ioc.indicator_get(ids=[item["id"]])
    check(gone["status_code"] == 404, "a deleted IOC is gone", gone)

    # --- RTR batch session ------------------------------------------------------------------------
    rtr = RealTimeResponse(auth_object=auth)
    rtr_admin = RealTimeResponseAdmin(auth_object=auth)
    online = [h["device_id"] for h in expected if h["online"]][:3]
    check(len(online) >= 1, "the fleet has online hosts")
    init = rtr.batch_init_sessions(host_ids=online, queue_offline=False, timeout=30)
    check(init["status_code"] == 201, "batch_init_sessions answers 201", init)
    batch_id = init["body"]["batch_id"]
    check(set(init["body"]["resources"].keys()) == set(online), "every host got a session", init)
    ls = rtr.batch_command(batch_id=batch_id, base_command="ls", command_string="ls", timeout=30)
    check(ls["status_code"] == 201, "batch_command answers 201", ls)
    for aid in online:
        res = ls["body"]["combined"]["resources"][aid]
        check(res["complete"] and res["stdout"] and not res["errors"], f"ls ran on {aid}", res)
    echo = rtr_admin.batch_admin_command(batch_id=batch_id, base_command="runscript",
                                         command_string="runscript -Raw=```echo fidelity``` -Timeout=30",
                                         timeout=30)
    check(echo["status_code"] == 201, "batch_admin_command answers 201", echo)
    for aid in online:
        res = echo["body"]["combined"]["resources"][aid]
        check(res["stdout"] == "fidelity\n", f"runscript echo ran on {aid}", res)
    refreshed = rtr.batch_refresh_sessions(batch_id=batch_id, timeout=30)
    check(refreshed["status_code"] == 201, "batch_refresh_sessions answers 201", refreshed)

    counts = control("/_sandbox/requests")["routes"]
    check(counts.get("POST /oauth2/token", 0) >= 1, "the sandbox counted FalconPy's requests", counts)
    print(f"falconpy_check: {CHECKS} checks passed against {BASE}")


if __name__ == "__main__":
    main()
