"""torchvision_reference.py's check for state dicts written by C#, as a PyTorch user loads them into MNASNet.

check FAMILY CLASSES STATE IO   as torchvision_reference.py's check

torchvision 0.14's MNASNet refuses a state dict without its module version (torch.save keeps it in the dict's
_metadata; a safetensors file or a dict written by another library has none): "version shluld be set to 1 or 2".
Every MNASNet we build is version 2 (the stem scales with the width), so the user states that, as done here.
"""
import collections
import sys

import torch

from torchvision_reference import build


def check(family, num_classes, state_path, io_path):
    state = torch.load(state_path)
    if family.startswith("mnasnet") and getattr(state, "_metadata", None) is None:
        state = collections.OrderedDict(state)
        state._metadata = {"": {"version": 2}}
    model = build(family, num_classes)
    model.load_state_dict(state, strict=True)
    model.eval()
    io = torch.load(io_path)
    with torch.no_grad():
        logits = model(io["input"])
    print(float((logits - io["logits"]).abs().max()))


if __name__ == "__main__":
    check(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
