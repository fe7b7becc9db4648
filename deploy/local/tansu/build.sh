#!/usr/bin/env bash
# Builds the local broker: tansu 0.6.0 from its published sources with omni's patches beside this
# script, and installs it as ~/.cargo/bin/tansu:
#   - group-coordinator.patch (tansu-broker): its consumer group coordinator (docs/adr/0001);
#   - statement-cache.patch (tansu-storage): SQLite statements prepared once per connection
#     (docs/adr/0004).
# About 12 minutes on 2 cores, once: a stamp file (~/.cargo/bin/tansu.omni-build) names the
# version and the patches' digest, and a later run with the same stamp returns at once. Used by
# deploy/local/install.sh (`make deps`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version=0.6.0
features=dynostore,libsql
# Each patch and the published crate it applies to.
patches=(tansu-broker:group-coordinator.patch tansu-storage:statement-cache.patch)
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
stamp_file="$cargo_home/bin/tansu.omni-build"
stamp="tansu $version + $(cd "$here" && cat "${patches[@]#*:}" | sha256sum | cut -c1-16)"

if [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ] && [ -x "$cargo_home/bin/tansu" ]; then
  exit 0
fi
echo "building the tansu $version broker with omni's patches (about 12 minutes on 2 cores, once)"
work="${OMNI_TANSU_BUILD_DIR:-$HOME/.cache/omni/tansu-build}"
mkdir -p "$work/fetch/src"
# The published .crate files, through cargo's own registry client.
cat > "$work/fetch/Cargo.toml" <<TOML
[package]
name = "omni-tansu-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
tansu = { version = "=$version", default-features = false }
tansu-broker = { version = "=$version", default-features = false }
tansu-storage = { version = "=$version", default-features = false }

[workspace]
TOML
: > "$work/fetch/src/lib.rs"
cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml"
crate_file() {
  find "$cargo_home/registry/cache" -name "$1-$version.crate" | head -n 1
}
unpack() {
  local file
  file="$(crate_file "$1")"
  [ -n "$file" ] || { echo "tansu/build.sh: $1-$version.crate not found after cargo fetch" >&2; exit 1; }
  tar -xzf "$file" -C "$work/src"
}
rm -rf "$work/src" && mkdir -p "$work/src"
unpack tansu
# Its own workspace (so a build directory inside another cargo workspace still builds), with each
# patched crate in place of the published one.
printf '\n[workspace]\n\n[patch.crates-io]\n' >> "$work/src/tansu-$version/Cargo.toml"
for entry in "${patches[@]}"; do
  name="${entry%%:*}"
  unpack "$name"
  patch --quiet -p1 -d "$work/src/$name-$version" < "$here/${entry#*:}"
  printf '%s = { path = "../%s-%s" }\n' "$name" "$name" "$version" >> "$work/src/tansu-$version/Cargo.toml"
done
# The published Cargo.lock pins every other dependency; cargo only swaps in the patched source.
cargo build --quiet --release --features "$features" \
  --manifest-path "$work/src/tansu-$version/Cargo.toml" --target-dir "$work/target"
install -m 0755 "$work/target/release/tansu" "$cargo_home/bin/tansu"
echo "$stamp" > "$stamp_file"
echo "tansu $version (patched) installed in $cargo_home/bin"
