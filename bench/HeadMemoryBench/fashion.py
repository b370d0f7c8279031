"""The first PER images of each class of Debian's dataset-fashion-mnist (its training file, then its test file), as PNGs in
one folder per class: 10 classes, so PER=7000 gives all 70,000.

usage: fashion.py OUT PER
"""
import os
import sys

from PIL import Image

from fashion_mnist import CLOTHES, FASHION, idx

out, per = sys.argv[1], int(sys.argv[2])
taken = {}
for source in ["train", "t10k"]:
    count, (rows, cols), pixels = idx(f"{FASHION}/{source}-images-idx3-ubyte.gz")
    _, _, labels = idx(f"{FASHION}/{source}-labels-idx1-ubyte.gz")
    for i in range(count):
        label = labels[i]
        if taken.get(label, 0) >= per:
            continue
        taken[label] = taken.get(label, 0) + 1
        folder = os.path.join(out, CLOTHES[label])
        os.makedirs(folder, exist_ok=True)
        Image.frombytes("L", (cols, rows), pixels[i * rows * cols:(i + 1) * rows * cols]).save(os.path.join(folder, f"{source}-{i:05d}.png"))
print(sum(taken.values()))
