#!/usr/bin/env python3
"""Reference outputs ("oracles") for SliceServe's tests, from Pillow and numpy.

One script makes every Python-side reference the Swift tests compare against, into an ignored
cache folder (default .cache/oracles). The test command runs it first. Idempotent: a stamp of
this script's hash and the library versions skips the work when nothing changed.

preprocess/: test JPEGs made from the real photos (variants: grayscale, progressive, CMYK,
YCCK, 4:4:4 / 4:2:2 / 4:2:0, odd sizes, 1x1, very wide and tall) and, for each:
  NAME.jpg             the encoded image
  NAME.decoded.npy     Pillow's decode, converted to RGB (uint8 HxWx3)
  NAME.resized.npy     Pillow's resize of the shorter side to 256, BILINEAR (uint8)
  NAME.nchw_f32.npy    torchvision's ImageNet eval transform (Resize 256, CenterCrop 224,
                       ToTensor, Normalize), written with numpy in torchvision's float32 order
  NAME.nhwc_f16.npy    the same, channels last, rounded to float16
  NAME.pad_f32.npy     (small images only) CenterCrop 224 without resizing: torchvision pads
manifest.json lists the cases.

ops/: the operator conformance cases (think ggml's test-backend-ops): one small ONNX model per
operator and attribute combination, a seeded random input, and onnxruntime's output:
  CASE/model.onnx, CASE/input.npy, CASE/expected.npy; ops/manifest.json lists them, and
  ops/bad/*.onnx are broken models the loader must reject (ops/bad/manifest.json says how).

resnet50/: ResNet-50 v1.5 built with onnx's helper API (seeded random weights, each convolution
followed by a BatchNormalization, as an unfused export has it): model.onnx, a seeded random batch
(input.npy, [2,3,224,224]) and onnxruntime's logits (logits.npy). Bench/executor.py runs it too.

models/NAME/: for each converted model in the model directory (Scripts/models.py): a seeded
random batch and the real photos' tensors (input.npy, [N,3,224,224]) with onnxruntime's logits
(logits.npy), and photos.json naming the photo of each row.
"""
import argparse
import ctypes
import ctypes.util
import hashlib
import io
import json
import os
import sys

import numpy as np
from PIL import Image, features

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# --- torchvision's transform, written out (torch is not available on the build machines) ------

def tv_resize(img, size):
    """torchvision.transforms.functional.resize(img, size) for an int size, PIL backend."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), Image.BILINEAR)


def tv_center_crop(img, crop):
    """torchvision.transforms.functional.center_crop for a square crop, PIL backend."""
    w, h = img.size
    if crop > w or crop > h:
        left = (crop - w) // 2 if crop > w else 0
        top = (crop - h) // 2 if crop > h else 0
        right = (crop - w + 1) // 2 if crop > w else 0
        bottom = (crop - h + 1) // 2 if crop > h else 0
        padded = Image.new(img.mode, (w + left + right, h + top + bottom), 0)
        padded.paste(img, (left, top))
        img = padded
        w, h = img.size
        if w == crop and h == crop:
            return img
    top = int(round((h - crop) / 2.0))
    left = int(round((w - crop) / 2.0))
    return img.crop((left, top, left + crop, top + crop))


def tv_to_normalized(img):
    """ToTensor (uint8 -> float32, / 255) then Normalize, as float32 HWC."""
    a = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255)
    return (a - MEAN) / STD


def reference_tensor(img, resize=256, crop=224):
    if resize:
        img = tv_resize(img, resize)
    return tv_to_normalized(tv_center_crop(img, crop))


# --- test images --------------------------------------------------------------------------------

def jpeg_bytes(img, **kw):
    b = io.BytesIO()
    img.save(b, format="JPEG", **kw)
    return b.getvalue()


def ycck_bytes(cmyk_img, quality=90):
    """A YCCK JPEG: TurboJPEG (the system's libturbojpeg) compresses CMYK pixels as YCCK."""
    path = ctypes.util.find_library("turbojpeg") or "libturbojpeg.so.0"
    tj = ctypes.CDLL(path)
    tj.tjInitCompress.restype = ctypes.c_void_p
    tj.tjCompress2.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                               ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_ulong),
                               ctypes.c_int, ctypes.c_int, ctypes.c_int]
    tj.tjFree.argtypes = [ctypes.c_void_p]
    tj.tjDestroy.argtypes = [ctypes.c_void_p]
    w, h = cmyk_img.size
    # Pillow's CMYK pixels are not inverted; JPEG CMYK as TurboJPEG writes it is Adobe-inverted.
    pixels = (255 - np.asarray(cmyk_img, dtype=np.uint8)).tobytes()
    handle = tj.tjInitCompress()
    out = ctypes.c_void_p()
    size = ctypes.c_ulong(0)
    TJPF_CMYK, TJSAMP_420 = 11, 2
    if tj.tjCompress2(handle, pixels, w, 0, h, TJPF_CMYK, ctypes.byref(out), ctypes.byref(size),
                      TJSAMP_420, quality, 0) != 0:
        raise RuntimeError("tjCompress2 failed")
    data = ctypes.string_at(out, size.value)
    tj.tjFree(out)
    tj.tjDestroy(handle)
    return data


