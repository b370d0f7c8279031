"""Re-encodes every PNG under FOLDER as a 3000 x 2250 JPEG (quality 90, transparency on white), in place: the size of a
camera photo, whose decoding costs more than a step of the network, as the Tux Paint stamps' does not.

usage: large_photos.py FOLDER
"""
import os
import sys

from PIL import Image

for root, _, files in os.walk(sys.argv[1]):
    for name in (n for n in files if n.lower().endswith(".png")):
        path = os.path.join(root, name)
        image = Image.open(path).convert("RGBA")
        photo = Image.new("RGB", image.size, (255, 255, 255))
        photo.paste(image, mask=image.split()[3])
        photo.resize((3000, 2250), Image.BICUBIC).save(os.path.splitext(path)[0] + ".jpg", quality=90)
        os.remove(path)
