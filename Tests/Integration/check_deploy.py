#!/usr/bin/env python3
"""Checks deploy/: every manifest against KServe's and Kubernetes' own Python models, the
Containerfile's shape, and (with --bundle) that the arguments the manifests and the image give
`sliceserve` are accepted by the real binary.

Manifests: each YAML document is deserialised into its model class field by field (an unknown
field, a wrong type or a missing required field is an error naming its path), re-serialised with
kubernetes' ApiClient.sanitize_for_serialization, and must equal the YAML: a misspelt field
fails instead of being dropped silently.

Usage: check_deploy.py [--root REPO] [--bundle UNPACKED_BUNDLE_DIR] [--model ONNX_DIR]
Prints one line per check and "all deployment checks passed"; exits 1 on the first failure.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile

import kserve
import kubernetes.client as k8s
import yaml

KINDS = {
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
}
# Types the generated models name but do not define as classes: Kubernetes quantities.
QUANTITIES = {"V1beta1MetricQuantity", "ResourceQuantity"}


class Invalid(Exception):
    pass


def model_class(name):
    for module in (kserve, k8s):
        klass = getattr(module, name, None)
        if klass is not None and hasattr(klass, "openapi_types"):
            return klass
    return None


def build(data, typ, path):
    """`data` (from YAML) as an instance of the OpenAPI type `typ`, strictly."""
    if data is None:
        return None
    m = re.fullmatch(r"(?:list|List)\[(.+)\]", typ)
    if m:
        if not isinstance(data, list):
            raise Invalid(f"{path}: expected a list ({typ}), got {type(data).__name__}")
        return [build(item, m.group(1), f"{path}[{i}]") for i, item in enumerate(data)]
    m = re.fullmatch(r"(?:dict|Dict)\(?\[?str, (.+?)\)?\]?", typ)
    if m and typ.lower().startswith("dict"):
        if not isinstance(data, dict):
            raise Invalid(f"{path}: expected a map ({typ}), got {type(data).__name__}")
        return {key: build(value, m.group(1), f"{path}.{key}") for key, value in data.items()}
    if typ == "str":
        if not isinstance(data, str):
            raise Invalid(f"{path}: expected a string, got {data!r} ({type(data).__name__}); quote it")
        return data
    if typ == "int":
        if not isinstance(data, int) or isinstance(data, bool):
            raise Invalid(f"{path}: expected an integer, got {data!r}")
        return data
    if typ == "bool":
        if not isinstance(data, bool):
            raise Invalid(f"{path}: expected true or false, got {data!r}")
        return data
    if typ == "float":
        if not isinstance(data, (int, float)) or isinstance(data, bool):
            raise Invalid(f"{path}: expected a number, got {data!r}")
        return data
    if typ == "object":
        return data
    if typ in QUANTITIES:
        if not isinstance(data, str) or not re.fullmatch(r"[+-]?[0-9.]+([eE][0-9]+|[KMGTPE]i?|[mun]|k)?", data):
            raise Invalid(f"{path}: expected a quantity string like \"32\" or \"500m\", got {data!r}")
        return data
    klass = model_class(typ)
    if klass is None:
        raise Invalid(f"{path}: the model type {typ} is not in kserve or kubernetes")
    if not isinstance(data, dict):
        raise Invalid(f"{path}: expected an object ({typ}), got {type(data).__name__}")
    by_json = {json_name: attr for attr, json_name in klass.attribute_map.items()}
    kwargs = {}
    for key, value in data.items():
        attr = by_json.get(key)
        if attr is None:
            close = [j for j in by_json if j.lower() == key.lower() or j.replace("_", "") == key.replace("_", "")]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise Invalid(f"{path}.{key}: no such field in {typ}{hint}")
        kwargs[attr] = build(value, klass.openapi_types[attr], f"{path}.{key}")
    try:
        return klass(**kwargs)
    except ValueError as error:  # the models' own validation: required fields, enums
        raise Invalid(f"{path}: {typ}: {error}")


def first_difference(yaml_value, model_value, path):
    if isinstance(yaml_value, dict) and isinstance(model_value, dict):
        for key in sorted(set(yaml_value) | set(model_value)):
            if key not in model_value:
                return f"{path}.{key} is in the YAML but was dropped by the model"
            if key not in yaml_value:
                return f"{path}.{key} = {model_value[key]!r} is added by the model (write it in the YAML)"
            if yaml_value[key] != model_value[key]:
                return first_difference(yaml_value[key], model_value[key], f"{path}.{key}")
    if isinstance(yaml_value, list) and isinstance(model_value, list) and len(yaml_value) == len(model_value):
        for i, (a, b) in enumerate(zip(yaml_value, model_value)):
            if a != b:
                return first_difference(a, b, f"{path}[{i}]")
    return f"{path}: YAML {yaml_value!r}, model {model_value!r}"


def serializer(class_name):
    """The ApiClient whose sanitize_for_serialization goes with the class: KServe's for its models."""
    import kserve.api_client
    return kserve.api_client.ApiClient() if hasattr(kserve, class_name) else k8s.ApiClient()