def make_cases(photos):
    def load(name):
        return Image.open(os.path.join(photos, name))

    def raw(name):
        with open(os.path.join(photos, name), "rb") as f:
            return f.read()

    hopper = load("grace_hopper.jpg").convert("RGB")
    chelsea = load("chelsea.png").convert("RGB")
    rocket = load("rocket.jpg").convert("RGB")
    hubble = load("hubble_deep_field.jpg").convert("RGB")
    cases = {
        # The real photos, as shipped.
        "grace_hopper": raw("grace_hopper.jpg"),
        "rocket": raw("rocket.jpg"),
        "retina": raw("retina.jpg"),
        "hubble_deep_field": raw("hubble_deep_field.jpg"),
        "china": raw("china.jpg"),
        "flower": raw("flower.jpg"),
        # PNG photos re-encoded as JPEG.
        "coffee": jpeg_bytes(load("coffee.png").convert("RGB"), quality=90),
        "chelsea": jpeg_bytes(chelsea, quality=90),
        "camera_gray": jpeg_bytes(load("camera.png").convert("L"), quality=90),
        "astronaut": jpeg_bytes(load("astronaut.png").convert("RGB"), quality=95),
        # Variants.
        "hopper_gray": jpeg_bytes(hopper.convert("L"), quality=90),
        "hopper_progressive": jpeg_bytes(hopper, quality=90, progressive=True),
        "hopper_cmyk": jpeg_bytes(hopper.convert("CMYK"), quality=90),
        "hopper_ycck": ycck_bytes(hopper.convert("CMYK")),
        "chelsea_444": jpeg_bytes(chelsea, quality=90, subsampling=0),
        "chelsea_422": jpeg_bytes(chelsea, quality=90, subsampling=1),
        "chelsea_420": jpeg_bytes(chelsea, quality=90, subsampling=2),
        "chelsea_q20": jpeg_bytes(chelsea, quality=20),
        "rocket_odd_333x251": jpeg_bytes(rocket.crop((17, 31, 350, 282)), quality=90),
        "rocket_odd_257x255": jpeg_bytes(rocket.resize((257, 255), Image.LANCZOS), quality=85),
        "rocket_224x224": jpeg_bytes(rocket.crop((100, 100, 324, 324)), quality=90),
        "tiny_1x1": jpeg_bytes(hopper.resize((1, 1), Image.BOX), quality=90),
        "tiny_3x2": jpeg_bytes(hopper.resize((3, 2), Image.BOX), quality=90),
        "small_100x80": jpeg_bytes(chelsea.resize((100, 80), Image.LANCZOS), quality=90),
        "wide_3000x40": jpeg_bytes(hubble.resize((3000, 40), Image.LANCZOS), quality=90),
        "tall_30x1500": jpeg_bytes(hubble.resize((30, 1500), Image.LANCZOS), quality=90),
        "hopper_restart": jpeg_bytes(hopper, quality=90, restart_marker_rows=2),
        "hopper_rgb": jpeg_bytes(hopper, quality=90, keep_rgb=True),  # stored as RGB, not YCbCr
        # Large enough for DCT scaling at 1/4 (decoded 512x512 stays twice the 256x256 resize).
        "astronaut_2048": jpeg_bytes(load("astronaut.png").convert("RGB").resize((2048, 2048), Image.LANCZOS), quality=90),
    }
    return cases


