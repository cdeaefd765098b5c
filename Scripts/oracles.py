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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
    parser.add_argument("--photos", default=os.path.join(root, ".cache", "photos"))
    parser.add_argument("--out", default=os.path.join(root, ".cache", "oracles"))
    args = parser.parse_args()

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
