using FineTune.Core.Models;

namespace FineTune.Core.Export.Forwards;

/// <summary>ViT's ONNX forwards: patches to tokens, a class token, pre-norm encoder blocks, the class token's output to the head.</summary>
internal static class VisionTransformerOnnx
{
    internal static IReadOnlyDictionary<string, OnnxForward> Forwards { get; } = new Dictionary<string, OnnxForward>
    {
        [nameof(VisionTransformer)] = (w, m, path, x) =>
        {
            var patches = w.Child(m, path, "conv_proj", x);
            long[] shape = patches.Trace.shape;
            // [n, hidden, h, w] -> [n, h·w, hidden]: one token per patch, after the class token.
            var tokens = w.Transpose(path, w.Reshape(path, patches, shape[0], shape[1], shape[2] * shape[3]), 0, 2, 1);
            var token = w.ExpandToBatch(path, x, OnnxModuleWriter.Join(path, "class_token"), OnnxModuleWriter.Parameter(m, "class_token"));
            var encoded = w.Child(m, path, "encoder", w.Concat(path, [token, tokens], 1));
            return w.Child(m, path, "heads", w.Select(path, encoded, 1, 0));
        },
        ["Encoder"] = (w, m, path, x) => w.Children(m, path,
            w.AddConstant(path, x, OnnxModuleWriter.Join(path, "pos_embedding"), OnnxModuleWriter.Parameter(m, "pos_embedding")), "layers", "ln"),
        ["EncoderBlock"] = (w, m, path, x) =>
        {
            var attended = w.Add(path, w.Children(m, path, x, "ln_1", "self_attention"), x);
            return w.Add(path, w.Children(m, path, attended, "ln_2", "mlp"), attended);
        },
        [nameof(VisionTransformer.SelfAttention)] = (w, m, path, x) =>
        {
            var attention = (VisionTransformer.SelfAttention)m;
            var qkv = AttentionOnnx.Project(w, OnnxModuleWriter.Join(path, "in_proj"), x,
                OnnxModuleWriter.Parameter(m, "in_proj_weight"), OnnxModuleWriter.Parameter(m, "in_proj_bias"));
            var (q, k, v) = AttentionOnnx.SplitHeads(w, path, qkv, attention.Heads);
            var attended = AttentionOnnx.Attend(w, path, q, k, v, 1 / Math.Sqrt(q.Trace.shape[^1]), null);
            return w.Child(m, path, "out_proj", AttentionOnnx.MergeHeads(w, path, attended));
        },
    };
}
