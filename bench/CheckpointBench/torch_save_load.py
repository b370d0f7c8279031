"""Reference: PyTorch's own torch.save / torch.load of a resnet50 state dict on the local disk.
Prints "save_seconds load_seconds bytes" (best of REPEATS).

usage: torch_save_load.py FOLDER REPEATS
"""
import os
import sys
import time

import torch
import torchvision

folder, repeats = sys.argv[1], int(sys.argv[2])
state = torchvision.models.resnet50().state_dict()
path = os.path.join(folder, "reference.pth")
saves, loads = [], []
for _ in range(repeats):
    start = time.perf_counter()
    torch.save(state, path)
    saves.append(time.perf_counter() - start)
    start = time.perf_counter()
    torch.load(path)
    loads.append(time.perf_counter() - start)
print(min(saves), min(loads), os.path.getsize(path))
