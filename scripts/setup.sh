#!/usr/bin/env bash
# Provisions what the project needs on a fresh machine; idempotent.
#   - the ONNX Runtime shared library (from the onnxruntime-node npm package,
#     whose C API matches onnxruntime_go v1.27.0) into .cache/ort/<arch>/
#   - Mosquitto from Debian's packages (integration tests run against it)
#   - Prometheus, ImageMagick, ffmpeg and the Python client's modules (tools)
#   - OpenBLAS from Debian's packages (libopenblas-dev): the batch trainer of
#     mnist-ee-large loads it at run time (dlopen); the delen binary does not
#     link it and trains with portable Go loops without it
# DELEN_ORT_LIB, when set, points at a library to use instead (e.g. JetPack's).
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.24.3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache/ort"

arch_dir() {
	case "${1:-$(uname -m)}" in
	x86_64 | amd64) echo x64 ;;
	aarch64 | arm64) echo arm64 ;;
	*) echo "unsupported architecture: $1" >&2; return 1 ;;
	esac
}

provision_ort() {
	if [[ -n "${DELEN_ORT_LIB:-}" ]]; then
		[[ -f "$DELEN_ORT_LIB" ]] || { echo "DELEN_ORT_LIB=$DELEN_ORT_LIB: no such file" >&2; exit 1; }
		echo "setup: ONNX Runtime from DELEN_ORT_LIB=$DELEN_ORT_LIB"
		return
	fi
	if [[ -f "$cache/x64/libonnxruntime.so.1" && -f "$cache/arm64/libonnxruntime.so.1" && -f "$cache/VERSION" && "$(cat "$cache/VERSION")" == "$ORT_VERSION" ]]; then
		echo "setup: ONNX Runtime $ORT_VERSION present in $cache"
		return
	fi
	echo "setup: fetching ONNX Runtime $ORT_VERSION (npm package onnxruntime-node)"
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' RETURN
	(cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
	tar -xzf "$tmp"/onnxruntime-node-*.tgz -C "$tmp" \
		package/bin/napi-v6/linux/x64/libonnxruntime.so.1 \
		package/bin/napi-v6/linux/arm64/libonnxruntime.so.1
	for a in x64 arm64; do
		mkdir -p "$cache/$a"
		cp "$tmp/package/bin/napi-v6/linux/$a/libonnxruntime.so.1" "$cache/$a/"
	done
	echo "$ORT_VERSION" >"$cache/VERSION"
	echo "setup: ONNX Runtime $ORT_VERSION in $cache"
}

provision_mosquitto() {
	if { command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]]; } && command -v mosquitto_pub >/dev/null 2>&1; then
		echo "setup: mosquitto present"
		return
	fi
	if [[ "${DELEN_SKIP_MOSQUITTO:-}" == 1 ]]; then
		echo "setup: skipping mosquitto (DELEN_SKIP_MOSQUITTO=1)"
		return
	fi
	echo "setup: installing mosquitto and mosquitto-clients (Debian packages)"
	local sudo=""
	[[ "$(id -u)" == 0 ]] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
	# The package's service is not wanted: tests start their own brokers.
	$sudo systemctl disable --now mosquitto >/dev/null 2>&1 || true
	echo "setup: mosquitto installed"
}

# provision_openblas installs Debian's OpenBLAS, which `delen models train
# mnist-ee-large` and the trainer's tests load with dlopen.
provision_openblas() {
	if { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q 'libopenblas\.so\.0'; then
		echo "setup: OpenBLAS present"
		return
	fi
	if [[ "${DELEN_SKIP_OPENBLAS:-}" == 1 ]]; then
		echo "setup: skipping OpenBLAS (DELEN_SKIP_OPENBLAS=1)"
		return
	fi
	echo "setup: installing libopenblas-dev (Debian package)"
	local sudo=""
	[[ "$(id -u)" == 0 ]] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libopenblas-dev >/dev/null
	echo "setup: OpenBLAS installed"
}

# provision_cross installs what the arm64 build and its test need: Debian's
# aarch64 cross compiler (cgo) and qemu-user to run the result here.
provision_cross() {
	if command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1; then
		echo "setup: arm64 cross toolchain and qemu-user present"
		return
	fi
	if [[ "${DELEN_SKIP_CROSS:-}" == 1 ]]; then
		echo "setup: skipping the arm64 cross toolchain (DELEN_SKIP_CROSS=1)"
		return
	fi
	echo "setup: installing gcc-aarch64-linux-gnu and qemu-user (Debian packages)"
	local sudo=""
	[[ "$(id -u)" == 0 ]] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user >/dev/null
	echo "setup: arm64 cross toolchain installed"
}

# provision_tools installs the outside tools tests run: Prometheus and
# promtool (the metrics tests), ImageMagick and ffmpeg (images for the image
# input tests), and the Python client's modules for Debian's /usr/bin/python3
# (paho-mqtt, msgpack, numpy; the python3 first on PATH may be another build).
provision_tools() {
	local want=()
	{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || want+=(prometheus)
	/usr/bin/convert -version 2>/dev/null | grep -q ImageMagick || want+=(imagemagick)
	command -v ffmpeg >/dev/null 2>&1 || want+=(ffmpeg)
	/usr/bin/python3 -c 'import paho.mqtt.client, msgpack, numpy' >/dev/null 2>&1 || want+=(python3 python3-paho-mqtt python3-msgpack python3-numpy)
	if [[ ${#want[@]} == 0 ]]; then
		echo "setup: prometheus, imagemagick, ffmpeg and the python client's modules present"
		return
	fi
	if [[ "${DELEN_SKIP_TOOLS:-}" == 1 ]]; then
		echo "setup: skipping ${want[*]} (DELEN_SKIP_TOOLS=1)"
		return
	fi
	echo "setup: installing ${want[*]} (Debian packages)"
	local sudo=""
	[[ "$(id -u)" == 0 ]] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${want[@]}" >/dev/null
	# The package's service is not wanted: tests start their own Prometheus.
	$sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
	echo "setup: ${want[*]} installed"
}

case "${1:-all}" in
ort) provision_ort ;;
mosquitto) provision_mosquitto ;;
cross) provision_cross ;;
tools) provision_tools ;;
openblas) provision_openblas ;;
ort-path) arch="$(arch_dir "${2:-}")"; echo "${DELEN_ORT_LIB:-$cache/$arch/libonnxruntime.so.1}" ;;
all) provision_ort; provision_mosquitto; provision_openblas; provision_cross; provision_tools ;;
*) echo "usage: $0 [all|ort|mosquitto|openblas|cross|tools|ort-path [arch]]" >&2; exit 2 ;;
esac