def write_npy(path, array):
    np.save(path, np.ascontiguousarray(array))


# --- operator conformance ------------------------------------------------------------------------

def op_cases():
    """(name, op, attributes, input shape, constant operands, opset, extra nodes) for every case.

    Constant operands are (name, array) initializers appended to the node's inputs; an entry of
    None leaves an optional input out, "x" repeats the graph input. The first input is the graph input, batch axis symbolic."""
    rng = np.random.default_rng(1234)

    def r(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    cases = []

    def conv(name, c, m, k, group=1, bias=True, hw=(9, 11), **attrs):
        kk = k if isinstance(k, tuple) else (k, k)
        consts = [("W", r(m, c // group, *kk, scale=0.3))] + ([("B", r(m))] if bias else [])
        cases.append((name, "Conv", dict(kernel_shape=list(kk), group=group, **attrs), [2, c, *hw], consts, 13))

    conv("conv_3x3_pad1", 4, 6, 3, pads=[1, 1, 1, 1])
    conv("conv_3x3_stride2", 4, 8, 3, strides=[2, 2], pads=[1, 1, 1, 1])
    conv("conv_1x1", 16, 24, 1, hw=(7, 5))
    conv("conv_1x1_nobias", 8, 4, 1, bias=False)
    conv("conv_7x7_stride2_pad3", 3, 8, 7, strides=[2, 2], pads=[3, 3, 3, 3], hw=(20, 18))
    conv("conv_groups2", 4, 6, 3, group=2, pads=[1, 1, 1, 1])
    conv("conv_depthwise_3x3", 8, 8, 3, group=8, pads=[1, 1, 1, 1])
    conv("conv_depthwise_3x3_stride2", 8, 8, 3, group=8, strides=[2, 2], pads=[1, 1, 1, 1], hw=(10, 13))
    conv("conv_depthwise_5x5_asym_pads", 6, 6, 5, group=6, strides=[2, 2], pads=[1, 1, 2, 2], hw=(14, 14))
    conv("conv_dilation2", 3, 5, 3, dilations=[2, 2], pads=[2, 2, 2, 2])
    conv("conv_auto_pad_same_upper", 3, 4, 3, strides=[2, 2], auto_pad="SAME_UPPER", hw=(8, 8))
    conv("conv_auto_pad_same_lower", 3, 4, 4, strides=[2, 2], auto_pad="SAME_LOWER", hw=(9, 8))
    conv("conv_auto_pad_valid", 3, 4, 3, auto_pad="VALID")
    conv("conv_rect_1x3", 5, 7, (1, 3), pads=[0, 1, 0, 1])
    conv("conv_k40", 40, 36, 3, pads=[1, 1, 1, 1], hw=(6, 30))
    # Tensor-core convolutions (input channels per group a multiple of 8) whose output channels
    # are odd: the epilogue's channel pairs must fall back to single stores.
    conv("conv_tc_odd_out", 16, 3, 1, hw=(5, 7))
    conv("conv_tc_groups_odd_out", 16, 6, 3, group=2, pads=[1, 1, 1, 1], hw=(6, 5))
    x4 = [2, 3, 5, 7]
    cases += [
        ("relu", "Relu", {}, x4, [], 13),
        ("clip_min_max", "Clip", {}, x4, [("min", np.array(-0.5, np.float32)), ("max", np.array(0.7, np.float32))], 13),
        ("clip_max_only", "Clip", {}, x4, [None, ("max", np.array(0.3, np.float32))], 13),
        ("clip_opset6_attrs", "Clip", dict(min=-0.2, max=0.4), x4, [], 6 + 1),
        ("sigmoid", "Sigmoid", {}, x4, [], 13),
        ("hardsigmoid", "HardSigmoid", dict(alpha=0.3, beta=0.4), x4, [], 13),
        ("hardswish", "HardSwish", {}, x4, [], 14),
        ("add_same_shape", "Add", {}, x4, ["x"], 13),
        ("add_all_but_batch", "Add", {}, x4, [("b", r(3, 5, 7))], 13),
        ("add_per_channel", "Add", {}, x4, [("b", r(3, 1, 1))], 13),
        ("sub_scalar", "Sub", {}, x4, [("b", np.array(0.25, np.float32))], 13),
        ("mul_row_broadcast", "Mul", {}, x4, [("b", r(1, 7))], 13),
        ("div_per_channel", "Div", {}, x4, [("b", (np.abs(r(1, 3, 1, 1)) + 0.5).astype(np.float32))], 13),
        ("batchnorm", "BatchNormalization", dict(epsilon=1e-3), x4,
         [("scale", r(3)), ("bias", r(3)), ("mean", r(3)), ("var", (np.abs(r(3)) + 0.1).astype(np.float32))], 13),
        ("maxpool_3x3_s2_p1", "MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), [2, 3, 9, 10], [], 13),
        ("maxpool_ceil", "MaxPool", dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), [2, 3, 7, 9], [], 13),
        ("avgpool_exclude_pad", "AveragePool", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]), x4, [], 13),
        ("avgpool_include_pad", "AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1), [2, 3, 8, 9], [], 13),
        ("global_average_pool", "GlobalAveragePool", {}, x4, [], 13),
        ("reducemean_hw_keep", "ReduceMean", dict(axes=[2, 3], keepdims=1), x4, [], 13),
        ("reducemean_c_nokeep", "ReduceMean", dict(axes=[1], keepdims=0), x4, [], 13),
        ("flatten", "Flatten", dict(axis=1), x4, [], 13),
        ("reshape", "Reshape", {}, x4, [("shape", np.array([0, -1, 7], np.int64))], 13),
        ("transpose_nhwc", "Transpose", dict(perm=[0, 2, 3, 1]), x4, [], 13),
        ("concat_channels", "Concat", dict(axis=1), x4, ["x", "x"], 13),
        ("gemm_transb_bias", "Gemm", dict(transB=1), [2, 20], [("W", r(13, 20)), ("C", r(13))], 13),
        ("gemm_alpha_beta", "Gemm", dict(alpha=0.5, beta=2.0), [2, 20], [("W", r(20, 9)), ("C", r(1, 9))], 13),
        ("gemm_wide", "Gemm", dict(transB=1), [2, 64], [("W", r(300, 64)), ("C", r(300))], 13),
        ("matmul_2d", "MatMul", {}, [2, 12], [("W", r(12, 5))], 13),
        ("matmul_batched", "MatMul", {}, [2, 4, 12], [("W", r(12, 6))], 13),
        ("softmax_last", "Softmax", {}, [2, 10], [], 13),
        ("softmax_axis1_4d", "Softmax", dict(axis=1), x4, [], 13),
        ("softmax_opset11_axis1", "Softmax", dict(axis=1), [2, 3, 4], [], 11),
        ("identity", "Identity", {}, x4, [], 13),
    ]
    return cases


def fusion_cases():
    """Small graphs exercising the optimization passes against onnxruntime."""
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(99)

    def r(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def init(name, a):
        return numpy_helper.from_array(a, name)

    graphs = []
    # Conv -> BatchNormalization -> Relu: BN folding, then ReLU fusion.
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
             helper.make_node("Relu", ["n"], ["y"])]
    inits = [init("w", r(6, 4, 3, 3)), init("s", r(6) + 1), init("b", r(6)), init("m", r(6)),
             init("v", np.abs(r(6)) + 0.5)]
    graphs.append(("fuse_conv_bn_relu", nodes, inits, [2, 4, 8, 8], [2, 6, 8, 8]))
    # ResNet-style residual: Relu(Conv(x) + x).
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "x"], ["a"]),
             helper.make_node("Relu", ["a"], ["y"])]
    graphs.append(("fuse_conv_add_relu", nodes, [init("w", r(4, 4, 3, 3)), init("b", r(4))], [2, 4, 6, 6], [2, 4, 6, 6]))
    # Two ResNet identity blocks in a row, then a convolution of an alias of the second block's
    # output with that output as its residual: the first two residuals are summed in place (the
    # second into memory the first already summed into), the third must not be (its convolution
    # reads the same memory through the Reshape; dilated, so that it runs as direct convolution,
    # which writes output rows while it still reads input rows).
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["a0"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["a0"], ["a"]),
             helper.make_node("Conv", ["a", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["c1r"]),
             helper.make_node("Conv", ["c1r", "w2"], ["c2"], kernel_shape=[1, 1]),
             helper.make_node("Add", ["c2", "a"], ["s"]),
             helper.make_node("Relu", ["s"], ["s1"]),
             helper.make_node("Conv", ["s1", "w3"], ["d1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["d1"], ["d1r"]),
             helper.make_node("Conv", ["d1r", "w4"], ["d2"], kernel_shape=[1, 1]),
             helper.make_node("Add", ["d2", "s1"], ["t"]),
             helper.make_node("Relu", ["t"], ["t1"]),
             helper.make_node("Reshape", ["t1", "same"], ["u"]),
             helper.make_node("Conv", ["u", "w5"], ["e"], kernel_shape=[3, 3], pads=[2, 2, 2, 2], dilations=[2, 2]),
             helper.make_node("Add", ["e", "t1"], ["y"])]
    inits = [init("w0", r(4, 4, 1, 1)), init("b0", r(4)), init("w1", r(4, 4, 3, 3)), init("w2", r(4, 4, 1, 1)),
             init("w3", r(4, 4, 3, 3)), init("w4", r(4, 4, 1, 1)), init("w5", r(4, 4, 3, 3)),
             init("same", np.array([0, 4, 6, 6], np.int64))]
    graphs.append(("residual_chain_alias", nodes, inits, [2, 4, 6, 6], [2, 4, 6, 6]))
    # MobileNet-style: depthwise + Clip(0, 6), pointwise, residual add without activation.
    nodes = [helper.make_node("Conv", ["x", "dw", "db"], ["d"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
             helper.make_node("Clip", ["d", "lo", "hi"], ["dc"]),
             helper.make_node("Conv", ["dc", "pw", "pb"], ["p"], kernel_shape=[1, 1]),
             helper.make_node("Add", ["x", "p"], ["y"])]
    inits = [init("dw", r(8, 1, 3, 3)), init("db", r(8)), init("pw", r(8, 8, 1, 1)), init("pb", r(8)),
             init("lo", np.array(0, np.float32)), init("hi", np.array(6, np.float32))]
    graphs.append(("fuse_depthwise_clip_residual", nodes, inits, [2, 8, 7, 7], [2, 8, 7, 7]))
    # Constant folding: the weight is computed from two initializers.
    nodes = [helper.make_node("Mul", ["w0", "scale"], ["w"]),
             helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])]
    graphs.append(("fold_constant_weight", nodes, [init("w0", r(3, 2, 1, 1)), init("scale", np.array(2.0, np.float32))],
                   [2, 2, 4, 4], [2, 3, 4, 4]))
    # MatMul of two computed tensors with two batch axes (x times its own transpose).
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["x", "t"], ["y"])]
    graphs.append(("matmul_computed_rhs", nodes, [], [2, 3, 4, 5], [2, 3, 4, 4]))
    # EfficientNet-style squeeze-excitation: a per-channel gate from the pooled tensor.
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
             helper.make_node("Conv", ["p", "w1", "b1"], ["q"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["q"], ["qr"]),
             helper.make_node("Conv", ["qr", "w2", "b2"], ["g"], kernel_shape=[1, 1]),
             helper.make_node("Sigmoid", ["g"], ["gs"]),
             helper.make_node("Mul", ["x", "gs"], ["y"])]
    inits = [init("w1", r(2, 6, 1, 1)), init("b1", r(2)), init("w2", r(6, 2, 1, 1)), init("b2", r(6))]
    graphs.append(("squeeze_excitation", nodes, inits, [2, 6, 5, 7], [2, 6, 5, 7]))
    # A convolution's spatial output flattened into a classifier (channel-first order matters).
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Flatten", ["c"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    inits = [init("w", r(3, 2, 3, 3)), init("fw", r(5, 3 * 3 * 4)), init("fb", r(5))]
    graphs.append(("conv_flatten_gemm", nodes, inits, [2, 2, 5, 6], [2, 5]))
    return graphs


