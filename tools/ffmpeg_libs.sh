#!/usr/bin/env bash
# FFmpeg's shared libraries for the torchcodec decoder (cavnet[torchcodec], in the lock): torchcodec ships
# none and loads one major version between 4 and 8 (PyAV's bundled copy is private to PyAV). When they are
# missing, this installs the runtime packages of the system's own FFmpeg with apt-get (Debian, Ubuntu; as
# root): the newest lib<name><N> of each library (libavcodec59, libavformat59, ... on Debian 12), not the
# ffmpeg command-line tool. Exit 0 when the libraries are there (or were installed), 1 when they are not.
#
#   tools/ffmpeg_libs.sh          # .ci/run calls it before `make test`
#   tools/ffmpeg_libs.sh --check  # only say whether they are there (exit 0 / 1)
set -euo pipefail

libs=(avutil avcodec avformat avdevice avfilter swscale swresample)

present() {  # every library with a soname of a major version torchcodec 0.11 loads (FFmpeg 4-8)
  local cache
  cache="$(ldconfig -p 2> /dev/null || true)"
  grep -Eq 'libavutil\.so\.(56|57|58|59|60) ' <<< "$cache" &&
    grep -Eq 'libavcodec\.so\.(58|59|60|61|62) ' <<< "$cache" &&
    grep -Eq 'libavformat\.so\.(58|59|60|61|62) ' <<< "$cache" &&
    grep -Eq 'libavdevice\.so\.(58|59|60|61|62) ' <<< "$cache" &&
    grep -Eq 'libavfilter\.so\.(7|8|9|10|11) ' <<< "$cache" &&
    grep -Eq 'libswscale\.so\.(5|6|7|8|9) ' <<< "$cache" &&
    grep -Eq 'libswresample\.so\.(3|4|5|6) ' <<< "$cache"
}

if present; then
  echo "ffmpeg_libs: FFmpeg's shared libraries are installed"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "ffmpeg_libs: FFmpeg's shared libraries (major 4-8) are missing" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
  echo "ffmpeg_libs: FFmpeg's shared libraries (major 4-8) are missing; install your system's libavcodec," \
    "libavformat, libavutil, libavdevice, libavfilter, libswscale and libswresample runtime packages" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
packages=()
for lib in "${libs[@]}"; do
  name="$(apt-cache pkgnames "lib$lib" | grep -E "^lib$lib[0-9]+\$" | sort -V | tail -n 1)"
  if [ -z "$name" ]; then
    echo "ffmpeg_libs: apt has no lib$lib runtime package" >&2
    exit 1
  fi
  packages+=("$name")
done
echo "ffmpeg_libs: apt-get install ${packages[*]}"
apt-get install -y -qq --no-install-recommends "${packages[@]}" > /dev/null
present || { echo "ffmpeg_libs: installed ${packages[*]}, but the libraries still do not load" >&2; exit 1; }
echo "ffmpeg_libs: FFmpeg's shared libraries are installed"
