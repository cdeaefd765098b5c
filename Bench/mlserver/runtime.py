"""An MLServer custom runtime for the end-to-end comparison (Bench/mlserver_e2e.py): the model's
ONNX file on onnxruntime (CPU, BENCH_ORT_THREADS intra-op threads, default graph optimizations),
JPEG decode and torchvision's eval transform with Pillow, and a raw-JPEG REST route,
POST /v2/models/NAME/classify, answering the top-5 classes as JSON, as SliceServe's route does,
so the one load generator drives both servers with the same bytes.

This is how a team would serve an image model with MLServer: a custom runtime around
onnxruntime; requests are run one at a time off the event loop (onnxruntime releases the GIL).
"""
import asyncio
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
from fastapi import Request, Response
from mlserver import MLModel
from mlserver.handlers import custom_handler
from PIL import Image


class JPEGClassifier(MLModel):
    async def load(self) -> bool:
        directory = self.settings.parameters.uri
        with open(os.path.join(directory, "config.json")) as f:
            config = json.load(f)
        with open(os.path.join(directory, "labels.txt")) as f:
            self.labels = f.read().splitlines()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("BENCH_ORT_THREADS", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.path.join(directory, "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        pre = config["preprocess"]
        self.mean = np.array(pre["mean"], np.float32)
        self.std = np.array(pre["std"], np.float32)
        self.resize, self.crop = pre["resize"], pre["crop"]
        self.pool = ThreadPoolExecutor(max_workers=1)
        return True

    def preprocess(self, blob):
        img = Image.open(io.BytesIO(blob)).convert("RGB")
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        nw, nh = (self.resize, int(self.resize * long / short)) if w <= h else (int(self.resize * long / short), self.resize)
        img = img.resize((nw, nh), Image.BILINEAR)
        left, top = int(round((nw - self.crop) / 2.0)), int(round((nh - self.crop) / 2.0))
        a = np.asarray(img.crop((left, top, left + self.crop, top + self.crop)), np.uint8).astype(np.float32) / np.float32(255)
        return ((a - self.mean) / self.std).transpose(2, 0, 1)[None]

    def classify_bytes(self, blob):
        logits = self.session.run(None, {self.input_name: self.preprocess(blob)})[0][0]
        e = np.exp(logits - logits.max())
        p = e / e.sum()
        top = np.argsort(-p)[:5]
        return json.dumps({"predictions": [{"index": int(i), "label": self.labels[i], "probability": float(p[i])} for i in top]})

    @custom_handler(rest_path="/v2/models/mobilenet_v2/classify")
    async def classify(self, request: Request) -> Response:
        blob = await request.body()
        try:
            body = await asyncio.get_running_loop().run_in_executor(self.pool, self.classify_bytes, blob)
        except Exception as error:  # a bad image
            return Response(json.dumps({"error": str(error)}), status_code=400, media_type="application/json")
        return Response(body, media_type="application/json")
