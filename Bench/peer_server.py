#!/usr/bin/env python3
"""The serving peer: onnxruntime + Pillow behind a plain Python HTTP server, the way many teams
serve a model. POST /v2/models/NAME/classify with a raw JPEG body returns the top-5 classes as
JSON, like SliceServe's route. Preprocessing is torchvision's eval transform with Pillow; one
onnxruntime session (all cores) runs each request alone (no batching); a thread per connection.

Usage: peer_server.py --model DIR [--port 8001]
"""
import argparse
import io
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnxruntime as ort
from PIL import Image


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    config = json.load(open(os.path.join(args.model, "config.json")))
    labels = open(os.path.join(args.model, "labels.txt")).read().splitlines()
    session = ort.InferenceSession(os.path.join(args.model, "model.onnx"), providers=["CPUExecutionProvider"])
    mean = np.array(config["preprocess"]["mean"], np.float32)
    std = np.array(config["preprocess"]["std"], np.float32)
    resize, crop = config["preprocess"]["resize"], config["preprocess"]["crop"]

    def preprocess(blob):
        img = Image.open(io.BytesIO(blob)).convert("RGB")
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        nw, nh = (resize, int(resize * long / short)) if w <= h else (int(resize * long / short), resize)
        img = img.resize((nw, nh), Image.BILINEAR)
        left, top = int(round((nw - crop) / 2.0)), int(round((nh - crop) / 2.0))
        a = np.asarray(img.crop((left, top, left + crop, top + crop)), np.uint8).astype(np.float32) / np.float32(255)
        return ((a - mean) / std).transpose(2, 0, 1)[None]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every keep-alive response.
        disable_nagle_algorithm = True

        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                logits = session.run(None, {"input": preprocess(body)})[0][0]
                e = np.exp(logits - logits.max())
                p = e / e.sum()
                top = np.argsort(-p)[:5]
                out = json.dumps({"predictions": [{"index": int(i), "label": labels[i], "probability": float(p[i])} for i in top]})
                status = 200
            except Exception as error:  # a bad image
                out, status = json.dumps({"error": str(error)}), 400
            data = out.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    ThreadingHTTPServer.daemon_threads = True
    print(f"peer: serving on 127.0.0.1:{args.port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
