"""How a PyTorch user's images become model inputs (Debian python3-torchvision 0.14, Pillow 9), the reference
that FineTune.Core's ImageLoader is checked against.

corpus OUT PHOTO PHOTO   write image files of every kind a user has into OUT, made with Pillow from two real
                         photos (RGBA cut-outs): tiny, huge, odd and extreme sizes, grayscale, palette (with
                         and without transparency), 16-bit, grey + alpha, CMYK, progressive and EXIF-rotated
                         JPEG, GIF, WebP (lossy, lossless), BMP. Prints the file names.
tensors RESIZE CROP FILE...
                         for each FILE write FILE.crop.f32 (Resize(RESIZE) + CenterCrop(CROP) + ToTensor +
                         Normalize with ImageNet's mean and std) and FILE.pad.f32 (the whole image resized so its
                         long side is CROP, pasted centred on a white CROP square, ToTensor + Normalize), raw
                         float32 CHW.

Decoding is Pillow's, as torchvision's ImageFolder loader does, with three steps that loader leaves out and
FineTune always takes, written here in Pillow terms: EXIF orientation (ImageOps.exif_transpose), transparency
composited onto white as (c*a + 255*(255-a) + 127) // 255 (the loader's convert("RGB") drops alpha and shows
whatever colour transparent pixels hide), and 16-bit samples to 8 bits by their high byte (convert("RGB")
clips 16-bit greyscale to white).
"""
import sys

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision import transforms

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def corpus(out, first, second):
    a, b = Image.open(first).convert("RGBA"), Image.open(second).convert("RGBA")
    flat_a, flat_b = flatten(a), flatten(b)
    files = {}

    def save(name, image, **options):
        image.save(f"{out}/{name}", **options)
        files[name] = True

    save("cutout.png", a)
    save("tiny-32x70.png", flat_a.resize((32, 70), Image.BICUBIC))
    save("tiny-cutout-70x32.png", b.resize((70, 32), Image.BICUBIC))
    save("odd-333x517.png", flat_b.resize((333, 517), Image.BICUBIC))
    save("wide-1000x90.png", flat_a.resize((1000, 90), Image.BICUBIC))
    save("tall-60x900.jpg", flat_b.resize((60, 900), Image.BICUBIC), quality=92)
    save("huge-4000x3000.jpg", flat_a.resize((4000, 3000), Image.BICUBIC), quality=90)
    save("photo.jpg", flat_b, quality=95)
    save("progressive.jpg", flat_a, quality=85, progressive=True)
    save("gray.png", flat_a.convert("L"))
    save("gray.jpg", flat_b.convert("L"), quality=90)
    save("gray-alpha.png", a.convert("LA"))
    save("palette.png", flat_b.convert("P", palette=Image.ADAPTIVE, colors=200))
    save("palette-transparent.png", b.convert("P"), transparency=0)
    gray16 = np.asarray(flat_a.convert("L"), dtype=np.uint16) * 257 + 128
    save("gray16.png", Image.fromarray(gray16, mode="I;16"))
    save("cmyk.jpg", flat_b.convert("CMYK"), quality=95)
    for orientation, stored in [(3, flat_a.transpose(Image.ROTATE_180)), (6, flat_b.transpose(Image.ROTATE_90)),
                                (8, flat_a.transpose(Image.ROTATE_270)), (2, flat_b.transpose(Image.FLIP_LEFT_RIGHT))]:
        exif = Image.Exif()
        exif[0x0112] = orientation
        save(f"exif-{orientation}.jpg", stored, quality=95, exif=exif.tobytes())
    save("animated.gif", flat_a.convert("P"), save_all=True, append_images=[flat_b.convert("P")], duration=100)
    save("lossy.webp", flat_b, quality=90)
    save("lossless-cutout.webp", a, lossless=True)
    save("photo.bmp", flat_a)
    print("\n".join(files))


def flatten(rgba):
    arr = np.asarray(rgba.convert("RGBA"), dtype=np.int64)
    alpha = arr[..., 3:4]
    return Image.fromarray(((arr[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8), "RGB")


def open_rgb(path):
    image = Image.open(path)
    image.seek(0)
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16B"):
        return Image.fromarray((np.asarray(image, dtype=np.int64) >> 8).astype(np.uint8), "L").convert("RGB")
    if "A" in image.getbands() or "transparency" in image.info:
        return flatten(image)
    return image.convert("RGB")


def pad(image, size):
    w, h = image.size
    fitted = max(1, min(w, h) * size // max(w, h))
    nw, nh = (size, fitted) if w >= h else (fitted, size)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(image.resize((nw, nh), Image.BILINEAR), ((size - nw) // 2, (size - nh) // 2))
    return canvas


def tensors(resize, crop, paths):
    to_input = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    cropped = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop), to_input])
    for path in paths:
        image = open_rgb(path)
        cropped(image).numpy().astype(np.float32).tofile(f"{path}.crop.f32")
        to_input(pad(image, crop)).numpy().astype(np.float32).tofile(f"{path}.pad.f32")


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "corpus":
        corpus(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        tensors(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
