using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace FineTune.Core.Models;

/// <summary>
/// torchvision's VisionTransformer (vit_b_16 … vit_h_14), with its module and parameter names so that torchvision
/// checkpoints load unchanged. The image size fixes the position embedding's length: torchvision's weights are for
/// 224 pixels, except the SWAG end-to-end ones (384, 512 or 518).
/// </summary>
public sealed class VisionTransformer : Module<Tensor, Tensor>
{
    private readonly Conv2d conv_proj;
    private readonly Parameter class_token;
    private readonly Encoder encoder;
    private readonly Sequential heads;
    private readonly long _patchSize;
    private readonly long _imageSize;
    private readonly long _hiddenDim;

    private VisionTransformer(long imageSize, long patchSize, int layers, long heads, long hiddenDim, long mlpDim, int numClasses)
        : base(nameof(VisionTransformer))
    {
        if (imageSize % patchSize != 0)
            throw new ArgumentException($"image size {imageSize} is not a multiple of the patch size {patchSize}", nameof(imageSize));
        _patchSize = patchSize;
        _imageSize = imageSize;
        _hiddenDim = hiddenDim;
        conv_proj = Conv2d(3, hiddenDim, kernel_size: patchSize, stride: patchSize);
        class_token = new Parameter(zeros(1, 1, hiddenDim));
        long patches = imageSize / patchSize;
        encoder = new Encoder(patches * patches + 1, layers, heads, hiddenDim, mlpDim);
        this.heads = Sequential(("head", (Module<Tensor, Tensor>)Linear(hiddenDim, numClasses)));
        RegisterComponents();

        // torchvision's initialisation, so a model trained from scratch starts like theirs.
        using var _ = no_grad();
        TransformerParts.TruncatedNormal(conv_proj.weight, Math.Sqrt(1.0 / (3 * patchSize * patchSize)));
        init.zeros_(conv_proj.bias!);
        var head = (Linear)this.heads[0];
        init.zeros_(head.weight!);
        init.zeros_(head.bias!);
    }

    public static VisionTransformer VitB16(int imageSize = 224, int numClasses = 1000) => new(imageSize, 16, 12, 12, 768, 3072, numClasses);
    public static VisionTransformer VitB32(int imageSize = 224, int numClasses = 1000) => new(imageSize, 32, 12, 12, 768, 3072, numClasses);
    public static VisionTransformer VitL16(int imageSize = 224, int numClasses = 1000) => new(imageSize, 16, 24, 16, 1024, 4096, numClasses);
    public static VisionTransformer VitL32(int imageSize = 224, int numClasses = 1000) => new(imageSize, 32, 24, 16, 1024, 4096, numClasses);
    public static VisionTransformer VitH14(int imageSize = 224, int numClasses = 1000) => new(imageSize, 14, 32, 16, 1280, 5120, numClasses);

