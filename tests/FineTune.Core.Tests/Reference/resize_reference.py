"""torchvision 0.14's Resize on a PIL image (Pillow 9's Image.resize), the reference PilResize is checked against.

SOURCE WIDTH HEIGHT INTERPOLATION:WxH...
    SOURCE holds WIDTH x HEIGHT raw 8-bit RGB; for each INTERPOLATION:WxH write SOURCE.INTERPOLATION.WxH, the raw
    RGB of torchvision.transforms.functional.resize(image, [H, W], InterpolationMode(INTERPOLATION)).
"""
import sys

from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F


def main(source, width, height, targets):
    with open(source, "rb") as f:
        image = Image.frombytes("RGB", (int(width), int(height)), f.read())
    for target in targets:
        interpolation, size = target.split(":")
        w, h = (int(v) for v in size.split("x"))
        resized = F.resize(image, [h, w], InterpolationMode(interpolation))
        assert resized.size == (w, h), resized.size
        with open(f"{source}.{interpolation}.{size}", "wb") as f:
            f.write(resized.tobytes())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
