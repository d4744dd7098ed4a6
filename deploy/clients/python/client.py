#!/usr/bin/python3
"""Send inference requests to a Dělen agent over MQTT and print every result.

Runs on Debian's python3-paho-mqtt, python3-msgpack and python3-numpy
(`make setup` installs them; use /usr/bin/python3, which has them):

    /usr/bin/python3 deploy/clients/python/client.py --broker tcp://127.0.0.1:1883 --tenant cam1
    /usr/bin/python3 deploy/clients/python/client.py --broker tcp://HOST:1883 --tenant cam1 \\
        --user cam1 --password "$CAM1_PASSWORD" --image frame.jpg

It sends a 28×28 uint8 tensor (a vertical bar, roughly a "1") once as
msgpack and once as JSON (base64 data), and, with --image, the JPEG or PNG
file as the camera wrote it, again in both encodings (the agent decodes,
resizes and normalises it). Each result is printed as one JSON line. The
exit status is 0 only when every request came back with status "ok"; 1
when one did not or none came within --timeout; 2 on a usage error.
"""

import argparse
import base64
import json
import os
import sys
import threading
import time
import urllib.parse

import msgpack
import numpy as np
import paho.mqtt.client as mqtt


def bar_digit():
    """A 28×28 uint8 image: a vertical bar, roughly a "1"."""
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[4:24, 13:16] = 255
    return pixels


def image_format(data):
    """'jpeg' or 'png' from a file's first bytes, else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    return None


def requests_for(args, run):
    """The (id, payload) pairs to publish: msgpack and JSON of each input."""
    inputs = []
    pixels = bar_digit()
    inputs.append(("tensor", {"dtype": "uint8", "shape": [1, 28, 28], "data": pixels.tobytes()}))
    if args.image:
        with open(args.image, "rb") as f:
            data = f.read()
        fmt = image_format(data)
        if fmt is None:
            sys.exit(f"--image {args.image}: not a JPEG or PNG file")
        inputs.append((fmt, {"format": fmt, "data": data}))
    bound = {"exit": args.exit} if args.exit else {}
    out = []
    for kind, tensor in inputs:
        for enc in ("msgpack", "json"):
            req = {"id": f"py-{run}-{kind}-{enc}", "input": dict(tensor), "sent_at": int(time.time() * 1e6)}
            if bound:
                req["bound"] = bound
            if enc == "msgpack":
                payload = msgpack.packb(req, use_bin_type=True)
            else:
                req["input"]["data"] = base64.b64encode(tensor["data"]).decode("ascii")
                payload = json.dumps(req).encode()
            out.append((req["id"], payload))
    return out


def decode_result(payload):
    """A result in the encoding it came in (JSON when it starts with '{')."""
    if payload.lstrip()[:1] == b"{":
        return json.loads(payload)
    return msgpack.unpackb(payload, raw=False)


def new_client(client_id):
    """A paho client with version-1 callbacks, on paho-mqtt 1.x and 2.x."""
    if hasattr(mqtt, "CallbackAPIVersion"):
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id, clean_session=True)
    return mqtt.Client(client_id=client_id, clean_session=True)


def main():
    p = argparse.ArgumentParser(description="Send requests to a Dělen agent and print the results.")
    p.add_argument("--broker", default="tcp://127.0.0.1:1883", help="broker URL, tcp://HOST:PORT")
    p.add_argument("--tenant", required=True, help="tenant name")
    p.add_argument("--user", help="MQTT user name (default: the tenant, when a password is given)")
    p.add_argument("--password", default=os.environ.get("DELEN_MQTT_PASSWORD") or None,
                   help="MQTT password (or DELEN_MQTT_PASSWORD)")
    p.add_argument("--image", help="also send this JPEG or PNG file as the input")
    p.add_argument("--exit", type=int, default=0, help="fixed exit (1-based); default: the tenant's bound")
    p.add_argument("--prefix", default="delen", help="topic prefix")
    p.add_argument("--timeout", type=float, default=10, help="seconds to wait for all results")
    args = p.parse_args()

    url = urllib.parse.urlparse(args.broker)
    if url.scheme not in ("tcp", "mqtt") or not url.hostname:
        p.error(f"--broker {args.broker}: want tcp://HOST:PORT")
    run = f"{os.getpid()}-{int(time.time() * 1000)}"
    reqs = requests_for(args, run)
    pending = {rid for rid, _ in reqs}
    results = {}
    done = threading.Event()  # all results in, or a failure
    ready = threading.Event()  # subscribed, or a failure
    failure = []

    client = new_client(f"py-{run}")
    if args.password is not None:
        client.username_pw_set(args.user or args.tenant, args.password)

    def on_connect(c, userdata, flags, rc):
        if rc != 0:
            failure.append(f"connection refused: {mqtt.connack_string(rc)}")
            done.set()
            ready.set()
            c.disconnect()  # no retries with refused credentials
            return
        c.subscribe(f"{args.prefix}/{args.tenant}/results", qos=1)

    def on_subscribe(c, userdata, mid, granted_qos):
        if any(q == 0x80 for q in granted_qos):
            failure.append("subscription to the results topic refused")
            done.set()
        ready.set()

    def on_message(c, userdata, msg):
        try:
            res = decode_result(msg.payload)
        except Exception as e:  # a result this client cannot read
            failure.append(f"undecodable result: {e}")
            return
        rid = res.get("id")
        if rid not in pending or rid in results:
            return
        results[rid] = res
        print(json.dumps(res, sort_keys=True), flush=True)
        if len(results) == len(pending):
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(url.hostname, url.port or 1883, keepalive=30)
    except OSError as e:
        print(f"connect {args.broker}: {e}", file=sys.stderr)
        return 1
    client.loop_start()
    try:
        deadline = time.monotonic() + args.timeout
        if not ready.wait(args.timeout) or failure:
            print(failure[0] if failure else "not subscribed within the timeout", file=sys.stderr)
            return 1
        for rid, payload in reqs:
            client.publish(f"{args.prefix}/{args.tenant}/requests", payload, qos=1).wait_for_publish()
        done.wait(max(0, deadline - time.monotonic()))
    finally:
        client.loop_stop()
        client.disconnect()
    for msg in failure:
        print(msg, file=sys.stderr)
    missing = sorted(pending - set(results))
    if missing:
        print(f"no result within {args.timeout:g} s for {', '.join(missing)}", file=sys.stderr)
    bad = [rid for rid, r in results.items() if r.get("status") != "ok"]
    if bad:
        print(f"not ok: {', '.join(sorted(bad))}", file=sys.stderr)
    return 0 if not missing and not bad and not failure else 1


if __name__ == "__main__":
    sys.exit(main())
