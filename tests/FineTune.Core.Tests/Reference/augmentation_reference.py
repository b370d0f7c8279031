"""Train-time augmentation ops as a PyTorch user gets them (Debian python3-torchvision 0.14, Pillow 9.4), the
reference that FineTune.Core's ImageOps and AutoAugment are checked against.

ops OUT PHOTO...   for each real PHOTO (an RGBA cut-out, flattened onto white) write OUT/N-wide.png (97x71) and
                   OUT/N-square.png (64x64, where Pillow's rotate turns quarter turns into transposes), then for each
                   case below OUT/BASE.CASE.rgb, the raw RGB bytes of torchvision's result on that PNG. Prints
                   the cases, one a line: "hflip", "crop TOP LEFT HEIGHT WIDTH OUT_H OUT_W FILTER" or "op NAME MAGNITUDE"
                   (torchvision.transforms.autoaugment._apply_op, NEAREST, fill None, as TrivialAugmentWide calls it).
tables             TrivialAugmentWide's magnitude bins: "NAME v0 v1 ..." (repr of each float32 as a Python float).
crops W H N        N draws of RandomResizedCrop.get_params (scale 0.08-1, ratio 3/4-4/3) on a W x H image: the mean
                   and standard deviation of the area share, the share of draws under 0.2, the mean and standard
                   deviation of log(w / h), one a line.
"""
import math
import statistics
import sys

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, RandomResizedCrop, TrivialAugmentWide
from torchvision.transforms import functional as F
from torchvision.transforms.autoaugment import _apply_op

from preprocessing_reference import flatten

OPS = [
    ("Identity", 0.0), ("ShearX", 0.3), ("ShearX", -0.99), ("ShearY", 0.5), ("ShearY", -0.2),
    ("TranslateX", 13.7), ("TranslateX", -20.0), ("TranslateY", 9.0), ("TranslateY", -31.0),
    ("Rotate", 4.5), ("Rotate", -30.0), ("Rotate", 90.0), ("Rotate", -90.0), ("Rotate", 135.0), ("Rotate", 22.5),
    ("Brightness", -0.5), ("Brightness", 0.8), ("Color", -0.9), ("Color", 0.6), ("Contrast", -0.7), ("Contrast", 0.99),
    ("Sharpness", -0.99), ("Sharpness", 0.9), ("Posterize", 2.0), ("Posterize", 5.0), ("Posterize", 8.0),
    ("Solarize", 128.0), ("Solarize", 200.5), ("Solarize", 0.0), ("AutoContrast", 0.0), ("Equalize", 0.0),
]
CROPS = [(5, 7, 40, 50, 32, 32, "bilinear"), (3, 2, 60, 33, 48, 40, "bicubic"), (0, 0, 20, 20, 56, 56, "bicubic")]


def cases():
    yield "hflip", F.hflip
    for top, left, height, width, out_h, out_w, name in CROPS:
        mode = InterpolationMode(name)
        yield (f"crop {top} {left} {height} {width} {out_h} {out_w} {name}",
               lambda img, a=(top, left, height, width, [out_h, out_w]), m=mode: F.resized_crop(img, *a, interpolation=m))
    for name, magnitude in OPS:
        yield f"op {name} {magnitude!r}", lambda img, n=name, m=magnitude: _apply_op(img, n, m, InterpolationMode.NEAREST, None)


def ops(out, photos):
    lines = []
    for n, photo in enumerate(photos):
        flat = flatten(Image.open(photo).convert("RGBA"))
        for shape, size in (("wide", (97, 71)), ("square", (64, 64))):
            base = f"{n}-{shape}"
            flat.resize(size, Image.BICUBIC).save(f"{out}/{base}.png")
            image = Image.open(f"{out}/{base}.png").convert("RGB")
            for index, (case, apply) in enumerate(cases()):
                np.asarray(apply(image), dtype=np.uint8).tofile(f"{out}/{base}.{index}.rgb")
                if n == 0 and shape == "wide":
                    lines.append(case)
    print("\n".join(lines))


def tables():
    for name, (magnitudes, _) in TrivialAugmentWide()._augmentation_space(31).items():
        if magnitudes.ndim > 0:
            print(name, " ".join(repr(float(v)) for v in magnitudes))


def crops(width, height, count):
    torch.manual_seed(0)
    image = Image.new("RGB", (width, height))
    draws = [RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(count)]
    scales = [w * h / (width * height) for _, _, h, w in draws]
    ratios = [math.log(w / h) for _, _, h, w in draws]
    for value in (statistics.mean(scales), statistics.pstdev(scales), sum(s < 0.2 for s in scales) / count,
                  statistics.mean(ratios), statistics.pstdev(ratios)):
        print(repr(value))


if __name__ == "__main__":
    if sys.argv[1] == "ops":
        ops(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "crops":
        crops(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        tables()
