using FineTune.Core.Models;

namespace FineTune.Core.Export.Forwards;

/// <summary>
/// MaxViT's ONNX forwards: MBConv blocks, then attention within 7×7 windows and across a 7×7 grid, the groups formed by
/// Reshape/Transpose; the relative position bias is a constant per layer.
/// </summary>
internal static class MaxVitOnnx
{
    internal static IReadOnlyDictionary<string, OnnxForward> Forwards { get; } = new Dictionary<string, OnnxForward>
    {
        [nameof(MaxVit)] = (w, m, path, x) => w.Child(m, path, "classifier", List(w, m, path, "blocks", w.Child(m, path, "stem", x))),
        [nameof(MaxVit.LayerList)] = (w, m, path, x) => List(w, m, path, "layers", x),
        [nameof(MaxVit.MaxVitLayer)] = (w, m, path, x) => w.Child(m, path, "layers", x),
        // Stochastic depth is the identity in inference.
        [nameof(MaxVit.MBConv)] = (w, m, path, x) => w.Add(path, w.Child(m, path, "proj", x), w.Child(m, path, "layers", x)),
        [nameof(MaxVit.SqueezeExcitation)] = (w, m, path, x) =>
        {
            var gate = w.Child(m, path, "fc2", w.Silu(path, w.Child(m, path, "fc1", w.AdaptiveAvgPool(path, x, [1, 1]))));
            return w.Mul(path, x, w.Logistic(path, gate));
        },
        // The pre-logits' activation, before the head.
        [nameof(TorchSharp.Modules.Tanh)] = (w, m, path, x) => w.Graph.Node("Tanh", path, [x.Name], x.Trace.tanh()),
        [nameof(MaxVit.PartitionAttention)] = PartitionAttention,
        [nameof(MaxVit.RelativePositionalAttention)] = (w, m, path, x) =>
        {
            var attention = (MaxVit.RelativePositionalAttention)m;
            var (q, k, v) = AttentionOnnx.SplitHeads(w, path, w.Child(m, path, "to_qkv", x), attention.Heads);
            using var bias = attention.PositionBias();
            var attended = AttentionOnnx.Attend(w, path, q, k, v, MaxVit.RelativePositionalAttention.QueryScale(x.Trace.shape[^1]), bias);
            return w.Child(m, path, "merge", AttentionOnnx.MergeHeads(w, path, attended));
        },
    };

    /// <summary>A ModuleList's modules applied one after the other.</summary>
    private static OnnxValue List(OnnxModuleWriter w, TorchSharp.torch.nn.Module m, string path, string name, OnnxValue x)
    {
        var list = m.named_children().Single(c => c.name == name).module;
        foreach (var (index, module) in list.named_children())
            x = w.Write(module, OnnxModuleWriter.Join(OnnxModuleWriter.Join(path, name), index), x);
        return x;
    }

    private static OnnxValue PartitionAttention(OnnxModuleWriter w, TorchSharp.torch.nn.Module m, string path, OnnxValue x)
    {
        var layer = (MaxVit.PartitionAttention)m;
        long batch = x.Trace.shape[0], channels = x.Trace.shape[1], height = x.Trace.shape[2], width = x.Trace.shape[3];
        var (p, rows, columns) = layer.Partition(height, width);
        var tiled = w.Reshape(path, x, batch, channels, rows, p, columns, p);
        var groups = w.Reshape(path, w.Transpose(path, tiled, 0, 2, 4, 3, 5, 1), batch, rows * columns, p * p, channels);
        if (layer.Grid) groups = w.Transpose(path, groups, 0, 2, 1, 3);
        groups = w.Add(path, groups, w.Child(m, path, "attn_layer", groups));
        groups = w.Add(path, groups, w.Child(m, path, "mlp_layer", groups));
        if (layer.Grid) groups = w.Transpose(path, groups, 0, 2, 1, 3);
        var untiled = w.Transpose(path, w.Reshape(path, groups, batch, rows, columns, p, p, channels), 0, 5, 1, 3, 2, 4);
        return w.Reshape(path, untiled, batch, channels, height, width);
    }
}
