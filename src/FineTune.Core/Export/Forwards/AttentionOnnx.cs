using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Core.Export.Forwards;

/// <summary>Multi-head attention written as ONNX operators, as the attention families (ViT, Swin, MaxViT) compute it.</summary>
internal static class AttentionOnnx
{
    /// <summary>x·weightᵀ + bias for a weight and bias that are no Linear module's (ViT's in_proj, Swin v2's qkv bias).</summary>
    public static OnnxValue Project(OnnxModuleWriter w, string path, OnnxValue x, Tensor weight, Tensor bias)
    {
        using var transposed = weight.t();
        var product = w.Graph.Node("MatMul", path, [x.Name, w.Graph.Initializer(path + ".weight", transposed)], x.Trace.matmul(transposed));
        return w.AddConstant(path, product, path + ".bias", bias);
    }

    /// <summary>[batch, …, tokens, 3·dim] (q, k and v one after the other) → q, k and v, each [batch, …, heads, tokens, head dim].</summary>
    public static (OnnxValue Q, OnnxValue K, OnnxValue V) SplitHeads(OnnxModuleWriter w, string path, OnnxValue qkv, long heads)
    {
        long[] leading = qkv.Trace.shape[..^1];
        int tokens = leading.Length - 1;
        var split = w.Reshape(path, qkv, [.. leading, 3, heads, qkv.Trace.shape[^1] / 3 / heads]);
        // q/k/v first, then the batch and groups, heads, tokens, head dim.
        long[] permutation = [tokens + 1, .. Enumerable.Range(0, tokens).Select(i => (long)i), tokens + 2, tokens, tokens + 3];
        var stacked = w.Transpose(path, split, permutation);
        return (w.Select(path, stacked, 0, 0), w.Select(path, stacked, 0, 1), w.Select(path, stacked, 0, 2));
    }

    /// <summary>softmax(scores + bias)·v, the scores q·kᵀ times <paramref name="scale"/>.</summary>
    public static OnnxValue Attend(OnnxModuleWriter w, string path, OnnxValue q, OnnxValue k, OnnxValue v, double scale, Tensor? bias)
    {
        var scores = w.MatMul(path, w.Scale(path, q, (float)scale), TransposeLast(w, path, k));
        return Weighted(w, path, scores, v, bias);
    }

    /// <summary>Swin v2's scaled cosine attention: softmax(cos(q, k)·scale + bias)·v, the scale per head [heads, 1, 1].</summary>
    public static OnnxValue AttendByCosine(OnnxModuleWriter w, string path, OnnxValue q, OnnxValue k, OnnxValue v, Tensor scale, Tensor bias)
    {
        var cosines = w.MatMul(path, Normalize(w, path, q), TransposeLast(w, path, Normalize(w, path, k)));
        var scores = w.Graph.Node("Mul", path, [cosines.Name, w.Graph.Initializer(path + ".cosine_scale", scale)], cosines.Trace * scale);
        return Weighted(w, path, scores, v, bias);
    }

    /// <summary>[batch, …, heads, tokens, head dim] → [batch, …, tokens, heads·head dim].</summary>
    public static OnnxValue MergeHeads(OnnxModuleWriter w, string path, OnnxValue attended)
    {
        long[] shape = attended.Trace.shape;
        int rank = shape.Length;
        long[] permutation = [.. Enumerable.Range(0, rank - 3).Select(i => (long)i), rank - 2, rank - 3, rank - 1];
        return w.Reshape(path, w.Transpose(path, attended, permutation), [.. shape[..^3], shape[^2], shape[^3] * shape[^1]]);
    }

    private static OnnxValue Weighted(OnnxModuleWriter w, string path, OnnxValue scores, OnnxValue v, Tensor? bias)
    {
        if (bias is not null) scores = w.AddConstant(path, scores, path + ".logit_bias", bias);
        return w.MatMul(path, w.Softmax(path, scores), v);
    }

    private static OnnxValue TransposeLast(OnnxModuleWriter w, string path, OnnxValue x)
    {
        long rank = x.Trace.dim();
        return w.Transpose(path, x, [.. Enumerable.Range(0, (int)rank - 2).Select(i => (long)i), rank - 1, rank - 2]);
    }

    /// <summary>F.normalize over the last dimension: x / max(‖x‖₂, 1e-12).</summary>
    private static OnnxValue Normalize(OnnxModuleWriter w, string path, OnnxValue x)
    {
        var norm = w.Graph.Node("ReduceL2", path, [x.Name], x.Trace.norm(-1, keepdim: true), OnnxGraphBuilder.Ints("axes", [-1]), OnnxGraphBuilder.Int("keepdims", 1));
        var floor = w.Graph.Node("Max", path, [norm.Name, w.Scalar(1e-12f)], norm.Trace.clamp_min(1e-12));
        return w.Graph.Node("Div", path, [x.Name, floor.Name], F.normalize(x.Trace, dim: -1));
    }
}
