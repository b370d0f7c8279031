"""Debian's dataset-fashion-mnist as the benches read it: where it is, its class names, and its idx files."""
import gzip
import struct

FASHION = "/usr/share/datasets/fashion-mnist"
CLOTHES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def idx(path):
    """An idx file's item count, its image shape (empty for labels) and its raw bytes."""
    with gzip.open(path) as f:
        magic, count = struct.unpack(">II", f.read(8))
        shape = struct.unpack(">II", f.read(8)) if magic == 2051 else ()
        return count, shape, f.read()