def make_op_oracles(out):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(4321)
    names = []

    def save_case(name, model, in_shape):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "model.onnx")
        onnx.save(model, path)
        x = rng.standard_normal(in_shape).astype(np.float32)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        y = session.run(None, {"x": x})[0].astype(np.float32)
        write_npy(os.path.join(d, "input.npy"), x)
        write_npy(os.path.join(d, "expected.npy"), y)
        names.append({"name": name, "batch": in_shape[0]})

    def io(shape, name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N"] + list(shape[1:]))

    for name, op, attrs, in_shape, consts, opset in op_cases():
        inputs, inits = ["x"], []
        for c in consts:
            if c is None:
                inputs.append("")
                continue
            if c == "x":  # the graph input again
                inputs.append("x")
                continue
            cname, array = c
            inputs.append(cname)
            inits.append(numpy_helper.from_array(array, cname))
        node = helper.make_node(op, inputs, ["y"], **attrs)
        graph = helper.make_graph([node], name, [io(in_shape, "x")],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 7
        save_case(name, model, in_shape)
    for name, nodes, inits, in_shape, out_shape in fusion_cases():
        graph = helper.make_graph(nodes, name, [io(in_shape, "x")], [io(out_shape, "y")], initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 7
        save_case(name, model, in_shape)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"onnxruntime": ort.__version__, "cases": names}, f, indent=1)
    make_bad_models(os.path.join(out, "bad"))
    return len(names)


def make_bad_models(out):
    """Models the loader must reject, each with the error kind it must give."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    os.makedirs(out, exist_ok=True)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")

    def model(nodes, inits=(), opset=13, inputs=(x,)):
        m = helper.make_model(helper.make_graph(nodes, "bad", list(inputs), [y], initializer=list(inits)),
                              opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 7
        return m

    cases = {
        "unsupported_operator": (model([helper.make_node("Einsum", ["x", "x"], ["y"], equation="ij,jk->ik")]), "unsupported", "Einsum"),
        "wrong_input_rank": (model([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])], [w],
                                   inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8])]), "unsupported", "4-D input"),
        "missing_initializer": (model([helper.make_node("Conv", ["x", "w_missing"], ["y"], kernel_shape=[3, 3])]), "invalidGraph", "w_missing"),
        "cycle": (model([helper.make_node("Relu", ["x2"], ["x1"], name="a"), helper.make_node("Add", ["x1", "x"], ["x2"], name="b"),
                         helper.make_node("Relu", ["x2"], ["y"], name="c")]), "invalidGraph", "cycle"),
        "old_opset": (model([helper.make_node("Relu", ["x"], ["y"])], opset=3), "unsupported", "opset 3"),
        "channel_mismatch": (model([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])],
                                   [numpy_helper.from_array(np.ones((2, 4, 3, 3), np.float32), "w")]), "invalidGraph", "channels"),
    }
    manifest = []
    for name, (m, kind, text) in cases.items():
        onnx.save(m, os.path.join(out, name + ".onnx"))
        manifest.append({"name": name, "error": kind, "contains": text})
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def resnet50_model(seed=50):
    """ResNet-50 v1.5 (stride on the 3x3 of each bottleneck) as an ONNX ModelProto, with He-scaled
    random weights; each block's last BatchNormalization scales by 0.2 so that 16 residual sums
    keep the activations in range."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    count = [0]

    def name(prefix):
        count[0] += 1
        return f"{prefix}{count[0]}"

    def conv_bn(x, cin, cout, k, stride, relu, gamma=1.0):
        w, c, bn = name("w"), name("conv"), name("bn")
        inits.append(numpy_helper.from_array((rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32), w))
        nodes.append(helper.make_node("Conv", [x, w], [c], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4))
        params = [(gamma * (1 + 0.1 * rng.standard_normal(cout))).astype(np.float32), (0.1 * rng.standard_normal(cout)).astype(np.float32),
                  (0.1 * rng.standard_normal(cout)).astype(np.float32), (1 + 0.1 * np.abs(rng.standard_normal(cout))).astype(np.float32)]
        names = [name(p) for p in ("scale", "bias", "mean", "var")]
        inits.extend(numpy_helper.from_array(a, n) for a, n in zip(params, names))
        nodes.append(helper.make_node("BatchNormalization", [c] + names, [bn], epsilon=1e-5))
        if not relu:
            return bn
        r = name("relu")
        nodes.append(helper.make_node("Relu", [bn], [r]))
        return r

    x = conv_bn("input", 3, 64, 7, 2, True)
    nodes.append(helper.make_node("MaxPool", [x], ["pool0"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x, cin = "pool0", 64
    for stage, (blocks, width) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)]):
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 0 else 1
            y = conv_bn(x, cin, width, 1, 1, True)
            y = conv_bn(y, width, width, 3, stride, True)
            y = conv_bn(y, width, width * 4, 1, 1, False, gamma=0.2)
            shortcut = conv_bn(x, cin, width * 4, 1, stride, False) if block == 0 else x
            a, r = name("add"), name("out")
            nodes.append(helper.make_node("Add", [y, shortcut], [a]))
            nodes.append(helper.make_node("Relu", [a], [r]))
            x, cin = r, width * 4
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], axis=1))
    inits.append(numpy_helper.from_array((rng.standard_normal((1000, 2048)) / np.sqrt(2048)).astype(np.float32), "fc_w"))
    inits.append(numpy_helper.from_array(np.zeros(1000, np.float32), "fc_b"))
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1))
    for node in nodes:
        node.name = node.output[0]  # named as its output, so per-layer reports can be matched
    graph = helper.make_graph(nodes, "resnet50", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def make_resnet50_oracle(out):
    import onnx
    import onnxruntime as ort
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "model.onnx")
    onnx.save(resnet50_model(), path)
    x = np.random.default_rng(8).standard_normal((2, 3, 224, 224)).astype(np.float32)
    logits = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    write_npy(os.path.join(out, "input.npy"), x)
    write_npy(os.path.join(out, "logits.npy"), logits.astype(np.float32))