def check_manifest(path):
    objects = []
    with open(path) as f:
        documents = [d for d in yaml.safe_load_all(f) if d is not None]
    if not documents:
        raise Invalid(f"{path}: no YAML document")
    for i, doc in enumerate(documents):
        where = f"{os.path.basename(path)}#{i}"
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key not in KINDS:
            raise Invalid(f"{where}: apiVersion/kind {key} is not one this check knows: {sorted(KINDS)}")
        obj = build(doc, KINDS[key], where)
        round_trip = serializer(KINDS[key]).sanitize_for_serialization(obj)
        if round_trip != doc:
            raise Invalid(f"{where}: re-serialised {KINDS[key]} differs from the YAML: {first_difference(doc, round_trip, where)}")
        objects.append(doc)
    return objects


def containerfile_instructions(path):
    """(INSTRUCTION, argument text) pairs, continuation lines joined, comments dropped."""
    lines, current = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not current and (line.strip().startswith("#") or not line.strip()):
                continue
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            current += line
            word, _, rest = current.strip().partition(" ")
            lines.append((word.upper(), rest.strip()))
            current = ""
    return lines


def exec_form(text, where):
    import json
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise Invalid(f"{where} must be in exec form (a JSON array), got {text}")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"{where} must be a JSON array of strings")
    return value


def check_containerfile(path):
    instructions = containerfile_instructions(path)
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for word, rest in instructions if word == "ARG" and "=" in rest}
    image = args.get("CUDA_IMAGE", "")
    if not re.fullmatch(r"(docker\.io/)?nvidia/cuda:[0-9.]+-cudnn-runtime-ubuntu24\.04", image):
        raise Invalid(f"{path}: the base image must be NVIDIA's CUDA ...-cudnn-runtime-ubuntu24.04, got {image!r}")
    words = [w for w, _ in instructions]
    user = [rest for w, rest in instructions if w == "USER"]
    if not user or user[-1].split(":")[0] in ("0", "root") or not user[-1].split(":")[0].isdigit():
        raise Invalid(f"{path}: the last USER must be a numeric non-root uid (Kubernetes runAsNonRoot checks it), got {user}")
    for needed in ("HEALTHCHECK", "ENTRYPOINT", "CMD", "EXPOSE"):
        if needed not in words:
            raise Invalid(f"{path}: no {needed}")
    env = " ".join(rest for w, rest in instructions if w == "ENV")
    if not re.search(r"\bPORT=8080\b", env):
        raise Invalid(f"{path}: ENV must set PORT=8080 (KServe's port)")
    health = [rest for w, rest in instructions if w == "HEALTHCHECK"][0]
    health_cmd = exec_form(health.split("CMD", 1)[1].strip(), "HEALTHCHECK CMD")
    entrypoint = exec_form([rest for w, rest in instructions if w == "ENTRYPOINT"][-1], "ENTRYPOINT")
    cmd = exec_form([rest for w, rest in instructions if w == "CMD"][-1], "CMD")
    return {"entrypoint": entrypoint, "cmd": cmd, "health": health_cmd, "bundle": args.get("BUNDLE", "")}


def in_bundle(bundle, image_path):
    """The bundle file that /opt/sliceserve/... names in the image."""
    prefix = "/opt/sliceserve/"
    if not image_path.startswith(prefix):
        raise Invalid(f"{image_path} is not under {prefix}, where the image unpacks the bundle")
    return os.path.join(bundle, image_path[len(prefix):])


