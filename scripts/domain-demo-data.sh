#!/usr/bin/env bash
# Fetch the image set of issue 13's domain demonstration: images of one kind that none of the
# training photos show, with no high-resolution originals needed for training.
#
# The kind: level screenshots of the 3D game Neverball (rendered scenes: flat checkered floors,
# gradient skies, hard edges; 256x256 RGB JPEG), 178 images in Debian's neverball-data package
# (GPL-2+, ~17 MB download). Nothing is copied into the repository: the package is downloaded with
# `apt-get download` into the target folder, extracted there, and two folders are laid out:
#
#   TARGET/unlabeled/  PNG RGB, used as the student's LR input (teacher labels only)
#   TARGET/heldout/    PNG RGB, used as HR for evaluation (eval makes the LR with MATLAB bicubic)
#
# The split is fixed: images are ordered by sha256("SEED:set/name") and the first N (with both sides
# >= 192 px) are held out, so it does not depend on the file system's order or on Python's RNG.
# Images with real transparency would be skipped (the tested package has none); grayscale ones are
# stored as RGB.
#
#   bash scripts/domain-demo-data.sh [TARGET]   # default TARGET: ~/.cache/srdistill-domain
#
# DOMAIN_HELDOUT (default 12) and DOMAIN_SEED (default 13) change the split. Needs apt-get and
# dpkg-deb (Debian/Ubuntu; run `apt-get update` once first) and a Python with Pillow (the
# project's .venv when it exists, else $PYTHON or python3).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${1:-$HOME/.cache/srdistill-domain}
heldout_n=${DOMAIN_HELDOUT:-12}
seed=${DOMAIN_SEED:-13}
pkg=neverball-data
tested_version=1.6.0+git20180603-3

fail() { echo "domain-demo-data: $*" >&2; exit 1; }

for tool in apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || fail "$tool not found: this script fetches Debian package $pkg and needs a Debian or Ubuntu system"
done
if [ -x "$repo/.venv/bin/python" ]; then py="$repo/.venv/bin/python"; else py=${PYTHON:-python3}; fi
"$py" -c "import PIL" 2>/dev/null || fail "$py has no Pillow: run scripts/setup.sh or set PYTHON to a Python with Pillow"
case "$heldout_n" in ''|*[!0-9]*|0) fail "DOMAIN_HELDOUT=$heldout_n: give a whole number >= 1 of held-out images, e.g. 12";; esac

# Copies of the images must never land in the repository (licence and size): check before creating.
target=$(realpath -m "$target")
case "$target/" in "$(realpath "$repo")/"*) fail "target $target is inside the repository: pick a folder outside it, e.g. ~/.cache/srdistill-domain";; esac
mkdir -p "$target"

download="$target/download"
mkdir -p "$download"
deb=$(ls "$download"/${pkg}_*.deb 2>/dev/null | head -n 1 || true)
if [ -z "$deb" ]; then
  sandbox=()
  # apt's _apt user cannot write into a root-owned cache folder; downloading as root is fine here.
  [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
  (cd "$download" && { apt-get -q "${sandbox[@]}" download "$pkg=$tested_version" 2>/dev/null \
      || { echo "domain-demo-data: $pkg $tested_version not in this system's lists; taking its own version (the split may differ)" >&2;
           apt-get -q "${sandbox[@]}" download "$pkg"; }; }) \
    || fail "apt-get download $pkg failed: run 'apt-get update' first (Debian/Ubuntu with the main component)"
  deb=$(ls "$download"/${pkg}_*.deb | head -n 1)
fi
version=$(dpkg-deb -f "$deb" Version)

extract="$target/extract"
rm -rf "$extract.partial" && mkdir -p "$extract.partial"
dpkg-deb -x "$deb" "$extract.partial"
rm -rf "$extract" && mv "$extract.partial" "$extract"

# Lay out into a staging folder and swap it in at the end, so that a failure never leaves a
# half-filled unlabeled/ or heldout/ behind.
staging="$target/.layout.partial"
rm -rf "$staging"
trap 'rm -rf "$staging"' EXIT
"$py" - "$extract/usr/share/games/neverball" "$staging" "$heldout_n" "$seed" <<'EOF'
import collections, hashlib, pathlib, sys

from PIL import Image

shots_root, staging, heldout_n, seed = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
MIN_LR_SIDE, MIN_HR_SIDE = 128, 192  # LR must hold a training patch; HR/4 must still be a useful input

sources = sorted(p for p in shots_root.glob("shot-*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
if not sources:
    sys.exit(f"domain-demo-data: no shot-*/ images under {shots_root}: the package layout changed")

def split_key(path):
    return hashlib.sha256(f"{seed}:{path.parent.name}/{path.name}".encode()).hexdigest()

notes = collections.Counter()
kept = []
for path in sorted(sources, key=split_key):
    image = Image.open(path)
    image.load()
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes["skipped: transparent"] += 1
            continue
    if min(image.size) < MIN_LR_SIDE:
        notes[f"skipped: smaller than {MIN_LR_SIDE} px"] += 1
        continue
    if image.mode == "L":
        notes["grayscale, stored as RGB"] += 1
    kept.append((path, image.convert("RGB")))

heldout = [item for item in kept if min(item[1].size) >= MIN_HR_SIDE][:heldout_n]
if len(heldout) < heldout_n:
    sys.exit(f"domain-demo-data: only {len(heldout)} images have both sides >= {MIN_HR_SIDE} px; lower DOMAIN_HELDOUT={heldout_n}")
heldout_paths = {path for path, _ in heldout}
if len(kept) - len(heldout) < 1:
    sys.exit(f"domain-demo-data: DOMAIN_HELDOUT={heldout_n} leaves no unlabeled images out of {len(kept)}; lower it")
manifest = ["split\tfile\tsource\twidth\theight"]
sizes = {"unlabeled": collections.Counter(), "heldout": collections.Counter()}
for path, image in kept:
    split = "heldout" if path in heldout_paths else "unlabeled"
    name = f"{path.parent.name.removeprefix('shot-')}-{path.stem}.png"
    out = staging / split / name
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    sizes[split][image.size] += 1
    manifest.append(f"{split}\t{name}\t{path.relative_to(shots_root)}\t{image.size[0]}\t{image.size[1]}")
(staging / "MANIFEST.tsv").write_text("\n".join(manifest) + "\n")
for split, counter in sizes.items():
    shown = ", ".join(f"{w}x{h}: {n}" for (w, h), n in counter.most_common())
    print(f"{split}: {sum(counter.values())} images ({shown})")
for reason, n in notes.items():
    print(f"note: {n} image(s) {reason}")
EOF
for part in unlabeled heldout MANIFEST.tsv; do
  rm -rf "${target:?}/$part"
  mv "$staging/$part" "$target/$part"
done
cp "$extract/usr/share/doc/$pkg/copyright" "$target/COPYRIGHT-$pkg"

licence=$(awk '/^Files: \*$/{f=1} f&&/^License:/{print $2; exit}' "$target/COPYRIGHT-$pkg")
echo "package: $pkg $version ($(du -k "$deb" | cut -f1) KiB download: $deb)"
echo "licence: $licence (Files: *, $(grep -m1 '^Copyright:' "$target/COPYRIGHT-$pkg" | sed 's/^Copyright: *//'); full text: $target/COPYRIGHT-$pkg)"
echo "unlabeled: $target/unlabeled"
echo "heldout:   $target/heldout"
echo "manifest:  $target/MANIFEST.tsv"
