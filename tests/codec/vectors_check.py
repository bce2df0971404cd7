#!/usr/bin/env python3
"""An independent producer and validator, written from proto/README.md alone.

For every golden vector in proto/vectors:

  valid/         builds the command from its .json meaning with the canonical
                 encoder of README §4 (written here by hand) and asserts byte
                 equality with the .msgpack file; checks that python3-msgpack's
                 own packb writes the same bytes; rebuilds the profile from
                 `profile_request_json` by the rules of §3.1 where given; and
                 writes the profile back by the rules of §3.2, asserting the
                 text equals `profile_json`.
  noncanonical/  decodes the bytes with python3-msgpack and asserts they mean
                 what the .json says.
  invalid/       runs the validation of §5 (written here, in its order) and
                 asserts the named error code; valid and noncanonical vectors
                 must pass it.

Usage: vectors_check.py <proto/vectors>. Exit 0 when all pass, 1 on a
mismatch, 77 (ctest's skip) when python3-msgpack is missing.
"""

import decimal
import json
import math
import os
import re
import struct
import sys

try:
    import msgpack
except ImportError:
    print("vectors_check: python3-msgpack is not installed (apt-get install python3-msgpack)")
    sys.exit(77)

# ---- §2 limits (the defaults) ----
MAX_DEPTH = 32
MAX_KEY_BYTES = 256
MAX_STRING_BYTES = 65536
MAX_ENTRIES = 1000
MAX_RECIPIENT_BYTES = 256
MAX_SOURCE_BYTES = 128

FIELD_ORDER = ["schema", "op", "command_id", "recipient_id", "accepted_at_us", "version", "source", "profile",
               "patch"]
OPS = ("replace", "merge", "patch", "delete")
PATCH_OPS = ("add", "remove", "replace", "move", "copy", "test")


# ---- §4 canonical encoding, by hand ----

def enc_int(v):
    if v >= 0:
        if v <= 0x7F:
            return bytes([v])
        if v <= 0xFF:
            return b"\xcc" + struct.pack(">B", v)
        if v <= 0xFFFF:
            return b"\xcd" + struct.pack(">H", v)
        if v <= 0xFFFFFFFF:
            return b"\xce" + struct.pack(">I", v)
        if v <= 0xFFFFFFFFFFFFFFFF:
            return b"\xcf" + struct.pack(">Q", v)
        raise ValueError("int beyond uint64")
    if v >= -32:
        return struct.pack(">b", v)
    if v >= -128:
        return b"\xd0" + struct.pack(">b", v)
    if v >= -32768:
        return b"\xd1" + struct.pack(">h", v)
    if v >= -(2 ** 31):
        return b"\xd2" + struct.pack(">i", v)
    if v >= -(2 ** 63):
        return b"\xd3" + struct.pack(">q", v)
    raise ValueError("int below int64")


def enc_header(n, fix_base, fix_max, w16, w32):
    if n <= fix_max:
        return bytes([fix_base | n])
    if n <= 0xFFFF:
        return bytes([w16]) + struct.pack(">H", n)
    return bytes([w32]) + struct.pack(">I", n)


def enc_str(s):
    b = s.encode("utf-8")
    n = len(b)
    if n <= 31:
        head = bytes([0xA0 | n])
    elif n <= 0xFF:
        head = b"\xd9" + struct.pack(">B", n)
    elif n <= 0xFFFF:
        head = b"\xda" + struct.pack(">H", n)
    else:
        head = b"\xdb" + struct.pack(">I", n)
    return head + b


def enc_bin(b):
    assert len(b) <= 0xFF
    return b"\xc4" + bytes([len(b)]) + b


