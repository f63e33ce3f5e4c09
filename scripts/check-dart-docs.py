#!/usr/bin/env python3
"""Checks the Dart in docs/clients.md against a dart-dio client generated from the
current OpenAPI document: every generated class the docs use exists; every
`getXApi()` and the API method called on it exists, with the named parameters the
docs pass; every field set in a builder (`X((b) => b..field = ...)`) is a field of X;
every member read on a generated object (`page.hasMore`, `r.data!.accessToken`)
is a getter of some generated model. Names from Dart, Flutter and the other packages
the sketch imports are listed below; anything else must be generated.

usage: check-dart-docs.py DOC.md GENERATED_DART_DIR
"""
import pathlib
import re
import sys

# Classes that are not generated: dart:core/async/convert/math, dio, built_collection,
# uuid, web_socket_channel, and the sketch's own (Sync, Store, SignedOut).
NOT_GENERATED = {
    "Future", "Duration", "DateTime", "Uri", "Map", "String", "Exception", "Random",
    "Timer", "Dio", "BaseOptions", "DioException", "BuiltList", "Uuid",
    "IOWebSocketChannel", "Sync", "Store", "SignedOut", "T", "Object", "Function",
}
# Members that belong to those (or to the sketch's own objects), not to generated code.
NOT_GENERATED_MEMBERS = {
    "data", "response", "statusCode", "headers", "value", "toUtc", "toIso8601String",
    "replaceFirst", "parse", "v4", "ready", "stream", "closeCode", "cancel", "periodic",
    "delay", "delayed", "nextInt", "toInt", "tryParse", "now", "replace", "connect",
    "baseUrl", "rebuild",  # rebuild: built_value's, on every generated model
}


def code_blocks(doc: str) -> str:
    return "\n".join(re.findall(r"```dart\n(.*?)```", doc, re.S))


def main() -> int:
    doc, gen = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    code = code_blocks(doc.read_text())
    # Strip comments and strings: they name things in prose.
    code = re.sub(r"//.*", "", code)
    code = re.sub(r"'(?:[^'\\\n]|\\.)*'", "''", code)
    lib = gen / "lib"
    sources = {p: p.read_text() for p in lib.rglob("*.dart") if not p.name.endswith(".g.dart")}
    everything = "\n".join(sources.values())
    classes = set(re.findall(r"^(?:abstract )?class (\w+)", everything, re.M))
    getters = set(re.findall(r"\bget (\w+)\s*[;{=]", everything)) | set(
        re.findall(r"\bget (\w+)\s*=>", everything)
    )
    problems = []

    used_classes = set(re.findall(r"\b([A-Z]\w*)\b", code)) - NOT_GENERATED
    for c in sorted(used_classes):
        if c not in classes:
            problems.append(f"class {c} is not in the generated client")

    api_file = {}
    for m in re.finditer(r"\.get(\w+)Api\(\)\.(\w+)\((.*?)\)\s*[,;)]", code, re.S):
        api, method, args = m.group(1), m.group(2), m.group(3)
        if f"get{api}Api()" not in everything:
            problems.append(f"get{api}Api() is not in the generated client")
            continue
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", api).lower()
        path = lib / "src" / "api" / f"{snake}_api.dart"
        text = api_file.setdefault(path, path.read_text() if path.exists() else "")
        sig = re.search(rf"Future<Response<\w+>> {method}\(\{{(.*?)\}}\)", text, re.S)
        if not sig:
            problems.append(f"{api}Api.{method} is not in the generated client")
            continue
        for name in re.findall(r"(?<![\w.])(\w+):", args.split("(b)")[0]):
            if not re.search(rf"\b{name},", sig.group(1)):
                problems.append(f"{api}Api.{method} has no named parameter {name}")

    for m in re.finditer(r"\b([A-Z]\w*)\(\(b\) => b((?:\s*\.\.\w+[^.]*?)+)\)", code, re.S):
        model, cascade = m.group(1), m.group(2)
        text = next((t for p, t in sources.items() if re.search(rf"class {model}\b", t)), "")
        for field in re.findall(r"\.\.(\w+)", cascade):
            if not re.search(rf"\bget {field}\b", text):
                problems.append(f"{model} has no field {field}")

    for member in sorted(set(re.findall(r"(?<!\.)\.(\w+)", code))):
        if member[0].isupper() or member in NOT_GENERATED_MEMBERS:
            continue
        owner_is_store = re.search(rf"\bstore\.{member}\b", code) or re.search(
            rf"\b_\w*\.{member}\b|\bchannel\.{member}\b|\bapi\.{member}\b", code
        )
        if owner_is_store:
            continue
        if member not in getters and not re.search(rf"\b{member}\(", everything):
            problems.append(f"member .{member} is in no generated class")

    for p in problems:
        print(f"docs/clients.md: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"docs/clients.md: {len(used_classes)} generated classes and their members check out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
