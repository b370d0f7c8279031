using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace FineTune.Core.Models;

/// <summary>
/// torchvision's SwinTransformer, v1 (swin_t/s/b) and v2 (swin_v2_t/s/b), with its module, parameter and buffer names so
/// that torchvision checkpoints load unchanged. Any input size works: feature maps that are no window multiple are
/// padded, as torchvision does.
/// </summary>
public sealed class SwinTransformer : Module<Tensor, Tensor>
{
    private readonly Sequential features;
    private readonly LayerNorm norm;
    private readonly Linear head;

    private SwinTransformer(long embedDim, int[] depths, long[] heads, long windowSize, double stochasticDepth, bool v2, int numClasses)
        : base(nameof(SwinTransformer))
    {
        var layers = new List<Module<Tensor, Tensor>>
        {
            // 4×4 patches, channels last from here on
            Sequential(Conv2d(3, embedDim, kernel_size: 4, stride: 4), new TransformerParts.Permute(0, 2, 3, 1), LayerNorm(embedDim)),
        };
        int blocks = depths.Sum(), block = 0;
        for (int stage = 0; stage < depths.Length; stage++)
        {
            long dim = embedDim << stage;
            var stageBlocks = new List<Module<Tensor, Tensor>>();
            for (int i = 0; i < depths[stage]; i++, block++)
            {
                long shift = i % 2 == 0 ? 0 : windowSize / 2;
                stageBlocks.Add(new Block(dim, heads[stage], windowSize, shift, stochasticDepth * block / (blocks - 1), v2));
            }
            layers.Add(Sequential(stageBlocks));
            if (stage < depths.Length - 1) layers.Add(new PatchMerging(dim, v2));
        }
        features = Sequential(layers);
        long features_ = embedDim << (depths.Length - 1);
        norm = LayerNorm(features_);
        head = Linear(features_, numClasses);
        RegisterComponents();

        // torchvision's initialisation, so a model trained from scratch starts like theirs.
        using var _ = no_grad();
        foreach (var linear in modules().OfType<Linear>())
        {
            TransformerParts.TruncatedNormal(linear.weight!, 0.02);
            if (linear.bias is not null) init.zeros_(linear.bias);
        }
        foreach (var attention in modules().OfType<ShiftedWindowAttention>())
            attention.ResetKeyBias();
    }