def enc_value(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        return enc_int(v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        return enc_str(v)
    if isinstance(v, bytes):
        return enc_bin(v)
    if isinstance(v, list):
        return enc_header(len(v), 0x90, 15, 0xDC, 0xDD) + b"".join(enc_value(x) for x in v)
    if isinstance(v, dict):
        out = enc_header(len(v), 0x80, 15, 0xDE, 0xDF)
        for k, x in v.items():
            out += enc_str(k) + enc_value(x)
        return out
    raise TypeError(type(v))


# ---- §3.1 JSON to profile ----

def json_int(text):
    """A number without fraction or exponent: an int if it fits -2^63..2^64-1, else a float."""
    v = int(text)
    if -(2 ** 63) <= v <= 2 ** 64 - 1:
        return v
    return float(text)


def json_float(text):
    f = float(text)
    if math.isinf(f):
        raise ValueError("number out of double range: " + text)
    return f


def reject_constant(name):
    raise ValueError("not JSON: " + name)


def profile_from_json(text):
    # dict(pairs): a repeated key keeps its first position and its last value.
    return json.loads(text, parse_int=json_int, parse_float=json_float, parse_constant=reject_constant,
                      object_pairs_hook=dict)


def command_from_meaning(meaning, profile):
    c = meaning["command"]
    cmd = {
        "schema": c["schema"],
        "op": c["op"],
        "command_id": bytes.fromhex(c["command_id"]),
        "recipient_id": c["recipient_id"],
        "accepted_at_us": c["accepted_at_us"],
    }
    if "version" in c:
        cmd["version"] = int(c["version"])
    if "source" in c:
        cmd["source"] = c["source"]
    if c["op"] in ("replace", "merge"):
        cmd["profile"] = profile
    elif c["op"] == "patch":
        cmd["patch"] = profile  # the operations, parsed from patch_json
    return cmd


# ---- §3.2 profile to JSON ----

def write_float(f):
    if f == 0:
        return "-0.0" if math.copysign(1.0, f) < 0 else "0.0"
    sign = "-" if f < 0 else ""
    # repr() is the shortest text that reads back (Python 3.1+).
    d = decimal.Decimal(repr(abs(f)))
    _, digits, exp = d.as_tuple()
    digits = "".join(map(str, digits)).lstrip("0")
    stripped = digits.rstrip("0")
    exp += len(digits) - len(stripped)
    digits = stripped
    k = len(digits)
    n = k + exp  # value = 0.digits * 10^n
    if k <= n <= 21:
        body = digits + "0" * (n - k) + ".0"
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        body = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("-" if e < 0 else "+") + str(abs(e))
    return sign + body


def write_json(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return write_float(v)
    if isinstance(v, str):
        # json.dumps escapes exactly as §3.2 says: \" \\ \b \f \n \r \t, other
        # controls as lowercase \u00xx, the rest raw with ensure_ascii=False.
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list_of_pairs):
        return "{" + ",".join(write_json(k) + ":" + write_json(x) for k, x in v) + "}"
    if isinstance(v, list):
        return "[" + ",".join(write_json(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(write_json(k) + ":" + write_json(x) for k, x in v.items()) + "}"
    raise TypeError(type(v))


class list_of_pairs(list):
    """A msgpack map as decoded here: its entries in wire order, duplicates kept."""


# ---- §5 validation, in its order ----

class Invalid(Exception):
    def __init__(self, code, why=""):
        super().__init__(code + (": " + why if why else ""))
        self.code = code


def unpack(data):
    return msgpack.unpackb(data, raw=False, unicode_errors="surrogateescape", strict_map_key=False,
                           object_pairs_hook=list_of_pairs, use_list=True, timestamp=0)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def text_ok(s):
    """Valid UTF-8 (surrogateescape left lone surrogates for bad bytes) and no U+0000."""
    try:
        b = s.encode("utf-8")
    except UnicodeEncodeError:
        return False, None
    return "\0" not in s, b


def check_text(s, limit, what):
    try:
        b = s.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid("invalid_utf8", what)
    if len(b) > limit:
        raise Invalid("limit", what)
    if "\0" in s:
        raise Invalid("nul_in_string", what)


def check_profile(v, depth):
    if isinstance(v, list_of_pairs):
        if depth > MAX_DEPTH:
            raise Invalid("limit", "depth")
        if len(v) > MAX_ENTRIES:
            raise Invalid("limit", "entries")
        for k, x in v:
            if not isinstance(k, str):
                raise Invalid("non_string_key")
            # limit before UTF-8: the length is of the raw bytes
            raw = k.encode("utf-8", "surrogateescape")
            if len(raw) > MAX_KEY_BYTES:
                raise Invalid("limit", "key bytes")
            check_text(k, MAX_KEY_BYTES, "key")
            check_profile(x, depth + 1)
    elif isinstance(v, list):
        if depth > MAX_DEPTH:
            raise Invalid("limit", "depth")
        if len(v) > MAX_ENTRIES:
            raise Invalid("limit", "elements")
        for x in v:
            check_profile(x, depth + 1)
    elif isinstance(v, str):
        raw = v.encode("utf-8", "surrogateescape")
        if len(raw) > MAX_STRING_BYTES:
            raise Invalid("limit", "string bytes")
        check_text(v, MAX_STRING_BYTES, "string")
    elif isinstance(v, float):
        if not math.isfinite(v):
            raise Invalid("non_finite_number")
    elif v is None or isinstance(v, (bool, int)):
        pass
    else:  # bytes, ExtType, Timestamp
        raise Invalid("unsupported_type", type(v).__name__)


def validate(data, key):
    """Returns the decoded command (profile as list_of_pairs) or raises Invalid."""
    try:
        top = unpack(data)
    except msgpack.ExtraData:
        raise Invalid("trailing_bytes")
    except Exception as e:  # truncated, reserved byte, absurd lengths
        raise Invalid("malformed", repr(e))
    if not isinstance(top, list_of_pairs):
        raise Invalid("not_a_map")
    fields = {}
    for k, v in top:
        if not isinstance(k, str):
            raise Invalid("non_string_key")
        if k in FIELD_ORDER:
            if k in fields:
                raise Invalid("duplicate_field", k)
            fields[k] = v

    def required(name):
        if name not in fields:
            raise Invalid("missing_field", name)
        return fields[name]

    schema = required("schema")
    if not is_int(schema):
        raise Invalid("wrong_type", "schema")
    if schema != 1:
        raise Invalid("unknown_schema_version")
    op = required("op")
    if not isinstance(op, str):
        raise Invalid("wrong_type", "op")
    if op not in OPS:
        raise Invalid("unknown_operation")
    cid = required("command_id")
    if not isinstance(cid, bytes):
        raise Invalid("wrong_type", "command_id")
    if len(cid) != 16 or cid == bytes(16):
        raise Invalid("bad_command_id")
    rid = required("recipient_id")
    if not isinstance(rid, str):
        raise Invalid("wrong_type", "recipient_id")
    ok, rid_bytes = text_ok(rid)
    if not ok or not 1 <= len(rid_bytes) <= MAX_RECIPIENT_BYTES:
        raise Invalid("bad_recipient_id")
    if key is None or key != rid_bytes:
        raise Invalid("key_mismatch")
    at = required("accepted_at_us")
    if not is_int(at) or not -(2 ** 63) <= at <= 2 ** 63 - 1:
        raise Invalid("wrong_type", "accepted_at_us")
    version = fields.get("version")
    if version is not None and (not is_int(version) or version < 0):
        raise Invalid("wrong_type", "version")
    source = fields.get("source")
    if source is not None:
        if not isinstance(source, str):
            raise Invalid("wrong_type", "source")
        ok, b = text_ok(source)
        if not ok or len(b) > MAX_SOURCE_BYTES:
            raise Invalid("bad_source")
    decoded = {"schema": schema, "op": op, "command_id": cid, "recipient_id": rid, "accepted_at_us": at,
               "version": version, "source": source}
    if op == "delete":  # §1: no body; a profile or patch field is not read
        return decoded
    if op == "patch":
        patch = required("patch")
        if not isinstance(patch, list) or isinstance(patch, list_of_pairs):
            raise Invalid("wrong_type", "patch")
        check_patch(patch)
        decoded["patch"] = patch
        return decoded
    profile = required("profile")
    if not isinstance(profile, list_of_pairs):
        raise Invalid("wrong_type", "profile")
    check_profile(profile, 1)
    decoded["profile"] = profile
    return decoded


def pointer_ok(p):
    """RFC 6901: empty, or "/" tokens in which "~" is followed by 0 or 1 only."""
    if p == "":
        return True
    if not p.startswith("/"):
        return False
    return re.fullmatch(r"(?:[^~]|~[01])*", p) is not None


def check_patch(patch):
    """§3.3, in wire order: each operation a map of str members, none twice; op one of six; path
    (and from for move/copy) a pointer; from not a proper prefix of a move's path; value for
    add/replace/test, checked as profile data with depth counted from the value."""
    if len(patch) > MAX_ENTRIES:
        raise Invalid("bad_patch", "operations")
    for i, item in enumerate(patch):
        if not isinstance(item, list_of_pairs):
            raise Invalid("bad_patch", "patch[%d] not a map" % i)
        members = {}
        for k, v in item:
            if not isinstance(k, str):
                raise Invalid("bad_patch", "member name")
            if k in ("op", "path", "from", "value"):
                if k in members:
                    raise Invalid("bad_patch", "repeated " + k)
                members[k] = v
        op = members.get("op")
        if op not in PATCH_OPS:
            raise Invalid("bad_patch", "op")
        names = ["path"] + (["from"] if op in ("move", "copy") else [])
        for m in names:
            p = members.get(m)
            if not isinstance(p, str):
                raise Invalid("bad_patch", m)
            ok, raw = text_ok(p)
            if not ok or len(raw) > MAX_STRING_BYTES or not pointer_ok(p):
                raise Invalid("bad_patch", m)
        if op == "move":
            f, t = members["from"], members["path"]
            if t.startswith(f + "/"):
                raise Invalid("bad_patch", "move into a child")
        if op in ("add", "replace", "test"):
            if "value" not in members:
                raise Invalid("bad_patch", "value")
            check_profile(members["value"], 1)


# ---- the checks ----

failures = []


def fail(name, why):
    failures.append(name + ": " + why)


def key_bytes(meaning):
    k = meaning["key"]
    return None if k is None else k.encode("utf-8")


def check_meaning(name, meaning, decoded):
    c = meaning["command"]
    if decoded["command_id"].hex() != c["command_id"]:
        fail(name, "command_id differs from the meaning")
    for f in ("schema", "op", "recipient_id", "accepted_at_us"):
        if decoded[f] != c[f]:
            fail(name, f + " differs from the meaning")
    if decoded["version"] != (int(c["version"]) if "version" in c else None):
        fail(name, "version differs from the meaning")
    if decoded["source"] != c.get("source"):
        fail(name, "source differs from the meaning")
    if c["op"] == "delete":
        if "profile_json" in meaning or "patch_json" in meaning:
            fail(name, "a delete's meaning has a body")
        return
    body, want = ("patch", "patch_json") if c["op"] == "patch" else ("profile", "profile_json")
    if c["op"] == "patch":  # canonical members: op, path, from, value
        order = ("op", "path", "from", "value")
        canon = [list_of_pairs((k, v) for k in order for (kk, v) in op if kk == k) for op in decoded["patch"]]
        text = write_json(canon)
    else:
        text = write_json(decoded[body])
    if text != meaning[want]:
        fail(name, "%s written back per §3.2 differs:\n  got  %.300s\n  want %.300s" % (body, text, meaning[want]))
        return


def run(root):
    counts = {}
    for folder in ("valid", "noncanonical", "invalid"):
        names = sorted(f[:-8] for f in os.listdir(os.path.join(root, folder)) if f.endswith(".msgpack"))
        counts[folder] = len(names)
        for stem in names:
            name = folder + "/" + stem
            with open(os.path.join(root, folder, stem + ".msgpack"), "rb") as f:
                data = f.read()
            with open(os.path.join(root, folder, stem + ".json"), encoding="utf-8") as f:
                meaning = json.load(f)
            key = key_bytes(meaning)

            if folder == "invalid":
                try:
                    validate(data, key)
                    fail(name, "passes validation, want " + meaning["error"])
                except Invalid as e:
                    if e.code != meaning["error"]:
                        fail(name, "fails with %s, want %s" % (e, meaning["error"]))
                continue

            try:
                decoded = validate(data, key)
            except Invalid as e:
                fail(name, "fails validation: %s" % e)
                continue
            check_meaning(name, meaning, decoded)
            if folder != "valid":
                continue

            body = meaning.get("patch_json", meaning.get("profile_json", "null"))
            profile = profile_from_json(body)
            cmd = command_from_meaning(meaning, profile)
            mine = enc_value(cmd)
            if mine != data:
                fail(name, "the canonical encoding of the meaning differs from the vector bytes")
            theirs = msgpack.packb(cmd, use_bin_type=True, use_single_float=False)
            if theirs != data:
                fail(name, "msgpack.packb of the meaning differs from the vector bytes")
            if key != cmd["recipient_id"].encode("utf-8"):
                fail(name, "the key is not the recipient id")
            if "profile_request_json" in meaning:
                from_request = enc_value(profile_from_json(meaning["profile_request_json"]))
                if enc_value(command_from_meaning(meaning, profile_from_json(meaning["profile_request_json"]))) != data:
                    fail(name, "profile_request_json, mapped per §3.1, differs from the profile bytes (%s)"
                         % from_request.hex()[:120])
    return counts


def main():
    if len(sys.argv) != 2:
        print("usage: vectors_check.py <proto/vectors>")
        return 2
    counts = run(sys.argv[1])
    for f in failures:
        print("FAIL " + f)
    total = sum(counts.values())
    print("vectors_check: %d vectors (%s), %d failures"
          % (total, ", ".join("%d %s" % (n, k) for k, n in counts.items()), len(failures)))
    if counts.get("valid", 0) == 0 or counts.get("invalid", 0) == 0:
        print("vectors_check: no vectors found")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
