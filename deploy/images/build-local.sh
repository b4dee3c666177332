#!/usr/bin/env bash
# Builds the container images on this machine with podman, with no image registry: the base is a Debian root filesystem
# made by debootstrap from the machine's Debian mirror, the apps are this checkout published by the host's .NET SDK.
#
#   localhost/xgenmm/base:<appVersion>         Debian 12 minbase + the runtime libraries + the host's .NET and ASP.NET Core runtime
#   localhost/xgenmm/gateway:<appVersion>      src/XGenMM.Gateway (Cluster mode), as deploy/docker/gateway.Dockerfile
#   localhost/xgenmm/silo:<appVersion>-cpu     src/XGenMM.Silo on TorchSharp's CPU backend (the GPU image is deploy/docker/silo.Dockerfile)
#   localhost/xgenmm/redis:<appVersion>-test   Debian's redis-server on the same base, for the container tests only (the chart deploys its own Redis)
#
# Every image carries a label (org.xgenmm.inputs) with a hash of what it was built from; an image whose inputs did not
# change is kept as is, so a second run only hashes. Work files are kept in the git-ignored .tools/images.
#   deploy/images/build-local.sh            build what changed, print the tags and sizes
#   deploy/images/build-local.sh --force    rebuild everything (debootstrap too)
# Needs root (debootstrap chroots; the tests use root's podman storage) and the packages podman, runc and debootstrap
# (build/install-test-deps.sh installs them). Podman reads deploy/images/containers.conf (CONTAINERS_CONF).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/deploy/images"
work="$root/.tools/images"
force=0
[ "${1:-}" = "--force" ] && force=1

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "build-local.sh needs root (debootstrap chroots) and sudo is not installed" >&2; exit 1; }
  exec sudo --preserve-env=PATH,DOTNET_ROOT,DEBIAN_MIRROR "$0" "$@"
fi
for tool in podman runc debootstrap dotnet; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build-local.sh needs $tool (build/install-test-deps.sh installs podman, runc and debootstrap)" >&2; exit 1; }
done

export CONTAINERS_CONF="$here/containers.conf"
podman_() { podman --runtime "$(command -v runc)" --cgroup-manager=cgroupfs "$@"; }

tag="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/helm/xgenmm/Chart.yaml")"
[ -n "$tag" ] || { echo "no appVersion in helm/xgenmm/Chart.yaml" >&2; exit 1; }
base_image="localhost/xgenmm/base:$tag"
gateway_image="localhost/xgenmm/gateway:$tag"
silo_image="localhost/xgenmm/silo:$tag-cpu"
redis_image="localhost/xgenmm/redis:$tag-test"

# Debian 12, as the build host and its Debian registry. The libraries are what .NET needs with invariant globalization
# (no ICU: Directory.Build.props) plus libgomp for libtorch's OpenMP; libstdc++ comes with minbase; curl serves the
# HEALTHCHECK and the chart's helm test.
suite=bookworm
packages="ca-certificates,libssl3,zlib1g,libgomp1,tzdata,curl"
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror="$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n1 || true)"
  [ -n "$mirror" ] || mirror="$(awk '$1 == "deb" && $2 !~ /security/ && $3 ~ /^bookworm$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)"
  [ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
fi

# The runtime the published apps roll forward to: the host SDK's newest 10.0 runtimes.
dotnet_root="$(dirname "$(readlink -f "$(command -v dotnet)")")"
runtime_version="$(ls "$dotnet_root/shared/Microsoft.NETCore.App" | grep '^10\.' | sort -V | tail -n1)"
aspnet_version="$(ls "$dotnet_root/shared/Microsoft.AspNetCore.App" | grep '^10\.' | sort -V | tail -n1)"
fxr_version="$(ls "$dotnet_root/host/fxr" | sort -V | tail -n1)"
[ -n "$runtime_version" ] && [ -n "$aspnet_version" ] || { echo "no .NET 10 runtime under $dotnet_root" >&2; exit 1; }

mkdir -p "$work"
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
hash_text() { sha256sum | cut -c1-16; }
label_of() { podman_ image inspect --format '{{ index .Config.Labels "org.xgenmm.inputs" }}' "$1" 2>/dev/null || true; }
up_to_date() { [ "$force" -eq 0 ] && [ "$(label_of "$1")" = "$2" ]; }
# build <image> <key> <Containerfile> <context> [build args...]: podman build, then drop the image it replaced.
build() {
  local image=$1 key=$2 containerfile=$3 context=$4
  shift 4
  local old
  old="$(podman_ image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
  podman_ build --quiet --format docker --layers=false --label "org.xgenmm.inputs=$key" -f "$containerfile" -t "$image" "$@" "$context" >/dev/null
  if [ -n "$old" ] && [ "$old" != "$(podman_ image inspect --format '{{.Id}}' "$image")" ]; then
    podman_ rmi "$old" >/dev/null 2>&1 || true # still used by another tag or container: kept
  fi
}

# ---- base ------------------------------------------------------------------------------------------------------------
base_key="$( { echo "recipe 1 $suite $packages $mirror"; echo "dotnet $runtime_version $aspnet_version $fxr_version";
  cat "$here/base.Containerfile"; } | hash_text)"
