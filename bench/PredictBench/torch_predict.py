"""PyTorch's side of PredictBench (Debian python3-torch 1.13, python3-torchvision 0.14): a user's eval loop over the
same photos with the same model. The published model.safetensors of CNTK's ResNet18 (torchvision's BasicBlock ResNet with
a 3-block layer4) loaded strictly; each image opened with Pillow (transparency on white), Resize(R) + CenterCrop(C),
0-255 pixels in BGR order minus the raw float32 CHW mean image; batches of BATCH, eval mode, no gradients, 2 threads. A
warm-up batch, then the whole list timed, decoding included. Prints {"seconds": s, "probabilities": [[...] per image]}.

usage: torch_predict.py WEIGHTS CLASSES MEAN_IMAGE RESIZE CROP BATCH < photos (one path a line)
"""
import json
import sys
import time

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms

torch.set_num_threads(2)
weights, classes, mean_path, resize, crop, batch_size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
photos = [line.strip() for line in sys.stdin if line.strip()]


def read_safetensors(path):
    # Debian 12 packages no safetensors module; the format is a length-prefixed JSON header and raw float32 tensors here.
    with open(path, "rb") as f:
        data = f.read()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    state = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        dtype = {"F32": torch.float32, "I64": torch.int64}[entry["dtype"]]
        raw = bytearray(data[8 + length + start:8 + length + end])
        state[name] = (torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)).reshape(entry["shape"])
    return state


def open_rgb(path):
    image = Image.open(path)
    if "A" in image.getbands() or "transparency" in image.info:
        arr = np.asarray(image.convert("RGBA"), dtype=np.int64)
        alpha = arr[..., 3:4]
        return Image.fromarray(((arr[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8), "RGB")
    return image.convert("RGB")


model = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [2, 2, 2, 3], num_classes=classes)
model.load_state_dict(read_safetensors(weights), strict=True)
model.eval()
mean_image = torch.from_numpy(np.fromfile(mean_path, dtype=np.float32)).reshape(3, crop, crop)
prepare = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop), transforms.PILToTensor(),
                              lambda x: x.float()[[2, 1, 0]] - mean_image])


def run(paths):
    out = []
    with torch.no_grad():
        for i in range(0, len(paths), batch_size):
            batch = torch.stack([prepare(open_rgb(p)) for p in paths[i:i + batch_size]])
            out.extend(torch.softmax(model(batch), dim=1).tolist())
    return out


run(photos[:batch_size])
start = time.perf_counter()
probabilities = run(photos)
print(json.dumps({"seconds": time.perf_counter() - start, "probabilities": probabilities}))
