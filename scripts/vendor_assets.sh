#!/usr/bin/env bash
# Re-fetch the pinned front-end assets from the npm registry and copy them
# into static/vendor/. Idempotent: running it again produces byte-identical
# files. No CDN is used at runtime; these files are served by the portal.
#
# For each package: `npm pack <name>@<version>` into a temp dir, check the
# tarball's sha512 against the integrity pinned below (the same value as
# `npm view <name>@<version> dist.integrity`), unpack, copy the files.
#
# Usage: scripts/vendor_assets.sh   (needs bash, npm, tar, openssl)
# To bump a version: change VERSION and INTEGRITY together, re-run, and
# update static/vendor/VERSIONS.md.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENDOR_DIR="$REPO_ROOT/static/vendor"

# name|version|integrity|dest dir (under static/vendor)|src:dest file pairs (space-separated)
PACKAGES=(
  "htmx.org|2.0.11|sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==|htmx|dist/htmx.min.js:htmx.min.js LICENSE:LICENSE"
  "@picocss/pico|2.1.1|sha512-kIDugA7Ps4U+2BHxiNHmvgPIQDWPDU4IeU6TNRdvXQM1uZX+FibqDQT2xUOnnO2yq/LUHcwnGlu1hvf4KfXnMg==|pico|css/pico.min.css:pico.min.css LICENSE.md:LICENSE"
  "chart.js|4.6.1|sha512-hJyniucsFmq//EvXYvJ6c6mahPoI3kaxdjVH8awTaJ/fDNWeSqqqArixMJWkWNN6fcYvPU3HneSANFNYtRi61g==|chartjs|dist/chart.umd.min.js:chart.umd.min.js LICENSE.md:LICENSE"
  "tus-js-client|4.3.1|sha512-ZLeYmjrkaU1fUsKbIi8JML52uAocjEZtBx4DKjRrqzrZa0O4MYwT6db+oqePlspV+FxXJAyFBc/L5gwUi2OFsg==|tus|dist/tus.min.js:tus.min.js LICENSE:LICENSE"
)

for tool in npm tar openssl base64; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: '$tool' is required" >&2; exit 1; }
done

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/vendor-assets.XXXXXX")"
trap 'rm -rf "$WORK_DIR"' EXIT

for entry in "${PACKAGES[@]}"; do
  IFS='|' read -r name version integrity dest files <<<"$entry"
  echo "==> $name@$version"

  pkg_dir="$WORK_DIR/$dest"
  mkdir -p "$pkg_dir"
  # --ignore-scripts: never run package lifecycle scripts while fetching.
  tarball="$(cd "$pkg_dir" && npm pack --silent --ignore-scripts "$name@$version" | tail -n 1)"
  tarball="$pkg_dir/$tarball"
  [[ -f "$tarball" ]] || { echo "error: npm pack produced no tarball for $name@$version" >&2; exit 1; }

  actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 | tr -d '\n')"
  if [[ "$actual" != "$integrity" ]]; then
    echo "error: integrity mismatch for $name@$version" >&2
    echo "  expected: $integrity" >&2
    echo "  actual:   $actual" >&2
    exit 1
  fi
  echo "    integrity ok ($integrity)"

  mkdir -p "$pkg_dir/unpacked"
  tar -xzf "$tarball" -C "$pkg_dir/unpacked"

  mkdir -p "$VENDOR_DIR/$dest"
  for pair in $files; do
    src="${pair%%:*}"
    dst="${pair#*:}"
    src_path="$pkg_dir/unpacked/package/$src"
    [[ -f "$src_path" ]] || { echo "error: $name@$version has no $src" >&2; exit 1; }
    install -m 0644 "$src_path" "$VENDOR_DIR/$dest/$dst"
    echo "    $src -> static/vendor/$dest/$dst"
  done
done

echo "done: assets in $VENDOR_DIR (see static/vendor/VERSIONS.md)"
