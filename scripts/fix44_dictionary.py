"""Write ``procs/gateway/fix44.json``, the FIX 4.4 dictionary the gateway validates against,
from QuickFIX's ``FIX44.xml``:

    python scripts/fix44_dictionary.py path/to/FIX44.xml > procs/gateway/fix44.json

``FIX44.xml`` ships in the ``quickfix`` source distribution on PyPI (``spec/FIX44.xml``;
``pip download quickfix --no-binary :all: --no-deps``), the data dictionary QuickFIX engines
validate with: a firm's engine and ringex then agree on what FIX 4.4 defines. Kept: every
field (tag, name, type, enumerated values); for the header and each message type, the fields
it defines outside repeating groups, its components flattened; and its repeating groups
(``groups``), each ``[count tag, [members in order]]``, a member a tag or a nested group.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = ET.parse(argv[1]).getroot()
    fields = {f.get("name"): f for f in root.iter("field") if f.get("number")}
    tags = {name: int(f.get("number", "0")) for name, f in fields.items()}
    components = {c.get("name"): c for c in root.find("components") or []}

    def flat(node: ET.Element) -> list[int]:
        """The fields of ``node`` outside repeating groups, components flattened."""
        out: list[int] = []
        for child in node:
            if child.tag == "field":
                out.append(tags[child.get("name", "")])
            elif child.tag == "component":
                out += flat(components[child.get("name")])
        return out

    def groups(node: ET.Element) -> list[list[object]]:
        """The repeating groups of ``node``, components flattened, in the specified order."""
        out: list[list[object]] = []
        for child in node:
            if child.tag == "group":
                out.append([tags[child.get("name", "")], members(child)])
            elif child.tag == "component":
                out += groups(components[child.get("name")])
        return out

    def members(group: ET.Element) -> list[object]:
        """A group's members in order: a field's tag, or a nested group."""
        out: list[object] = []
        for child in group:
            if child.tag == "field":
                out.append(tags[child.get("name", "")])
            elif child.tag == "group":
                out.append([tags[child.get("name", "")], members(child)])
            elif child.tag == "component":
                out += members(components[child.get("name")])
        return out

    header = root.find("header") or ET.Element("header")
    doc = {
        "source": "QuickFIX 1.16.0 spec/FIX44.xml (scripts/fix44_dictionary.py)",
        "fields": {
            str(tags[name]): [
                name,
                f.get("type"),
                sorted(v.get("enum", "") for v in f.findall("value")) or None,
            ]
            for name, f in sorted(fields.items(), key=lambda item: tags[item[0]])
        },
        "header": flat(header),
        "messages": {
            m.get("msgtype"): [m.get("name"), flat(m)] for m in root.find("messages") or []
        },
        "groups": {
            "header": groups(header),
            **{m.get("msgtype"): groups(m) for m in root.find("messages") or [] if groups(m)},
        },
    }
    json.dump(doc, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
