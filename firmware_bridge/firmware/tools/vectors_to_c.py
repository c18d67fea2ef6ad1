"""Turn firmware_bridge/vectors/protocol-v1.json into a C header for test/test_host.c (the JSON stays the one
source of the vectors; this only changes their notation). Usage: vectors_to_c.py VECTORS.json > vectors.h"""

import json
import sys

OPS = {"millis": 1, "adc": 2, "poll": 3, "hello": 4, "sdi12": 5, "send": 6}


def c_bytes(hex_text: str) -> tuple[str, int]:
    data = bytes.fromhex(hex_text)
    if not data:
        return "NULL", 0
    return "(const uint8_t[]){" + ",".join(str(b) for b in data) + "}", len(data)


def main() -> None:
    with open(sys.argv[1]) as handle:
        v = json.load(handle)
    out = ["/* generated from protocol-v1.json by tools/vectors_to_c.py; do not edit */", ""]
    out.append("static const struct crc_vec CRC_VECTORS[] = {")
    for item in v["crc16"]:
        data, n = c_bytes(item["data"])
        out.append(f"    {{{data}, {n}, {item['crc']}}},")
    out.append("};")
    out.append("static const struct cobs_vec COBS_VECTORS[] = {")
    for item in v["cobs"]:
        d, dn = c_bytes(item["decoded"])
        e, en = c_bytes(item["encoded"])
        out.append(f"    {{{d}, {dn}, {e}, {en}}},")
    out.append("};")
    out.append("static const struct frame_vec FRAME_VECTORS[] = {")
    for item in v["frames"]:
        b, bn = c_bytes(item["body"])
        w, wn = c_bytes(item["wire"])
        out.append(f"    {{{item['type']}, {item['seq']}, {b}, {bn}, {w}, {wn}}},")
    out.append("};")
    out.append("static const struct stream_vec STREAM_VECTORS[] = {")
    for item in v["streams"]:
        w, wn = c_bytes(item["wire"])
        frames = b"".join(bytes([len(bytes.fromhex(f))]) + bytes.fromhex(f) for f in item["frames"]).hex()
        f, fn = c_bytes(frames)
        c = item["counters"]
        out.append(f"    {{\"{item['name']}\", {w}, {wn}, {f}, {fn}, {len(item['frames'])}, "
                   f"{{{c['frames']}, {c['crc_errors']}, {c['framing_errors']}, {c['short_frames']}, "
                   f"{c['overflows']}}}}},")
    out.append("};")
    for index, ex in enumerate(v["exchanges"]):
        out.append(f"static const struct step STEPS_{index}[] = {{")
        for step in ex["steps"]:
            op = OPS[step["op"]]
            a, value = 0, 0
            data, dn = "NULL", 0
            expect, en = c_bytes(step.get("expect", ""))
            if step["op"] == "millis":
                a = step["value"]
            elif step["op"] == "adc":
                a, value = step["channel"], step["value"]
            elif step["op"] == "sdi12":
                a = step["status"]
                data, dn = c_bytes(step["reply"].encode("ascii").hex())
            elif step["op"] == "send":
                data, dn = c_bytes(step["wire"])
            out.append(f"    {{{op}, {a}u, {value}u, {data}, {dn}, {expect}, {en}}},")
        out.append("};")
    out.append("static const struct exchange EXCHANGES[] = {")
    board = v["board"]
    for index, ex in enumerate(v["exchanges"]):
        out.append(f"    {{\"{ex['name']}\", {board['boot_id']}, {board['reset_cause']}, {board['millis']}u, "
                   f"STEPS_{index}, {len(ex['steps'])}}},")
    out.append("};")
    print("\n".join(out))


if __name__ == "__main__":
    main()
