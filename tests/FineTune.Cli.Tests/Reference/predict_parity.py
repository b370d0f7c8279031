"""PyTorch's side of the predict parity test (Debian python3-torch 1.13, python3-torchvision 0.14): one process
for every family, driven by JSON lines on stdin, one JSON line answered on stdout per request.

{"export": FAMILY, "out": PATH, "images": [...], "resize": R, "crop": C}
    write torchvision's FAMILY, seeded (torchvision_reference.seeded), as a state dict to PATH, its BatchNorm
    statistics measured on the images (preprocessed as below) and its other layers scaled to unit outputs on them:
    as initialised, a random backbone gives every image nearly the same features, and predictions that cannot
    tell a preprocessing bug from none
{"predict": FAMILY, "weights": SAFETENSORS, "classes": N, "resize": R, "crop": C, "images": [...], "bgrMeanImage": F32}
    load SAFETENSORS (a published model) into torchvision's FAMILY with N classes, strict, and answer each image's
    class probabilities. Images are opened as preprocessing_reference.open_rgb does (transparency on white), then
    Resize(R) + CenterCrop(C) + ToTensor + Normalize with ImageNet's statistics; with bgrMeanImage (CNTK's
    ResNet18) Resize(R) + CenterCrop(C), 0-255 pixels in BGR order minus that raw float32 CHW mean image.
"""
import contextlib
import json
import sys
import traceback

import numpy as np
import torch
import torchvision
from torchvision import transforms

from preprocessing_reference import MEAN, STD, open_rgb
from torchvision_reference import load, seeded

DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}


def read_safetensors(path):
    # Debian 12 packages no safetensors module; the format is a length-prefixed JSON header and raw tensors.
    with open(path, "rb") as f:
        data = f.read()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    state = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        dtype = DTYPES[entry["dtype"]]
        raw = bytearray(data[8 + length + start:8 + length + end])
        state[name] = (torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)).reshape(entry["shape"])
    return state


def build(family, num_classes):
    models = torchvision.models
    if family.startswith("resnet18-cntk"):
        # CNTK's ResNet18 is torchvision's BasicBlock ResNet with a 3-block layer4.
        return models.resnet.ResNet(models.resnet.BasicBlock, [2, 2, 2, 3], num_classes=num_classes)
    if family == "googlenet":
        # Published models leave out the auxiliary heads, which only training uses.
        return models.googlenet(num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=False)
    if family == "inception_v3":
        return models.inception_v3(num_classes=num_classes, aux_logits=True, transform_input=False, init_weights=False)
    return getattr(models, family)(num_classes=num_classes)


def damp_residual_branches(model):
    """EfficientNet's residual blocks (16 to 55 of them) with their last batch norm's scale quartered, so that each adds a
    correction to its input rather than doubling it (torchvision's own init for those weights is not random): at full
    scale random efficientnet_b5's features on a photo unlike its calibration set reach 6.6e6, where PyTorch's own float32
    is 42% from its float64, and no implementation could agree with it."""
    from torchvision.models.efficientnet import FusedMBConv, MBConv
    with torch.no_grad():
        for block in model.modules():
            if isinstance(block, (MBConv, FusedMBConv)) and block.use_res_connect:
                [m for m in block.block.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1].weight.mul_(0.25)


def export(request):
    model = seeded(request["export"])
    damp_residual_branches(model)
    batch = inputs(request)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if norms:
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a plain average over the batch
        model.train()
        with torch.no_grad():
            model(batch)
        model.eval()
    # Layers that no BatchNorm follows (all of them in alexnet and the plain VGGs, the linear ones elsewhere) are
    # rescaled to give outputs of standard deviation 1, in one pass since each sees its rescaled predecessors:
    # torchvision initialises linear layers with std 0.01, which leaves the head nearly the same input for every image.
    scaled = (torch.nn.Linear,) if norms else (torch.nn.Linear, torch.nn.Conv2d)

    def unit_scale(layer, _, output):
        std = output.std()
        layer.weight /= std
        if layer.bias is not None:
            layer.bias /= std
        return output / std

    hooks = [m.register_forward_hook(unit_scale) for m in model.modules() if isinstance(m, scaled)]
    with torch.no_grad():
        model(batch)
    for hook in hooks:
        hook.remove()
    torch.save(model.state_dict(), request["out"])


@contextlib.contextmanager
def uninitialised():
    """torch.nn.init's functions as no-ops: the strict load that follows replaces every parameter and buffer, and
    drawing them costs seconds for the large families (ViT, Swin, MaxViT)."""
    names = [name for name in vars(torch.nn.init) if name.endswith("_") and not name.startswith("_")]
    saved = {name: getattr(torch.nn.init, name) for name in names}
    for name in names:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


def predict(request):
    with uninitialised():
        model = build(request["predict"], request["classes"])
    load(model, read_safetensors(request["weights"]), strict=True)
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(inputs(request)), dim=1).tolist()


def inputs(request):
    fit = [transforms.Resize(request["resize"]), transforms.CenterCrop(request["crop"])]
    if request.get("bgrMeanImage"):
        mean_image = torch.from_numpy(np.fromfile(request["bgrMeanImage"], dtype=np.float32))
        mean_image = mean_image.reshape(3, request["crop"], request["crop"])
        prepare = transforms.Compose(fit + [transforms.PILToTensor(), lambda x: x.float()[[2, 1, 0]] - mean_image])
    else:
        prepare = transforms.Compose(fit + [transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    return torch.stack([prepare(open_rgb(image)) for image in request["images"]])


def main():
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if "export" in request:
                export(request)
                answer = {}
            else:
                answer = {"probabilities": predict(request)}
        except Exception:  # one family's failure is its answer; the others still run
            answer = {"error": traceback.format_exc()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