    /// <summary>
    /// A checkpoint key in torchvision's current layout: its published ViT weights predate torchvision 0.14's MLP block
    /// and name the MLP's linears <c>mlp.linear_1</c>/<c>mlp.linear_2</c>, which torchvision's load hook renames to
    /// <c>mlp.0</c>/<c>mlp.3</c> (MLPBlock._load_from_state_dict).
    /// </summary>
    public static string UpgradeLegacyKey(string key) => key
        .Replace(".mlp.linear_1.", ".mlp.0.", StringComparison.Ordinal)
        .Replace(".mlp.linear_2.", ".mlp.3.", StringComparison.Ordinal);

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        long n = input.shape[0];
        if (input.shape[2] != _imageSize || input.shape[3] != _imageSize)
            throw new ArgumentException($"this ViT takes {_imageSize}×{_imageSize} images, not {input.shape[2]}×{input.shape[3]}");
        long patches = _imageSize / _patchSize;
        // [n, hidden, h, w] -> [n, h·w, hidden]: one token per patch
        var x = conv_proj.call(input).reshape(n, _hiddenDim, patches * patches).permute(0, 2, 1);
        x = cat([class_token.expand(n, -1, -1), x], 1);
        x = encoder.call(x);
        // The class token's output is the image's representation.
        return heads.call(x.select(1, 0)).MoveToOuterDisposeScope();
    }

    private sealed class Encoder : Module<Tensor, Tensor>
    {
        private readonly Parameter pos_embedding;
        private readonly Sequential layers;
        private readonly LayerNorm ln;

        public Encoder(long tokens, int layerCount, long heads, long hiddenDim, long mlpDim) : base(nameof(Encoder))
        {
            pos_embedding = new Parameter(empty(1, tokens, hiddenDim));
            layers = Sequential(Enumerable.Range(0, layerCount)
                .Select(i => ($"encoder_layer_{i}", (Module<Tensor, Tensor>)new EncoderBlock(heads, hiddenDim, mlpDim))));
            ln = LayerNorm(hiddenDim, eps: 1e-6);
            RegisterComponents();
            using var _ = no_grad();
            init.normal_(pos_embedding, std: 0.02);
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            return ln.call(layers.call(input + pos_embedding)).MoveToOuterDisposeScope();
        }
    }

    private sealed class EncoderBlock : Module<Tensor, Tensor>
    {
        private readonly LayerNorm ln_1;
        private readonly SelfAttention self_attention;
        private readonly LayerNorm ln_2;
        private readonly Sequential mlp;

        public EncoderBlock(long heads, long hiddenDim, long mlpDim) : base(nameof(EncoderBlock))
        {
            ln_1 = LayerNorm(hiddenDim, eps: 1e-6);
            self_attention = new SelfAttention(hiddenDim, heads);
            ln_2 = LayerNorm(hiddenDim, eps: 1e-6);
            mlp = TransformerParts.Mlp(hiddenDim, mlpDim);
            RegisterComponents();
            using var _ = no_grad();
            foreach (var linear in mlp.children().OfType<Linear>())
            {
                init.xavier_uniform_(linear.weight!);
                init.normal_(linear.bias!, std: 1e-6);
            }
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var x = self_attention.call(ln_1.call(input)) + input;
            return (x + mlp.call(ln_2.call(x))).MoveToOuterDisposeScope();
        }
    }

    /// <summary>
    /// torch.nn.MultiheadAttention with query, key and value the same sequence (batch first), under its parameter names:
    /// one [3·dim, dim] input projection for q, k and v, then scaled dot-product attention per head and the output projection.
    /// </summary>
    internal sealed class SelfAttention : Module<Tensor, Tensor>
    {
        private readonly Parameter in_proj_weight;
        private readonly Parameter in_proj_bias;
        private readonly Linear out_proj;
        private readonly long _heads;

        public SelfAttention(long dim, long heads) : base(nameof(SelfAttention))
        {
            in_proj_weight = new Parameter(empty(3 * dim, dim));
            in_proj_bias = new Parameter(zeros(3 * dim));
            out_proj = Linear(dim, dim);
            _heads = heads;
            RegisterComponents();
            using var _ = no_grad();
            init.xavier_uniform_(in_proj_weight);
            init.zeros_(out_proj.bias!);
        }

        /// <summary>How many heads the dimension is split into (for the ONNX forward).</summary>
        internal long Heads => _heads;

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            long n = input.shape[0], tokens = input.shape[1], dim = input.shape[2];
            // [n, tokens, 3·dim] -> 3 × [n, heads, tokens, head dim]
            var qkv = functional.linear(input, in_proj_weight, in_proj_bias)
                .view(n, tokens, 3, _heads, dim / _heads).permute(2, 0, 3, 1, 4);
            var attended = functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]);
            return out_proj.call(attended.transpose(1, 2).reshape(n, tokens, dim)).MoveToOuterDisposeScope();
        }
    }
}
