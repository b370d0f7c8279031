"""Three labelled image sets that neither the tests nor the demo use, each as train/ val/ test/ class folders:
  fashion: Debian's dataset-fashion-mnist (28x28 grey photos of clothes, 10 classes), PER train, PER/2 val from its
           training file, PER test from its test file (first images of each class, in file order);
  things:  Tux Paint photo categories the demo does not use (clothes, hobbies, seasonal, space, sports, vehicles);
  symbols: Tux Paint's symbols subfolders (alphabets capped at 40, chess, math, money, music).
Tux Paint sets: per class, sorted photos, a seeded shuffle, 50 % train / 25 % val / 25 % test.

usage: prepare.py OUT [PER=60]
"""
import os
import random
import shutil
import sys

from PIL import Image

from fashion_mnist import CLOTHES, FASHION, idx

out, per = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 60
STAMPS = "/usr/share/tuxpaint/stamps"


def fashion(split_sources):
    for source, splits in split_sources:
        count, (rows, cols), pixels = idx(f"{FASHION}/{source}-images-idx3-ubyte.gz")
        _, _, labels = idx(f"{FASHION}/{source}-labels-idx1-ubyte.gz")
        taken = {}
        for i in range(count):
            label = labels[i]
            n = taken.get(label, 0)
            split = next((name for name, upto in splits if n < upto), None)
            if split is None:
                continue
            taken[label] = n + 1
            folder = os.path.join(out, "fashion", split, CLOTHES[label])
            os.makedirs(folder, exist_ok=True)
            image = Image.frombytes("L", (cols, rows), pixels[i * rows * cols:(i + 1) * rows * cols])
            image.save(os.path.join(folder, f"{source}-{i:05d}.png"))


def stamps(name, classes):
    rng = random.Random(0)
    for label, folder, cap in classes:
        root = os.path.join(STAMPS, folder)
        photos = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files
                        if f.endswith(".png") and "/cartoon" not in d)[:cap]
        rng.shuffle(photos)
        train, val = round(len(photos) * 0.5), round(len(photos) * 0.75)
        for j, photo in enumerate(photos):
            split = "train" if j < train else "val" if j < val else "test"
            target = os.path.join(out, name, split, label)
            os.makedirs(target, exist_ok=True)
            shutil.copy(photo, os.path.join(target, os.path.relpath(photo, root).replace("/", "_")))


fashion([("train", [("train", per), ("val", per + per // 2)]), ("t10k", [("test", per)])])
stamps("things", [(c, c, 1000) for c in ["clothes", "hobbies", "seasonal", "space", "sports", "vehicles"]])
stamps("symbols", [("alphabets", "symbols/alphabets", 40)] + [(c, f"symbols/{c}", 1000) for c in ["chess", "math", "money", "music"]])
