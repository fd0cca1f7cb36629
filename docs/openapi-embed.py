#!/usr/bin/python3
"""Turns docs/openapi.yaml into the C file that embeds it as JSON.

Usage: openapi-embed.py docs/openapi.yaml > openapi_data.c
Runs at build time with Debian's python3 and python3-yaml."""
import json
import sys

import yaml

with open(sys.argv[1], encoding="utf-8") as f:
    doc = yaml.safe_load(f)
text = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
out = sys.stdout
out.write("/* generated from %s by docs/openapi-embed.py — do not edit */\n" % sys.argv[1])
out.write('#include "openapi.h"\n')
out.write("const char openapi_json[] = {\n")
for i in range(0, len(text), 16):
    out.write(",".join("0x%02x" % b for b in text[i:i + 16]) + ",\n")
out.write("0x00};\n")
out.write("const size_t openapi_json_len = %d;\n" % len(text))