    public static SwinTransformer SwinT(int numClasses = 1000) => new(96, [2, 2, 6, 2], [3, 6, 12, 24], 7, 0.2, v2: false, numClasses);
    public static SwinTransformer SwinS(int numClasses = 1000) => new(96, [2, 2, 18, 2], [3, 6, 12, 24], 7, 0.3, v2: false, numClasses);
    public static SwinTransformer SwinB(int numClasses = 1000) => new(128, [2, 2, 18, 2], [4, 8, 16, 32], 7, 0.5, v2: false, numClasses);
    public static SwinTransformer SwinV2T(int numClasses = 1000) => new(96, [2, 2, 6, 2], [3, 6, 12, 24], 8, 0.2, v2: true, numClasses);
    public static SwinTransformer SwinV2S(int numClasses = 1000) => new(96, [2, 2, 18, 2], [3, 6, 12, 24], 8, 0.3, v2: true, numClasses);
    public static SwinTransformer SwinV2B(int numClasses = 1000) => new(128, [2, 2, 18, 2], [4, 8, 16, 32], 8, 0.5, v2: true, numClasses);

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = norm.call(features.call(input));
        // The average over positions of the channels-last map, which torchvision takes after permuting it back.
        return head.call(x.mean([1, 2])).MoveToOuterDisposeScope();
    }

    /// <summary>Halves the map's height and width and doubles its channels: each 2×2 neighbourhood into one position.</summary>
    internal sealed class PatchMerging : Module<Tensor, Tensor>
    {
        private readonly Linear reduction;
        private readonly LayerNorm norm;
        private readonly bool _v2;

        public PatchMerging(long dim, bool v2) : base(nameof(PatchMerging))
        {
            reduction = Linear(4 * dim, 2 * dim, hasBias: false);
            // v1 normalises the merged neighbourhood, v2 the reduced one.
            norm = LayerNorm(v2 ? 2 * dim : 4 * dim);
            _v2 = v2;
            RegisterComponents();
        }

        /// <summary>Whether the norm follows the reduction (v2) rather than precedes it.</summary>
        internal bool PostNorm => _v2;

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            long height = input.shape[1], width = input.shape[2];
            var x = functional.pad(input, [0, 0, 0, width % 2, 0, height % 2]);
            x = cat([
                x[.., TensorIndex.Slice(0, null, 2), TensorIndex.Slice(0, null, 2), ..],
                x[.., TensorIndex.Slice(1, null, 2), TensorIndex.Slice(0, null, 2), ..],
                x[.., TensorIndex.Slice(0, null, 2), TensorIndex.Slice(1, null, 2), ..],
                x[.., TensorIndex.Slice(1, null, 2), TensorIndex.Slice(1, null, 2), ..],
            ], -1);
            x = _v2 ? norm.call(reduction.call(x)) : reduction.call(norm.call(x));
            return x.MoveToOuterDisposeScope();
        }
    }

    internal sealed class Block : Module<Tensor, Tensor>
    {
        private readonly LayerNorm norm1;
        private readonly ShiftedWindowAttention attn;
        private readonly LayerNorm norm2;
        private readonly Sequential mlp;
        private readonly double _stochasticDepth;
        private readonly bool _v2;

        public Block(long dim, long heads, long windowSize, long shift, double stochasticDepth, bool v2) : base("SwinTransformerBlock")
        {
            norm1 = LayerNorm(dim);
            attn = new ShiftedWindowAttention(dim, heads, windowSize, shift, v2);
            norm2 = LayerNorm(dim);
            mlp = TransformerParts.Mlp(dim, 4 * dim);
            _stochasticDepth = stochasticDepth;
            _v2 = v2;
            RegisterComponents();
        }

        /// <summary>Whether each branch's norm follows it (v2) rather than precedes it.</summary>
        internal bool PostNorm => _v2;

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            // v1 normalises each branch's input, v2 (post-norm) its output.
            var attended = _v2 ? norm1.call(attn.call(input)) : attn.call(norm1.call(input));
            var x = input + TransformerParts.StochasticDepth(attended, _stochasticDepth, training);
            var mixed = _v2 ? norm2.call(mlp.call(x)) : mlp.call(norm2.call(x));
            return (x + TransformerParts.StochasticDepth(mixed, _stochasticDepth, training)).MoveToOuterDisposeScope();
        }
    }

    /// <summary>
    /// Multi-head self-attention within windows of the channels-last map, the windows shifted by half a window in every
    /// other block (tokens that the shift brings together from opposite edges masked apart), with a relative position bias:
    /// v1 learns it as a table, v2 computes it from log-spaced offsets with a small MLP and attends by scaled cosine.
    /// </summary>
    internal sealed class ShiftedWindowAttention : Module<Tensor, Tensor>
    {
        private const float MaskedLogit = -100f;

        private readonly Linear qkv;
        private readonly Linear proj;
        private readonly Parameter? relative_position_bias_table;
        private readonly Tensor relative_position_index;
        private readonly Parameter? logit_scale;
        private readonly Sequential? cpb_mlp;
        private readonly Tensor? relative_coords_table;
        private readonly long _heads;
        private readonly long _window;
        private readonly long _shift;

        public ShiftedWindowAttention(long dim, long heads, long window, long shift, bool v2) : base(nameof(ShiftedWindowAttention))
        {
            qkv = Linear(dim, 3 * dim);
            proj = Linear(dim, dim);
            _heads = heads;
            _window = window;
            _shift = shift;
            relative_position_index = TransformerParts.RelativePositionIndex(window, window).flatten();
            if (v2)
            {
                logit_scale = new Parameter(log(full(heads, 1, 1, 10f)));
                cpb_mlp = Sequential(Linear(2, 512), ReLU(), Linear(512, heads, hasBias: false));
                relative_coords_table = LogSpacedOffsets(window);
            }
            else
            {
                relative_position_bias_table = new Parameter(zeros((2 * window - 1) * (2 * window - 1), heads));
                using var _ = no_grad();
                TransformerParts.TruncatedNormal(relative_position_bias_table, 0.02);
            }
            RegisterComponents();
        }

        /// <summary>v2 attends with the key bias zero (it ignores the middle third of qkv.bias); torchvision stores it so.</summary>
        public void ResetKeyBias()
        {
            if (logit_scale is null) return;
            using var _ = no_grad();
            long dim = qkv.bias!.shape[0] / 3;
            qkv.bias.narrow(0, dim, dim).zero_();
        }

        /// <summary>Every relative offset of a window, scaled to ±8 and log-spaced: the v2 bias MLP's input, [1, 2w-1, 2w-1, 2].</summary>
        private static Tensor LogSpacedOffsets(long window)
        {
            using var scope = NewDisposeScope();
            var offsets = arange(-(window - 1), window, dtype: float32);
            var grid = stack(meshgrid([offsets, offsets], indexing: "ij")).permute(1, 2, 0).contiguous().unsqueeze(0);
            grid = grid / (window - 1) * 8;
            return (sign(grid) * log2(grid.abs() + 1.0) / 3.0).MoveToOuterDisposeScope();
        }

        internal long Heads => _heads;
        internal long Window => _window;

        /// <summary>v2's scaled cosine attention rather than v1's scaled dot product.</summary>
        internal bool Cosine => logit_scale is not null;

        /// <summary>The shifts of a padded map of this size: none along an axis one window covers, which shifting would only mask.</summary>
        internal (long Height, long Width) ShiftsFor(long paddedHeight, long paddedWidth) =>
            (_window >= paddedHeight ? 0 : _shift, _window >= paddedWidth ? 0 : _shift);

        /// <summary>The qkv projection's bias as attention applies it: v2's key part zero.</summary>
        internal Tensor QkvBias()
        {
            var bias = qkv.bias!;
            if (logit_scale is null) return bias.alias();
            long dim = bias.shape[0] / 3;
            return cat([bias.narrow(0, 0, dim), zeros(dim, dtype: bias.dtype, device: bias.device), bias.narrow(0, 2 * dim, dim)]);
        }

        /// <summary>v2's factor on the cosines, per head [heads, 1, 1]: the learned scale, at most 100.</summary>
        internal Tensor CosineScale() => clamp(logit_scale!, max: Math.Log(100)).exp();

        /// <summary>
        /// What every window's logits get added, [1, windows or 1, heads, tokens, tokens]: the relative position bias and,
        /// where the map is shifted, the mask between regions the shift brought together.
        /// </summary>
        internal Tensor LogitBias(long paddedHeight, long paddedWidth, Device device)
        {
            using var scope = NewDisposeScope();
            var (shiftH, shiftW) = ShiftsFor(paddedHeight, paddedWidth);
            var bias = PositionBias().unsqueeze(0);
            if (shiftH + shiftW > 0) bias = bias + ShiftMask(paddedHeight, paddedWidth, shiftH, shiftW, device);
            return bias.MoveToOuterDisposeScope();
        }

        private Tensor PositionBias()
        {
            long tokens = _window * _window;
            if (cpb_mlp is null)
                return TransformerParts.RelativePositionBias(relative_position_bias_table!, relative_position_index, tokens);
            var table = cpb_mlp.call(relative_coords_table!).view(-1, _heads);
            return 16 * sigmoid(TransformerParts.RelativePositionBias(table, relative_position_index, tokens));
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            long batch = input.shape[0], height = input.shape[1], width = input.shape[2], dim = input.shape[3];
            long w = _window;
            var x = functional.pad(input, [0, 0, 0, (w - width % w) % w, 0, (w - height % w) % w]);
            long paddedHeight = x.shape[1], paddedWidth = x.shape[2];
            var (shiftH, shiftW) = ShiftsFor(paddedHeight, paddedWidth);
            bool shifted = shiftH + shiftW > 0;
            if (shifted) x = x.roll([-shiftH, -shiftW], [1, 2]);

            long rows = paddedHeight / w, columns = paddedWidth / w, windows = rows * columns, tokens = w * w, headDim = dim / _heads;
            x = x.view(batch, rows, w, columns, w, dim).permute(0, 1, 3, 2, 4, 5).reshape(batch, windows, tokens, dim);

            // [batch, windows, tokens, 3·dim] -> 3 × [batch, windows, heads, tokens, head dim]
            var projected = functional.linear(x, qkv.weight!, QkvBias()).view(batch, windows, tokens, 3, _heads, headDim).permute(3, 0, 1, 4, 2, 5);
            Tensor q = projected[0], k = projected[1], v = projected[2];
            var logitBias = LogitBias(paddedHeight, paddedWidth, x.device);
            Tensor attended;
            if (logit_scale is null)
                attended = functional.scaled_dot_product_attention(q, k, v, logitBias);
            else
            {
                // Cosine attention as torchvision computes it: the cosines times a learned scale of at most 100.
                var cosine = functional.normalize(q, dim: -1).matmul(functional.normalize(k, dim: -1).transpose(-2, -1));
                var logits = cosine * CosineScale() + logitBias;
                attended = functional.softmax(logits, -1).matmul(v);
            }
            x = proj.call(attended.transpose(2, 3).reshape(batch, windows, tokens, dim));

            x = x.view(batch, rows, columns, w, w, dim).permute(0, 1, 3, 2, 4, 5).reshape(batch, paddedHeight, paddedWidth, dim);
            if (shifted) x = x.roll([shiftH, shiftW], [1, 2]);
            return x[.., TensorIndex.Slice(0, height), TensorIndex.Slice(0, width), ..].contiguous().MoveToOuterDisposeScope();
        }

        /// <summary>
        /// [1, windows, 1, tokens, tokens]: 0 between tokens of the same region of the shifted map, <see cref="MaskedLogit"/>
        /// between tokens the cyclic shift brought into one window from different regions (torchvision's attn_mask).
        /// </summary>
        private Tensor ShiftMask(long height, long width, long shiftH, long shiftW, Device device)
        {
            long w = _window, rows = height / w, columns = width / w, tokens = w * w;
            // Along an axis that is not shifted, every position is in one region.
            static int Band(long at, long size, long window, long shift) =>
                shift == 0 ? 0 : at < size - window ? 0 : at < size - shift ? 1 : 2;
            var mask = new float[rows * columns * tokens * tokens];
            var region = new int[tokens];
            for (long row = 0; row < rows; row++)
                for (long column = 0; column < columns; column++)
                {
                    for (long t = 0; t < tokens; t++)
                        region[t] = 3 * Band(row * w + t / w, height, w, shiftH) + Band(column * w + t % w, width, w, shiftW);
                    long offset = (row * columns + column) * tokens * tokens;
                    for (long a = 0; a < tokens; a++)
                        for (long b = 0; b < tokens; b++)
                            mask[offset + a * tokens + b] = region[a] == region[b] ? 0 : MaskedLogit;
                }
            return tensor(mask, [1, rows * columns, 1, tokens, tokens], device: device);
        }
    }
}