def make_model_oracles(models_dir, out, photos_dir):
    """onnxruntime logits for each converted model on a random batch and the real photos."""
    import onnxruntime as ort
    made = 0
    for name in ("mobilenet_v2", "efficientnet_lite0"):
        path = os.path.join(models_dir, name, "model.onnx")
        if not os.path.exists(path):
            continue
        with open(os.path.join(models_dir, name, "config.json")) as f:
            config = json.load(f)
        resize = config["preprocess"]["resize"]
        rng = np.random.default_rng(7)
        rows = [rng.standard_normal((3, 224, 224)).astype(np.float32) for _ in range(2)]
        labels = ["random", "random"]
        for photo in ("grace_hopper.jpg", "coffee.png", "chelsea.png", "china.jpg"):
            img = Image.open(os.path.join(photos_dir, photo)).convert("RGB")
            rows.append(reference_tensor(img, resize=resize).transpose(2, 0, 1).astype(np.float32))
            labels.append(photo)
        x = np.stack(rows)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        logits = session.run(None, {"input": x})[0]
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        write_npy(os.path.join(d, "input.npy"), x)
        write_npy(os.path.join(d, "logits.npy"), logits.astype(np.float32))
        with open(os.path.join(d, "photos.json"), "w") as f:
            json.dump({"rows": labels, "model_converter_sha256": config.get("converter_sha256")}, f, indent=1)
        made += 1
    return made


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
    parser.add_argument("--photos", default=os.path.join(root, ".cache", "photos"))
    parser.add_argument("--out", default=os.path.join(root, ".cache", "oracles"))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    parser.add_argument("--models", default=os.path.join(cache, "sliceserve", "models"))
    args = parser.parse_args()

    import onnxruntime
    with open(__file__, "rb") as f:
        ops_stamp = hashlib.sha256(f.read() + onnxruntime.__version__.encode()).hexdigest()
    ops_out = os.path.join(args.out, "ops")
    ops_stamp_path = os.path.join(ops_out, ".stamp")
    if not (os.path.exists(ops_stamp_path) and open(ops_stamp_path).read() == ops_stamp):
        count = make_op_oracles(ops_out)
        with open(ops_stamp_path, "w") as f:
            f.write(ops_stamp)
        print(f"oracles: {count} operator conformance cases in {os.path.relpath(ops_out, root)}")
    resnet_out = os.path.join(args.out, "resnet50")
    resnet_stamp_path = os.path.join(resnet_out, ".stamp")
    if not (os.path.exists(resnet_stamp_path) and open(resnet_stamp_path).read() == ops_stamp):
        make_resnet50_oracle(resnet_out)
        with open(resnet_stamp_path, "w") as f:
            f.write(ops_stamp)
        print(f"oracles: ResNet-50 (random weights) and its onnxruntime logits in {os.path.relpath(resnet_out, root)}")
    # Model oracles follow the model files: remade whenever the converter changes them.
    models_out = os.path.join(args.out, "models")
    wanted = ""
    for name in ("mobilenet_v2", "efficientnet_lite0"):
        cfg = os.path.join(args.models, name, "config.json")
        if os.path.exists(cfg):
            wanted += json.load(open(cfg)).get("converter_sha256", "") + name
    models_stamp = hashlib.sha256((ops_stamp + wanted).encode()).hexdigest()
    models_stamp_path = os.path.join(models_out, ".stamp")
    if wanted and not (os.path.exists(models_stamp_path) and open(models_stamp_path).read() == models_stamp):
        made = make_model_oracles(args.models, models_out, args.photos)
        with open(models_stamp_path, "w") as f:
            f.write(models_stamp)
        print(f"oracles: onnxruntime logits for {made} models in {os.path.relpath(models_out, root)}")

    with open(__file__, "rb") as f:
        stamp = hashlib.sha256(f.read() + Image.__version__.encode() + np.__version__.encode()).hexdigest()
    out = os.path.join(args.out, "preprocess")
    stamp_path = os.path.join(out, ".stamp")
    if os.path.exists(stamp_path) and open(stamp_path).read() == stamp:
        return
    os.makedirs(out, exist_ok=True)

    manifest = {"pillow": Image.__version__, "libjpeg_turbo": features.version("libjpeg_turbo"),
                "numpy": np.__version__, "cases": []}
    for name, data in make_cases(args.photos).items():
        with open(os.path.join(out, name + ".jpg"), "wb") as f:
            f.write(data)
        img = Image.open(io.BytesIO(data))
        source_mode = img.mode
        progressive = bool(img.info.get("progressive") or img.info.get("progression"))
        rgb = img.convert("RGB")
        write_npy(os.path.join(out, name + ".decoded.npy"), np.asarray(rgb, dtype=np.uint8))
        write_npy(os.path.join(out, name + ".resized.npy"), np.asarray(tv_resize(rgb, 256), dtype=np.uint8))
        tensor = reference_tensor(rgb)
        write_npy(os.path.join(out, name + ".nchw_f32.npy"), tensor.transpose(2, 0, 1))
        write_npy(os.path.join(out, name + ".nhwc_f16.npy"), tensor.astype(np.float16))
        case = {"name": name, "width": rgb.size[0], "height": rgb.size[1], "mode": source_mode,
                "progressive": progressive, "bytes": len(data)}
        if rgb.size[0] < 224 or rgb.size[1] < 224:
            write_npy(os.path.join(out, name + ".pad_f32.npy"), reference_tensor(rgb, resize=None).transpose(2, 0, 1))
            case["pad"] = True
        manifest["cases"].append(case)

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    with open(stamp_path, "w") as f:
        f.write(stamp)
    print(f"oracles: {len(manifest['cases'])} preprocessing cases in {os.path.relpath(out, root)}")


if __name__ == "__main__":
    sys.exit(main())