if up_to_date "$base_image" "$base_key"; then
  log "base: $base_image is up to date ($base_key)"
else
  rootfs_tar="$work/rootfs-$base_key.tar"
  if [ ! -f "$rootfs_tar" ] || [ "$force" -eq 1 ]; then
    log "base: debootstrap $suite (minbase + $packages) from $mirror"
    rootfs="$work/rootfs"
    rm -rf "$rootfs" && mkdir -p "$rootfs"
    # The downloaded .deb files are kept: a changed package list downloads only what is new.
    mkdir -p "$work/debs"
    debootstrap --variant=minbase --include="$packages" --cache-dir="$work/debs" "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
      || { tail -n 20 "$work/debootstrap.log" >&2; echo "debootstrap failed (log: $work/debootstrap.log)" >&2; exit 1; }
    # What only an install needs: package caches and lists, documentation.
    rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
      "$rootfs"/usr/share/info/* "$rootfs"/var/log/*
    # The .NET and ASP.NET Core runtime of the SDK that publishes the apps (framework-dependent apps run on it).
    mkdir -p "$rootfs/usr/share/dotnet/shared" "$rootfs/usr/share/dotnet/host/fxr"
    cp -a "$dotnet_root/dotnet" "$rootfs/usr/share/dotnet/"
    cp -a "$dotnet_root/host/fxr/$fxr_version" "$rootfs/usr/share/dotnet/host/fxr/"
    mkdir -p "$rootfs/usr/share/dotnet/shared/Microsoft.NETCore.App" "$rootfs/usr/share/dotnet/shared/Microsoft.AspNetCore.App"
    cp -a "$dotnet_root/shared/Microsoft.NETCore.App/$runtime_version" "$rootfs/usr/share/dotnet/shared/Microsoft.NETCore.App/"
    cp -a "$dotnet_root/shared/Microsoft.AspNetCore.App/$aspnet_version" "$rootfs/usr/share/dotnet/shared/Microsoft.AspNetCore.App/"
    ln -sf /usr/share/dotnet/dotnet "$rootfs/usr/bin/dotnet"
    # The non-root user of the images (uid 1654, as Microsoft's runtime images), home /tmp.
    grep -q '^app:' "$rootfs/etc/group" || echo 'app:x:1654:' >>"$rootfs/etc/group"
    grep -q '^app:' "$rootfs/etc/passwd" || echo 'app:x:1654:1654::/tmp:/usr/sbin/nologin' >>"$rootfs/etc/passwd"
    rm -f "$work"/rootfs-*.tar
    tar --numeric-owner -C "$rootfs" -cf "$rootfs_tar.partial" . && mv "$rootfs_tar.partial" "$rootfs_tar"
    rm -rf "$rootfs"
  fi
  log "base: podman import + build $base_image"
  podman_ import --quiet "$rootfs_tar" "localhost/xgenmm/rootfs:$base_key" >/dev/null
  build "$base_image" "$base_key" "$here/base.Containerfile" "$here" --build-arg "ROOTFS=localhost/xgenmm/rootfs:$base_key" \
    --label "org.xgenmm.dotnet=$runtime_version"
  podman_ rmi "localhost/xgenmm/rootfs:$base_key" >/dev/null
fi

# ---- apps ------------------------------------------------------------------------------------------------------------
# What a publish reads: the sources, the committed model files, the build logic and the SDK/package pins.
source_key="$(cd "$root" && git ls-files -co --exclude-standard -- src models build global.json Directory.Build.props \
  Directory.Build.targets Directory.Packages.props NuGet.config nuget.config | grep -v '/\(bin\|obj\|node_modules\)/' | sort \
  | xargs -d '\n' sha256sum | hash_text)"

# Framework-dependent (the base has the runtime) and for linux-x64 only: a portable publish carries every platform's
# native libraries (Windows, macOS, musl, arm64), hundreds of MB that no container loads.
publish_args=(-c Release -r linux-x64 --self-contained false)

# app <image> <project> <Containerfile>
app() {
  local image=$1 project=$2 containerfile=$3
  local key
  key="$( { echo "$base_key $source_key ${publish_args[*]}"; cat "$containerfile"; } | hash_text)"
  if up_to_date "$image" "$key"; then log "$(basename "$project"): $image is up to date ($key)"; return; fi
  local out="$work/publish/$(basename "$project")"
  log "$(basename "$project"): dotnet publish"
  rm -rf "$out"
  dotnet publish "$root/src/$project/$project.csproj" "${publish_args[@]}" -o "$out" -nologo -v quiet >"$work/publish-$project.log" 2>&1 \
    || { tail -n 30 "$work/publish-$project.log" >&2; echo "dotnet publish $project failed" >&2; exit 1; }
  log "$(basename "$project"): podman build $image"
  build "$image" "$key" "$containerfile" "$out" --build-arg "BASE=$base_image"
}
app "$gateway_image" XGenMM.Gateway "$here/gateway.Containerfile"
app "$silo_image" XGenMM.Silo "$here/silo-cpu.Containerfile"

# ---- redis for the tests ---------------------------------------------------------------------------------------------
# Debian's redis-server and what it links that minbase lacks, unpacked (no maintainer scripts run) into a folder that
# the Containerfile copies over the base.
redis_debs="redis-server redis-tools libjemalloc2 liblzf1 libatomic1"
redis_versions="$(dpkg-query -W -f='${Package}=${Version}\n' $redis_debs 2>/dev/null || apt-cache policy $redis_debs | tr -d '\n')"
redis_key="$( { echo "recipe 2 $base_key $redis_versions"; cat "$here/redis.Containerfile"; } | hash_text)"
if up_to_date "$redis_image" "$redis_key"; then
  log "redis: $redis_image is up to date ($redis_key)"
else
  log "redis: apt-get download $redis_debs"
  rm -rf "$work/redis" && mkdir -p "$work/redis/debs" "$work/redis/rootfs"
  (cd "$work/redis/debs" && apt-get download $redis_debs >"$work/redis/download.log" 2>&1) \
    || { cat "$work/redis/download.log" >&2; echo "apt-get download failed (run apt-get update?)" >&2; exit 1; }
  for deb in "$work"/redis/debs/*.deb; do dpkg-deb -x "$deb" "$work/redis/rootfs"; done
  # The base has a merged /usr (/lib, /bin, /sbin are links into it): copying real directories over them would
  # replace the links, so anything under them moves into /usr first.
  for dir in lib bin sbin; do
    if [ -d "$work/redis/rootfs/$dir" ]; then
      mkdir -p "$work/redis/rootfs/usr/$dir" && cp -a "$work/redis/rootfs/$dir/." "$work/redis/rootfs/usr/$dir/"
      rm -rf "${work:?}/redis/rootfs/$dir"
    fi
  done
  rm -rf "$work"/redis/rootfs/usr/share/doc "$work"/redis/rootfs/usr/share/man "$work"/redis/rootfs/usr/lib/systemd
  build "$redis_image" "$redis_key" "$here/redis.Containerfile" "$work/redis" --build-arg "BASE=$base_image"
fi

for image in "$base_image" "$gateway_image" "$silo_image" "$redis_image"; do
  printf '%-44s %s\n' "$image" "$(podman_ image inspect --format '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
done