def run(argv, env, what, expect=0, timeout=120):
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != expect:
        raise Invalid(f"{what}: `{shlex.join(argv)}` exited {result.returncode}, expected {expect}:\n{result.stdout}{result.stderr}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(here)))
    parser.add_argument("--bundle", help="an unpacked release bundle (folder with bin/sliceserve)")
    parser.add_argument("--model", help="a folder with a model.onnx, standing in for /mnt/models")
    options = parser.parse_args()
    deploy = os.path.join(options.root, "deploy")
    try:
        manifests = {}
        folder = os.path.join(deploy, "kserve")
        for name in sorted(os.listdir(folder)):
            if name.endswith((".yaml", ".yml")):
                manifests[name] = check_manifest(os.path.join(folder, name))
                print(f"ok: deploy/kserve/{name}: {', '.join(d['kind'] for d in manifests[name])} round-trips through the kserve/kubernetes models")
        if not manifests:
            raise Invalid("no manifests in deploy/kserve")
        image = check_containerfile(os.path.join(deploy, "Containerfile"))
        print(f"ok: deploy/Containerfile: base image, non-root USER, PORT, HEALTHCHECK, ENTRYPOINT {image['entrypoint']}")

        runtimes = [d for docs in manifests.values() for d in docs if d["kind"] in ("ServingRuntime", "ClusterServingRuntime")]
        services = [d for docs in manifests.values() for d in docs if d["kind"] == "InferenceService"]
        runtime_names = {r["metadata"]["name"] for r in runtimes}
        for service in services:
            model = service["spec"]["predictor"]["model"]
            if model.get("runtime") not in runtime_names:
                raise Invalid(f"InferenceService {service['metadata']['name']}: runtime {model.get('runtime')!r} is not defined in deploy/kserve ({sorted(runtime_names)})")
            formats = {f["name"] for r in runtimes for f in r["spec"]["supportedModelFormats"]}
            if model["modelFormat"]["name"] not in formats:
                raise Invalid(f"InferenceService {service['metadata']['name']}: model format {model['modelFormat']['name']} is not served by the runtime")
        print(f"ok: {len(services)} InferenceServices name the runtime {sorted(runtime_names)} and its model format")

        if options.bundle:
            binary = in_bundle(options.bundle, image["entrypoint"][0])
            if not os.access(binary, os.X_OK):
                raise Invalid(f"the ENTRYPOINT {image['entrypoint'][0]} is not in the bundle ({binary})")
            env = {"PATH": "/usr/bin:/bin", "HOME": tempfile.mkdtemp(prefix="sliceserve-home-"), "PORT": "8080"}
            # The image's default command, as `docker run IMAGE` runs it (the bundled model).
            out = run([binary] + image["cmd"] + ["--check"], env, "the image's CMD")
            print(f"ok: the image's CMD {image['cmd']} runs from the bundle: {out.stdout.strip().splitlines()[-1]}")
            if image["health"][0] != image["entrypoint"][0]:
                in_bundle(options.bundle, image["health"][0])
            # Each runtime's arguments with KServe's substitutions, plus each InferenceService's
            # own args (KServe appends them), against a bare ONNX folder standing in for /mnt/models.
            if not options.model:
                raise Invalid("--bundle needs --model (a folder with a model.onnx) to stand in for /mnt/models")
            for runtime in runtimes:
                container = runtime["spec"]["containers"][0]
                for service in [s for s in services if s["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]]:
                    name = service["metadata"]["name"]
                    argv = [a.replace("{{.Name}}", name).replace("/mnt/models", options.model) for a in container["args"]]
                    argv += service["spec"]["predictor"]["model"].get("args", [])
                    if argv[0] != "serve":
                        raise Invalid(f"runtime {runtime['metadata']['name']}: args must start with the serve subcommand")
                    out = run([binary] + argv + ["--check"], env, f"runtime {runtime['metadata']['name']} for {name}")
                    if f"ok: {name} and {name}_jpeg" not in out.stdout:
                        raise Invalid(f"{name}: the model is not served under the InferenceService's name:\n{out.stdout}")
                    if "would listen on http://0.0.0.0:8080" not in out.stdout:
                        raise Invalid(f"{name}: not on 0.0.0.0:8080 as the probes expect:\n{out.stdout}")
                    # KServe appends the service's args: the last --max-batch must be the one used.
                    batches = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--max-batch"]
                    if batches and f"max batch {batches[-1]}," not in out.stdout:
                        raise Invalid(f"{name}: --max-batch {batches[-1]} (the last one given) is not the one used:\n{out.stdout}")
                    print(f"ok: runtime args for {name} run from the bundle: {shlex.join(argv)}")
                probes = [container.get("readinessProbe", {}), container.get("livenessProbe", {})]
                for probe in probes:
                    path = probe.get("httpGet", {}).get("path")
                    if path not in ("/v2/health/ready", "/v2/health/live"):
                        raise Invalid(f"runtime {runtime['metadata']['name']}: a probe asks {path!r}, not a SliceServe health path")
        print("all deployment checks passed")
    except (Invalid, OSError, subprocess.TimeoutExpired, yaml.YAMLError, KeyError) as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
