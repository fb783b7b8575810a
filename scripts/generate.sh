#!/usr/bin/env bash
# Regenerates every piece of code derived from protos/: Python messages, gRPC stubs and
# their type stubs under gen/python (import path == proto package), and ECMAScript
# modules for the Node server under whatsapp_baileys_server/src/gen. One protoc (the one
# bundled with the pinned grpcio-tools) so output is byte-for-byte reproducible.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
py="${PYTHON:-$root/.venv/bin/python}"
venv_bin="$(dirname "$py")"
protoc_gen_es="$root/node_modules/.bin/protoc-gen-es"
[ -x "$py" ] || { echo "generate: $py not found; run 'make venv' first" >&2; exit 1; }
[ -x "$protoc_gen_es" ] || { echo "generate: $protoc_gen_es not found; run 'make npm' first" >&2; exit 1; }

mapfile -t protos < <(cd protos && find chatbot -name '*.proto' | LC_ALL=C sort)
wkt="$("$py" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"

py_out="gen/python"
js_out="whatsapp_baileys_server/src/gen"
rm -rf "$py_out/chatbot" "$js_out"
mkdir -p "$py_out" "$js_out"

"$py" -m grpc_tools.protoc -I protos -I "$wkt" \
  --plugin=protoc-gen-mypy="$venv_bin/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$venv_bin/protoc-gen-mypy_grpc" \
  --python_out="$py_out" --mypy_out="$py_out" \
  --grpc_python_out="$py_out" --mypy_grpc_out="$py_out" \
  "${protos[@]}"

# Regular packages (not namespace packages) so mypy and importlib agree on the layout.
find "$py_out/chatbot" -type d -exec sh -c 'for d; do : > "$d/__init__.py"; done' sh {} +
: > "$py_out/chatbot/py.typed"

"$py" -m grpc_tools.protoc -I protos -I "$wkt" \
  --plugin=protoc-gen-es="$protoc_gen_es" \
  --es_out="$js_out" --es_opt=target=js+dts,import_extension=js \
  "${protos[@]}"

echo "generate: ${#protos[@]} protos -> $py_out, $js_out"
