"""The blog's loop (PyTorch transfer-learning tutorial, "ConvNet as fixed feature extractor") on an ImageFolder
with train/ and val/, starting from the ImageNet weights we ship (resnet18-cntk-rgb, exported by the bench).
Prints one JSON object: best and last epoch's val accuracy, per-epoch val accuracies, seconds in the epochs.

usage: blog_recipe.py FOLDER WEIGHTS.pth EPOCHS BATCH BN
  BN = train: the tutorial (model.train() each epoch, so the frozen BatchNorm layers' running statistics drift)
  BN = eval:  our recipe (the frozen backbone stays in eval mode; only fc is trained)
"""
import json
import os
import sys
import time
import warnings

import torch
import torchvision
from torchvision import datasets, transforms

# PIL warns about palette PNGs with transparency, which pil_loader converts to RGB as the tutorial does.
warnings.filterwarnings("ignore", category=UserWarning)
folder, weights, epochs, batch, bn = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
assert bn in ("train", "eval"), bn
torch.set_num_threads(os.cpu_count())

# No augmentation on either side, to match our default.
transform = transforms.Compose([
    transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
images = {split: datasets.ImageFolder(os.path.join(folder, split), transform) for split in ("train", "val")}
loaders = {split: torch.utils.data.DataLoader(images[split], batch_size=batch, shuffle=True, num_workers=0)
           for split in ("train", "val")}

# The CNTK ResNet18 layout: torchvision's BasicBlock ResNet with 3 blocks in layer4; the shipped dict has no fc.
model = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [2, 2, 2, 3])
missing, unexpected = model.load_state_dict(torch.load(weights), strict=False)
assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected, (missing, unexpected)
for p in model.parameters():
    p.requires_grad = False
torch.manual_seed(0)
model.fc = torch.nn.Linear(512, len(images["train"].classes))
criterion = torch.nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.001, momentum=0.9)

start = time.perf_counter()
accuracies = []
for epoch in range(epochs):
    if bn == "train":
        model.train()
    else:
        model.eval()
        model.fc.train()
    for inputs, labels in loaders["train"]:
        optimizer.zero_grad()
        loss = criterion(model(inputs), labels)
        loss.backward()
        optimizer.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for inputs, labels in loaders["val"]:
            correct += (model(inputs).argmax(1) == labels).sum().item()
    accuracies.append(correct / len(images["val"]))
print(json.dumps({"bn": bn, "train": len(images["train"]), "val": len(images["val"]), "best": max(accuracies),
                  "last": accuracies[-1], "epochs": accuracies, "seconds": time.perf_counter() - start}))
