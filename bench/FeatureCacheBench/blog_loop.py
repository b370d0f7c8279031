"""The blog's loop in PyTorch (Debian python3-torch): every epoch pushes every image through the whole frozen
network. Prints the seconds the epochs took (model built, imports done).

usage: blog_loop.py FOLDER EPOCHS BATCH
"""
import sys
import time
import warnings

import torch
import torchvision
from torchvision import datasets, transforms

# PIL warns about palette PNGs with transparency, which pil_loader converts to RGB as the blog does.
warnings.filterwarnings("ignore", category=UserWarning)
folder, epochs, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
transform = transforms.Compose([
    transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
dataset = datasets.ImageFolder(folder, transform, loader=lambda p: datasets.folder.pil_loader(p))
loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0)
torch.manual_seed(0)
model = torchvision.models.resnet18()
for p in model.parameters():
    p.requires_grad = False
model.fc = torch.nn.Linear(model.fc.in_features, len(dataset.classes))
optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.001, momentum=0.9)
start = time.perf_counter()
for epoch in range(epochs):
    model.train()
    for images, labels in loader:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
print(time.perf_counter() - start)
