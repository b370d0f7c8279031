using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace FineTune.Core.Models;

/// <summary>
/// torchvision's MaxVit (maxvit_t), with its module, parameter and buffer names so that torchvision checkpoints load
/// unchanged. Each layer is an MBConv, attention within 7×7 blocks, then attention across a 7×7 grid; every block's input
/// must therefore be a multiple of 7 on both sides, which for square images means 224 pixels (or 448, …), as in torchvision.
/// </summary>
public sealed class MaxVit : Module<Tensor, Tensor>
{
    private const long PartitionSize = 7;

    private readonly Sequential stem;
    private readonly ModuleList<Module<Tensor, Tensor>> blocks;
    private readonly Sequential classifier;

    private MaxVit(long stemChannels, long[] blockChannels, int[] blockLayers, long headDim, double stochasticDepth, int numClasses)
        : base(nameof(MaxVit))
    {
        stem = Sequential(
            Sequential(Conv2d(3, stemChannels, 3, stride: 2, padding: 1, bias: false), Norm(stemChannels), GELU()),
            Sequential(Conv2d(stemChannels, stemChannels, 3, stride: 1, padding: 1)));
        blocks = new ModuleList<Module<Tensor, Tensor>>();
        int layersInAll = blockLayers.Sum(), layer = 0;
        long inChannels = stemChannels;
        for (int b = 0; b < blockChannels.Length; b++)
        {
            var layers = new ModuleList<Module<Tensor, Tensor>>();
            for (int i = 0; i < blockLayers[b]; i++, layer++)
            {
                // numpy.linspace(0, p, layers): the stochastic depth probability grows linearly with depth.
                double probability = layersInAll == 1 ? 0 : stochasticDepth * layer / (layersInAll - 1);
                layers.Add(new MaxVitLayer(i == 0 ? inChannels : blockChannels[b], blockChannels[b], i == 0 ? 2 : 1, headDim, probability));
            }
            blocks.Add(new LayerList(layers));
            inChannels = blockChannels[b];
        }
        long last = blockChannels[^1];
        classifier = Sequential(
            AdaptiveAvgPool2d(1), Flatten(), LayerNorm(last), Linear(last, last), Tanh(), Linear(last, numClasses, hasBias: false));
        RegisterComponents();

        // torchvision's initialisation, so a model trained from scratch starts like theirs.
        using var _ = no_grad();
        foreach (var module in modules())
        {
            switch (module)
            {
                case Conv2d conv:
                    init.normal_(conv.weight, std: 0.02);
                    if (conv.bias is not null) init.zeros_(conv.bias);
                    break;
                case Linear linear:
                    init.normal_(linear.weight!, std: 0.02);
                    if (linear.bias is not null) init.zeros_(linear.bias);
                    break;
            }
        }
    }

    public static MaxVit MaxVitT(int numClasses = 1000) => new(64, [64, 128, 256, 512], [2, 2, 5, 2], 32, 0.2, numClasses);

