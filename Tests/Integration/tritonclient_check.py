#!/usr/bin/env python3
"""Drives a running `sliceserve serve` with Triton's own Python HTTP client (tritonclient[http]).

Checks health, metadata, JSON and binary FP32 inference, BYTES JPEG inference with the
classification extension, a batch of several images, request ids, statistics and the repository
index. Exits non-zero with a message on the first mismatch.

Usage: tritonclient_check.py --url 127.0.0.1:8000 --photos DIR
"""
import argparse
import sys

import numpy as np
import tritonclient.http as httpclient


def check(condition, message):
    if not condition:
        print(f"FAIL: {message}", file=sys.stderr)
        sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="127.0.0.1:8000")
    parser.add_argument("--photos", required=True)
    args = parser.parse_args()
    client = httpclient.InferenceServerClient(args.url)

    check(client.is_server_live(), "server live")
    check(client.is_server_ready(), "server ready")
    check(client.is_model_ready("mobilenet_v2"), "model ready")
    check(client.is_model_ready("mobilenet_v2_jpeg"), "jpeg entry ready")
    meta = client.get_model_metadata("mobilenet_v2")
    check(meta["inputs"][0]["shape"] == [-1, 3, 224, 224], f"metadata {meta}")

    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    results = []
    for binary in (True, False):
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = httpclient.InferRequestedOutput("logits", binary_data=binary)
        r = client.infer("mobilenet_v2", [inp], outputs=[out], request_id=f"fp32-{binary}")
        check(r.get_response()["id"] == f"fp32-{binary}", "request id echoed")
        results.append(r.as_numpy("logits"))
    check(results[0].shape == (2, 1000), f"logits shape {results[0].shape}")
    check(np.abs(results[0] - results[1]).max() == 0, "JSON and binary tensors agree")

    names = ["coffee", "chelsea", "china"]
    expected = [967, 285, 698]
    images = np.array([open(f"{args.photos}/{n}.jpg", "rb").read() for n in names], dtype=np.object_)
    inp = httpclient.InferInput("image", [len(names)], "BYTES")
    inp.set_data_from_numpy(images, binary_data=True)
    r = client.infer("mobilenet_v2_jpeg", [inp], outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=True, class_count=1)])
    top = [int(row[0].decode().split(":")[1]) for row in r.as_numpy("probabilities")]
    check(top == expected, f"classification extension: top classes {top}, expected {expected}")
    r = client.infer("mobilenet_v2_jpeg", [inp])
    probabilities = r.as_numpy("probabilities")
    check(probabilities.shape == (3, 1000) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4), "probabilities")
    check(list(probabilities.argmax(axis=1)) == expected, "argmax of probabilities")

    stats = client.get_inference_statistics("mobilenet_v2")
    check(stats["model_stats"][0]["inference_count"] >= 7, f"statistics {stats}")
    index = client.get_model_repository_index()
    check({m["name"] for m in index} == {"mobilenet_v2", "mobilenet_v2_jpeg"}, f"index {index}")
    print("tritonclient: all checks passed")


if __name__ == "__main__":
    main()
