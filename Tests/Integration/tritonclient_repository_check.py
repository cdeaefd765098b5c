#!/usr/bin/env python3
"""Drives `sliceserve serve --model-repository DIR --model-control-mode explicit
--http-restricted-api model-repository:admin-key=secret` with Triton's own Python client.

The repository holds `mobilenet` (versions 1 and 2, all served), `broken` (a config.pbtxt with a
syntax error) and `trt` (a TensorRT plan). Checks the restricted API, the repository index,
load/unload (with tritonclient's bodies), versioned inference, the reasons failed loads give,
and that reloading and unloading under load lose no admitted request. Exits non-zero with a
message on the first mismatch.

Usage: tritonclient_repository_check.py --url 127.0.0.1:8000
"""
import argparse
import sys
import threading

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

ADMIN = {"admin-key": "secret"}


def check(condition, message):
    if not condition:
        print(f"FAIL: {message}", file=sys.stderr)
        sys.exit(1)


def expect_error(call, text, message):
    try:
        call()
    except InferenceServerException as e:
        check(text in str(e), f"{message}: {e}")
        return
    check(False, f"{message}: no error")


def infer(client, version=""):
    x = np.full((1, 3, 224, 224), 0.5, dtype=np.float32)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    return client.infer("mobilenet", [inp], model_version=version).as_numpy("logits")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="127.0.0.1:8000")
    args = parser.parse_args()
    client = httpclient.InferenceServerClient(args.url, concurrency=4)

    check(client.is_server_ready(), "ready with no model loaded")
    check("model_repository" in client.get_server_metadata()["extensions"], "the extension is advertised")
    expect_error(lambda: client.get_model_repository_index(), "restricted", "the index needs the header")
    expect_error(lambda: client.load_model("mobilenet"), "restricted", "load needs the header")

    index = client.get_model_repository_index(headers=ADMIN)
    check(sorted(e["name"] for e in index) == ["broken", "mobilenet", "trt"], f"index {index}")
    check(all(e.get("state") == "UNAVAILABLE" for e in index), f"nothing loaded yet: {index}")
    check(not client.is_model_ready("mobilenet"), "not loaded yet")

    client.load_model("mobilenet", headers=ADMIN)
    check(client.is_model_ready("mobilenet", "1") and client.is_model_ready("mobilenet", "2"), "both versions ready")
    check(client.get_model_metadata("mobilenet")["versions"] == ["1", "2"], "versions in the metadata")
    one, two = infer(client, "1"), infer(client, "2")
    check(one.shape == (1, 1000) and np.allclose(one, two), "versions 1 and 2 (the same file) answer alike")
    check(np.allclose(infer(client), two), "no version: the latest")
    expect_error(lambda: infer(client, "3"), "no version '3'", "an absent version")

    expect_error(lambda: client.load_model("broken", headers=ADMIN), "line 3", "a broken config says where")
    expect_error(lambda: client.load_model("trt", headers=ADMIN), "tensorrt_plan", "another platform says so")
    expect_error(lambda: client.load_model("absent", headers=ADMIN), "no folder absent", "an absent model")
    check(client.is_model_ready("mobilenet"), "failed loads leave the served models alone")
    index = {(e["name"], e.get("version", "")): e for e in client.get_model_repository_index(headers=ADMIN)}
    check("line 3" in index[("broken", "")].get("reason", ""), f"the index says why: {index}")

    # Reload and unload while requests flow: every request is answered 200, or 400/404 once the
    # model is gone (refused at the door, never admitted and lost).
    statuses = []
    stop = threading.Event()

    def load():
        # tritonclient.http runs on gevent: one client per thread.
        own = httpclient.InferenceServerClient(args.url)
        while not stop.is_set():
            try:
                infer(own)
                statuses.append(200)
            except InferenceServerException as e:
                statuses.append(e.status())

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    client.load_model("mobilenet", headers=ADMIN)  # reload: versions swap with no gap
    reloaded = len(statuses)
    client.unload_model("mobilenet", headers=ADMIN, unload_dependents=False)
    stop.set()
    for t in threads:
        t.join()
    check(reloaded > 0 and all(s == 200 for s in statuses[:reloaded]), f"no request failed across the reload: {statuses[:reloaded]}")
    bad = [s for s in statuses if str(s) not in ("200", "400", "404")]
    check(not bad, f"unload under load: {bad}")
    check(not client.is_model_ready("mobilenet"), "unloaded")
    print(f"all checks passed ({len(statuses)} requests under reload and unload)")


if __name__ == "__main__":
    main()
