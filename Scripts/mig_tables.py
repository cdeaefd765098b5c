"""Turns `nvidia-smi mig -lgip` and `-lgipp` output into JSON (run by Scripts/device-check.sh
on a lent card, read-only), so the simulated GPU tables can be tested against real readings.

usage: mig_tables.py LGIP.txt LGIPP.txt > mig-profiles.json
"""
import json, re, subprocess, sys


def parse_profiles(text):
    profiles = []
    lines = text.splitlines()
    row = re.compile(r"\|\s*(\d+)\s+MIG\s+(\S+)\s+(\d+)\s+(\d+)/(\d+)\s+([\d.]+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\|")
    second = re.compile(r"\|\s+(\d+)\s+(\d+)\s+(\d+)\s*\|")
    for i, line in enumerate(lines):
        m = row.search(line)
        if not m:
            continue
        gpu, name, pid, free, total, mem, p2p, sm, dec, enc = m.groups()
        entry = {"gpu": int(gpu), "name": name, "id": int(pid), "instancesFree": int(free),
                 "instancesTotal": int(total), "memoryGiB": float(mem), "p2p": p2p,
                 "sms": int(sm), "decoders": int(dec), "encoders": int(enc)}
        if i + 1 < len(lines):
            s = second.search(lines[i + 1])
            if s:
                entry["copyEngines"], entry["jpegDecoders"], entry["ofa"] = map(int, s.groups())
        profiles.append(entry)
    return profiles


def parse_placements(text):
    placements = []
    pat = re.compile(r"GPU\s+(\d+)\s+Profile ID\s+(\d+)\s+Placements?\s*:\s*\{([\d,\s]*)\}:(\d+)")
    for m in pat.finditer(text):
        gpu, pid, starts, size = m.groups()
        placements.append({"gpu": int(gpu), "id": int(pid),
                           "starts": [int(s) for s in starts.replace(" ", "").split(",") if s],
                           "size": int(size)})
    return placements


lgip = open(sys.argv[1]).read()
lgipp = open(sys.argv[2]).read()
try:
    name = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,mig.mode.current", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=30).stdout.strip()
except Exception as error:
    name = f"unknown ({error})"
print(json.dumps({"card": name, "profiles": parse_profiles(lgip), "placements": parse_placements(lgipp),
                  "raw": {"lgip": lgip, "lgipp": lgipp}}, indent=2))