    /// <summary>The original MaxViT's batch norm (torchvision's eps 1e-3, momentum 0.99).</summary>
    private static BatchNorm2d Norm(long channels) => BatchNorm2d(channels, eps: 1e-3, momentum: 0.99);

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = stem.call(input);
        foreach (var block in blocks) x = block.call(x);
        return classifier.call(x).MoveToOuterDisposeScope();
    }

    /// <summary>torchvision's MaxVitBlock: its layers in a list named <c>layers</c>.</summary>
    internal sealed class LayerList : Module<Tensor, Tensor>
    {
        private readonly ModuleList<Module<Tensor, Tensor>> layers;

        public LayerList(ModuleList<Module<Tensor, Tensor>> layers) : base("MaxVitBlock")
        {
            this.layers = layers;
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var x = input;
            foreach (var layer in layers) x = layer.call(x);
            return x.MoveToOuterDisposeScope();
        }
    }

    internal sealed class MaxVitLayer : Module<Tensor, Tensor>
    {
        private readonly Sequential layers;

        public MaxVitLayer(long inChannels, long outChannels, long stride, long headDim, double stochasticDepth) : base(nameof(MaxVitLayer))
        {
            layers = Sequential(
                ("MBconv", new MBConv(inChannels, outChannels, stride, stochasticDepth)),
                ("window_attention", new PartitionAttention(outChannels, headDim, grid: false, stochasticDepth)),
                ("grid_attention", new PartitionAttention(outChannels, headDim, grid: true, stochasticDepth)));
            RegisterComponents();
        }

        public override Tensor forward(Tensor input) => layers.call(input);
    }

    /// <summary>Mobile inverted bottleneck: pre-norm, 1×1 expansion ×4, depthwise 3×3, squeeze-excitation, 1×1 projection.</summary>
    internal sealed class MBConv : Module<Tensor, Tensor>
    {
        private readonly Module<Tensor, Tensor> proj;
        private readonly Sequential layers;
        private readonly double _stochasticDepth;

        public MBConv(long inChannels, long outChannels, long stride, double stochasticDepth) : base(nameof(MBConv))
        {
            long mid = outChannels * 4, squeezed = outChannels / 4;
            proj = stride == 2
                ? Sequential(AvgPool2d(3, stride: 2, padding: 1), Conv2d(inChannels, outChannels, 1))
                : inChannels != outChannels ? Sequential(Conv2d(inChannels, outChannels, 1)) : Identity();
            layers = Sequential(
                ("pre_norm", Norm(inChannels)),
                ("conv_a", Sequential(Conv2d(inChannels, mid, 1, bias: false), Norm(mid), GELU())),
                ("conv_b", Sequential(Conv2d(mid, mid, 3, stride: stride, padding: 1, groups: mid, bias: false), Norm(mid), GELU())),
                ("squeeze_excitation", new SqueezeExcitation(mid, squeezed)),
                ("conv_c", Conv2d(mid, outChannels, 1)));
            _stochasticDepth = stochasticDepth;
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var residual = proj.call(input);
            return (residual + TransformerParts.StochasticDepth(layers.call(input), _stochasticDepth, training)).MoveToOuterDisposeScope();
        }
    }

    /// <summary>torchvision's ops.SqueezeExcitation with SiLU: channels rescaled by a gate computed from their means.</summary>
    internal sealed class SqueezeExcitation : Module<Tensor, Tensor>
    {
        private readonly Conv2d fc1;
        private readonly Conv2d fc2;

        public SqueezeExcitation(long channels, long squeezed) : base(nameof(SqueezeExcitation))
        {
            fc1 = Conv2d(channels, squeezed, 1);
            fc2 = Conv2d(squeezed, channels, 1);
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var scale = fc2.call(functional.silu(fc1.call(input.mean([2, 3], keepdim: true))));
            return (input * sigmoid(scale)).MoveToOuterDisposeScope();
        }
    }

    /// <summary>
    /// Pre-norm attention then pre-norm MLP over 7×7 token groups: "window" groups are 7×7 neighbourhoods (local),
    /// "grid" groups take one position from each cell of a 7×7 grid over the whole map (global, dilated).
    /// </summary>
    internal sealed class PartitionAttention : Module<Tensor, Tensor>
    {
        private readonly Sequential attn_layer;
        private readonly Sequential mlp_layer;
        private readonly bool _grid;
        private readonly double _stochasticDepth;

        public PartitionAttention(long channels, long headDim, bool grid, double stochasticDepth) : base("PartitionAttentionLayer")
        {
            attn_layer = Sequential(LayerNorm(channels), new RelativePositionalAttention(channels, headDim), Dropout(0));
            mlp_layer = Sequential(LayerNorm(channels), Linear(channels, 4 * channels), GELU(), Linear(4 * channels, channels), Dropout(0));
            _grid = grid;
            _stochasticDepth = stochasticDepth;
            RegisterComponents();
        }

        /// <summary>Whether the groups are a grid's (dilated, global) rather than windows (local).</summary>
        internal bool Grid => _grid;

        /// <summary>The side of a group's square, the tiles per side (rows, columns) of a map: as the forward partitions it.</summary>
        internal (long Side, long Rows, long Columns) Partition(long height, long width)
        {
            if (height % PartitionSize != 0 || width % PartitionSize != 0 || (_grid && height != width))
                throw new ArgumentException(
                    $"MaxViT needs square feature maps that are multiples of {PartitionSize}, got {height}×{width}: give it 224×224 images");
            // Window: p = 7, groups are 7×7 tiles. Grid: p = side/7 tiles, and a group is the same position in each tile.
            long p = _grid ? height / PartitionSize : PartitionSize;
            return (p, height / p, width / p);
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            long batch = input.shape[0], channels = input.shape[1], height = input.shape[2], width = input.shape[3];
            var (p, rows, columns) = Partition(height, width);
            var x = input.reshape(batch, channels, rows, p, columns, p).permute(0, 2, 4, 3, 5, 1).reshape(batch, rows * columns, p * p, channels);
            if (_grid) x = x.swapaxes(-2, -3);
            x = x + TransformerParts.StochasticDepth(attn_layer.call(x), _stochasticDepth, training);
            x = x + TransformerParts.StochasticDepth(mlp_layer.call(x), _stochasticDepth, training);
            if (_grid) x = x.swapaxes(-2, -3);
            x = x.reshape(batch, rows, columns, p, p, channels).permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, height, width);
            return x.MoveToOuterDisposeScope();
        }
    }

    /// <summary>Multi-head self-attention within each group of 7×7 tokens, with a learned bias per relative offset and head.</summary>
    internal sealed class RelativePositionalAttention : Module<Tensor, Tensor>
    {
        private readonly Linear to_qkv;
        private readonly Linear merge;
        private readonly Parameter relative_position_bias_table;
        private readonly Tensor relative_position_index;
        private readonly long _heads;
        private readonly long _headDim;

        public RelativePositionalAttention(long channels, long headDim) : base("RelativePositionalMultiHeadAttention")
        {
            _heads = channels / headDim;
            _headDim = headDim;
            to_qkv = Linear(channels, 3 * channels);
            merge = Linear(channels, channels);
            relative_position_bias_table = new Parameter(empty((2 * PartitionSize - 1) * (2 * PartitionSize - 1), _heads));
            relative_position_index = TransformerParts.RelativePositionIndex(PartitionSize, PartitionSize);
            RegisterComponents();
            using var _ = no_grad();
            TransformerParts.TruncatedNormal(relative_position_bias_table, 0.02);
        }

        internal long Heads => _heads;

        /// <summary>The factor on the queries: torchvision scales by 1/√channels, not 1/√head dim.</summary>
        internal static double QueryScale(long channels) => 1 / Math.Sqrt(channels);

        /// <summary>The bias each head adds to a group's logits, [1, 1, heads, tokens, tokens].</summary>
        internal Tensor PositionBias() =>
            TransformerParts.RelativePositionBias(relative_position_bias_table, relative_position_index, PartitionSize * PartitionSize).unsqueeze(0);

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            long batch = input.shape[0], groups = input.shape[1], tokens = input.shape[2], channels = input.shape[3];
            // [batch, groups, tokens, 3·channels]: q, k and v one after the other -> 3 × [batch, groups, heads, tokens, head dim]
            var qkv = to_qkv.call(input).view(batch, groups, tokens, 3, _heads, _headDim).permute(3, 0, 1, 4, 2, 5);
            // Scaled dot-product attention applies 1/√head dim itself.
            var q = qkv[0] * (QueryScale(channels) * Math.Sqrt(_headDim));
            var attended = functional.scaled_dot_product_attention(q, qkv[1], qkv[2], PositionBias());
            return merge.call(attended.transpose(2, 3).reshape(batch, groups, tokens, channels)).MoveToOuterDisposeScope();
        }
    }
}
