#!/usr/bin/env python3
"""Seeds the fuzz corpora from the adapters' fixtures (the providers' documented payload shapes),
so the fuzzers start from real messages. Orders follow `omni_channels::normalizers()` and
`omni_channels::webhook::webhook_adapters()`; a changed order only makes seeds less apt, never wrong."""
import os
import pathlib

root = pathlib.Path(__file__).resolve().parent
fixtures = root.parent / "crates" / "omni-channels" / "tests" / "fixtures"
normalizers = ["api", "email", "whatsapp", "messenger", "instagram", "x", "telegram", "slack",
               "twilio-sms", "twilio-voice", "aircall", "asterisk"]
webhooks = ["whatsapp", "messenger", "instagram", "x", "telegram", "slack", "twilio-sms", "twilio-voice", "aircall"]

for target in ("normalize", "webhook"):
    (root / "corpus" / target).mkdir(parents=True, exist_ok=True)

count = 0
for index, name in enumerate(normalizers):
    for path in sorted((fixtures / name).glob("*")):
        data = path.read_bytes()
        if name == "asterisk":
            for n, line in enumerate(data.splitlines(keepends=True)):
                (root / "corpus" / "normalize" / f"{name}-{path.stem}-{n}").write_bytes(bytes([index, 0]) + line)
                count += 1
        else:
            (root / "corpus" / "normalize" / f"{name}-{path.stem}").write_bytes(bytes([index, 0]) + data)
            count += 1
        if name in webhooks:
            # query, then the 8 header values (empty), then the body.
            seed = bytes([webhooks.index(name)]) + b"\xff" * 9 + data
            (root / "corpus" / "webhook" / f"{name}-{path.stem}").write_bytes(seed)
            count += 1
print(f"{count} seeds")
