#!/usr/bin/env python3
"""Exports torchvision's ResNet-50 and EfficientNet-B0 with seeded random weights to ONNX, for the
GPU executor's benchmark on the GPU machine (which has torch and torchvision but no network).

Classic exporter (dynamo=False, opset 13), a dynamic batch axis, input named "input", one folder
per model holding model.onnx (SliceServe derives the rest of the model folder's config from it).

Usage: python3 Bench/export_torchvision.py OUT_DIR [--models resnet50,efficientnet_b0]
"""
import argparse
import os
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--models", default="resnet50,efficientnet_b0")
    args = parser.parse_args()
    import torch
    import torchvision
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None).eval()
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "model.onnx")
        x = torch.randn(1, 3, 224, 224)
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=13, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        print(f"export: {name} -> {path} ({os.path.getsize(path) >> 20} MiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
