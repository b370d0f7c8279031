# Per family: torchvision's parameter count, the activation elements one image produces in a training forward (every
# leaf module's output, and what attention computes without a module of its own: nn.MultiheadAttention's and Swin's
# query, key and value projections and weights, MaxViT's block and grid attention weights), the largest of
# those (what an inference forward holds at once, with its input and a residual), and the input size they were
# counted at: the largest crop of the builder's weights (299 for inception_v3), so scaling down by pixels never
# undercounts. What the memory estimate scales by the batch size.
# Usage: /usr/bin/python3 bench/memory_table.py [builder ...] (every classification builder when none is named) prints
# the rows of PeakMemory's table (FineTune.Core/Engine/MemoryEstimate.cs). With Debian's reference BLAS the transformers
# take minutes; LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread (apt libopenblas0-pthread) takes seconds.
import sys, torch, torchvision.models as m
from torchvision.models import maxvit, swin_transformer as swin
torch.set_grad_enabled(False)


def crop(name):
    sizes = [w.transforms().crop_size[0] for w in m.get_model_weights(name)]
    return max(sizes) if sizes else 224


families = sys.argv[1:] or [n for n in m.list_models(module=m) if m.get_model_builder(n)]
for name in families:
    size = crop(name)
    kw = {"aux_logits": False, "init_weights": False} if name in ("inception_v3", "googlenet") else {}
    if name.startswith("vit_"):
        kw["image_size"] = size
    model = m.get_model(name, **kw).eval()
    params = sum(p.numel() for p in model.parameters())
    total, largest = [0], [0]

    def count(elements):
        total[0] += elements
        largest[0] = max(largest[0], elements)

    def hook(mod, inp, out):
        if isinstance(out, torch.Tensor):
            count(out.numel())

    def attention(mod, inp, out):
        # Self-attention (torchvision's ViT passes query, key and value by name, batch first): the output is
        # [batch, tokens, width], the weights [batch, heads, tokens, tokens], and the query, key and value projections
        # (three of the output's size) are computed inside too.
        batch, tokens = out[0].shape[0], out[0].shape[1]
        count(3 * out[0].numel())
        count(batch * mod.num_heads * tokens * tokens)
        count(out[0].numel())

    def window_attention(mod, inp, out):
        # Swin (v1 and v2): [batch, height, width, channels] in, padded to whole windows, one [tokens, tokens] map per
        # window and head; its qkv and proj layers run as functions on the padded windows, so their hooks never fire.
        batch, height, width, channels = inp[0].shape
        rows, cols = mod.window_size
        windows = -(-height // rows) * -(-width // cols)
        tokens = batch * windows * rows * cols
        count(3 * tokens * channels)
        count(batch * windows * mod.num_heads * (rows * cols) ** 2)
        count(tokens * channels)

    def partition_attention(mod, inp, out):
        # MaxViT: [batch, groups, tokens, width] in, one [tokens, tokens] map per group and head.
        batch, groups, tokens = inp[0].shape[:3]
        count(batch * groups * mod.n_heads * tokens * tokens)

    for mod in model.modules():
        if isinstance(mod, torch.nn.MultiheadAttention):
            mod.register_forward_hook(attention)
        elif isinstance(mod, swin.ShiftedWindowAttention):
            mod.register_forward_hook(window_attention)
        elif isinstance(mod, maxvit.RelativePositionalMultiHeadAttention):
            mod.register_forward_hook(partition_attention)
        elif len(list(mod.children())) == 0:
            mod.register_forward_hook(hook)
    model(torch.zeros(1, 3, size, size))
    print(f'["{name}"] = ({params}, {total[0]}, {largest[0]}, {size}),', flush=True)
